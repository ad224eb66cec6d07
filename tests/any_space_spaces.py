"""Small model spaces of every choice kind NNI's one-shot strategies search (tests/space/test_any_space.py)."""

from __future__ import annotations

import copy

import nni
import torch
import torch.nn as nn
import torch.nn.functional as F
from nni.nas.nn.pytorch import (
    Cell,
    InputChoice,
    LayerChoice,
    ModelSpace,
    MutableBatchNorm2d,
    MutableConv2d,
    MutableLinear,
    Repeat,
)

WAYS = 5


class LayerInputSpace(ModelSpace):
    """(a) one LayerChoice and one InputChoice."""

    def __init__(self, num_classes: int = WAYS):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.conv = LayerChoice(
            [nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 8, 5, padding=2), nn.MaxPool2d(3, 1, 1)], label='conv'
        )
        self.skip = InputChoice(2, 1, label='skip')
        self.head = nn.Linear(8, num_classes)

    def forward(self, x):
        x = F.relu(self.stem(x))
        y = self.conv(x)
        return self.head(self.skip([x, y]).mean((2, 3)))


class WidthKernelSpace(ModelSpace):
    """(b) value-choice width and kernel size in MutableConv2d (and the BatchNorm / Linear that follow)."""

    def __init__(self, num_classes: int = WAYS):
        super().__init__()
        width = nni.choice('width', [4, 8])
        kernel = nni.choice('kernel', [1, 3])
        self.conv = MutableConv2d(3, width, kernel, padding=kernel // 2)
        self.bn = MutableBatchNorm2d(width)
        self.head = MutableLinear(width, num_classes)

    def forward(self, x):
        return self.head(F.relu(self.bn(self.conv(x))).mean((2, 3)))


class RepeatSpace(ModelSpace):
    """(c) Repeat with a depth choice."""

    def __init__(self, num_classes: int = WAYS):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.blocks = Repeat(
            lambda index: nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU()),
            nni.choice('depth', [1, 2, 3]),
        )
        self.head = nn.Linear(8, num_classes)

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)).mean((2, 3)))


class CellMixSpace(ModelSpace):
    """(d) a Cell built from a list of op modules or a plain callable, mixed with a LayerChoice and a width choice."""

    def __init__(self, num_classes: int = WAYS, plain_callable: bool = False):
        super().__init__()
        width = nni.choice('cell_width', [4, 8])
        self.stem = MutableConv2d(3, width, 3, padding=1)
        self.reduce = MutableConv2d(width, 8, 1)
        ops = [nn.Conv2d(8, 8, 3, padding=1), nn.MaxPool2d(3, 1, 1), nn.Identity()]
        if plain_callable:  # NNI's deprecated form: a callable returning the candidates
            candidates = ops

            def ops():
                return [copy.deepcopy(op) for op in candidates]

        self.cell = Cell(ops, num_nodes=2, num_ops_per_node=1, num_predecessors=1, label='cell')
        self.post = LayerChoice(
            {'conv': nn.Conv2d(16, 8, 1), 'pool': nn.Sequential(nn.AvgPool2d(3, 1, 1), nn.Conv2d(16, 8, 1))},
            label='post',
        )
        self.head = nn.Linear(8, num_classes)

    def forward(self, x):
        x = self.reduce(F.relu(self.stem(x)))
        return self.head(self.post(self.cell(x)).mean((2, 3)))


class SumNodes(nn.Module):
    """Cell postprocessor: the sum of the concatenated 8-channel nodes (their number differs per architecture)."""

    def forward(self, this_cell, inputs):
        return this_cell.view(this_cell.size(0), -1, 8, *this_cell.shape[2:]).sum(1)


class LooseEndCellSpace(ModelSpace):
    """A ``loose_end`` Cell of op modules: NNI's DifferentiableMixedCell."""

    def __init__(self, num_classes: int = WAYS):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.cell = Cell(
            [nn.Conv2d(8, 8, 3, padding=1), nn.MaxPool2d(3, 1, 1)],
            num_nodes=2,
            num_ops_per_node=1,
            num_predecessors=1,
            merge_op='loose_end',
            postprocessor=SumNodes(),
            label='loose',
        )
        self.head = nn.Linear(8, num_classes)

    def forward(self, x):
        return self.head(self.cell(F.relu(self.stem(x))).mean((2, 3)))


class MnistStyleSpace(ModelSpace):
    """NNI's MNIST-style test space: LayerChoice, InputChoice, value-choice width, Repeat and a Cell together."""

    def __init__(self, num_classes: int = WAYS):
        super().__init__()
        width = nni.choice('width', [4, 8])
        self.conv1 = LayerChoice(
            [MutableConv2d(3, width, 3, padding=1), MutableConv2d(3, width, 5, padding=2)], label='conv1'
        )
        self.conv2 = MutableConv2d(width, 8, 1)
        self.repeat = Repeat(
            lambda index: nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU()), nni.choice('depth', [1, 2])
        )
        self.cell = Cell(
            {
                'conv': lambda node, op, inp: nn.Conv2d(8, 8, 3, padding=1),
                'pool': lambda node, op, inp: nn.MaxPool2d(3, 1, 1),
            },
            num_nodes=2,
            num_ops_per_node=1,
            num_predecessors=1,
            label='cell',
        )
        self.skip = InputChoice(2, 1, label='skip')
        self.head = nn.Linear(16, num_classes)

    def forward(self, x):
        x = F.relu(self.conv2(F.relu(self.conv1(x))))
        y = self.cell(self.repeat(x))
        x = self.skip([torch.cat([x, x], 1), y])
        return self.head(x.mean((2, 3)))
