"""The penalised-GumbelDARTS baseline of ``benchmarks.budget_front``: its expected MACs is the cost table's cost at a
peaked α and carries a gradient to NNI's α (NNI's own profiler penalty, fed ``export_probs()`` floats, cannot)."""

from __future__ import annotations

import random

import torch
from nni.nas.oneshot.pytorch.strategy import GumbelDARTS
from nni.nas.oneshot.pytorch.supermodule.base import BaseSuperNetModule

from benchmarks.budget_front import ExpectedMacsPenalty
from nni_base import DartsTaskSpace
from nni_base.hardware import build_cost_table
from nni_base.search.top_k import random_architecture
from tests.hardware.test_latency_table import _shapes

SIZE = (3, 8, 8)


class _Module:
    """Stands in for NNI's search module: what the penalty reads is its supernet modules."""

    def __init__(self, model):
        self.model = model

    def supernet_modules(self):
        return [m for m in self.model.modules() if isinstance(m, BaseSuperNetModule)]


def test_expected_macs_is_the_tables_cost_at_a_peaked_alpha_and_has_a_gradient():
    space = DartsTaskSpace(width=4, num_cells=3, num_classes=5)
    table = build_cost_table(space, SIZE)
    shapes = _shapes(space)
    sample = random_architecture(shapes, random.Random(0))
    module = _Module(GumbelDARTS().mutate_model(space))
    penalty = ExpectedMacsPenalty(table, shapes, baseline=1.0)
    penalty.__dict__['module'] = module
    cells = [m for m in module.supernet_modules() if getattr(m, 'label', None) in ('normal', 'reduce')]
    with torch.no_grad():  # each node's two sampled edges peaked on their sampled op, every other edge flat
        for cell in cells:
            edges = [(i, j) for i in range(2, 6) for j in range(i)]
            for (i, j), alpha in zip(edges, cell.arch_parameters()):
                alpha.fill_(-30.0)
                for k in range(2):
                    if sample[f'{cell.label}/input_{i}_{k}'] == [j]:
                        alpha[list(cell.op_names).index(sample[f'{cell.label}/op_{i}_{k}'])] = 30.0
    expected = penalty.profile(None)
    assert torch.isclose(expected, torch.tensor(table.cost_of(sample)['macs']), rtol=1e-3), expected
    with torch.no_grad():  # back to uniform: the gradient of the expectation reaches every α
        for cell in cells:
            for alpha in cell.arch_parameters():
                alpha.zero_()
    penalty.profile(None).backward()
    grads = [alpha.grad for cell in cells for alpha in cell.arch_parameters()]
    assert all(g is not None for g in grads) and all(g.abs().sum() > 0 for g in grads)
