"""The meta performance predictor: f(dataset encoding, architecture) → expected query accuracy.

Where it sits
    Trained in Reptile meta-training (:class:`.module.ConditionedReptileModule`) on the records the meta-steps
    collect — (task's support-set statistics, an architecture, its query accuracy with the task-adapted
    supernet weights) — and used to re-rank the most probable candidates of a conditioned α in
    :func:`.zero_shot.zero_shot`. The accuracies are weight-sharing estimates (one supernet, a few inner steps),
    not accuracies of architectures trained from scratch as in MetaD2A. With ``predictor_centred`` (default) it
    learns each architecture's accuracy relative to its task's mean: zero-shot only ranks within one dataset.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn

from ..search.top_k import CellShape

__all__ = ['arch_features', 'arch_feature_size', 'PerformancePredictor', 'RecordBuffer']


def arch_feature_size(shapes: Sequence[CellShape], choices: Mapping[str, Sequence[Any]] | None = None) -> int:
    """Length of :func:`arch_features` vectors: one entry per (edge, operation) of every cell type and one per
    value of every choice outside the cells."""
    cells = sum(len(s.op_names) * sum(range(s.num_predecessors, s.num_predecessors + s.num_nodes)) for s in shapes)
    return cells + sum(len(values) for values in (choices or {}).values())


def arch_features(
    sample: dict[str, Any], shapes: Sequence[CellShape], choices: Mapping[str, Sequence[Any]] | None = None
) -> torch.Tensor:
    """An NNI sample as counts over (edge, operation) per cell type, in ``shapes`` order, then a one-hot of each
    choice outside the cells (``choices``: label → values, e.g. NasBench201's edges)."""
    parts = []
    for s in shapes:
        n_ops = len(s.op_names)
        edges = sum(range(s.num_predecessors, s.num_predecessors + s.num_nodes))
        v = torch.zeros(edges, n_ops)
        for node in range(s.num_predecessors, s.num_predecessors + s.num_nodes):
            for k in range(s.num_inputs):
                pred = int(sample[f'{s.label}/input_{node}_{k}'][0])
                row = sum(range(s.num_predecessors, node)) + pred
                v[row, s.op_names.index(sample[f'{s.label}/op_{node}_{k}'])] += 1
        parts.append(v.flatten())
    for label, values in (choices or {}).items():
        if label not in sample:
            raise KeyError(f'The sample has no value for the choice {label!r}.')
        one_hot = torch.zeros(len(values))
        one_hot[list(values).index(sample[label])] = 1.0
        parts.append(one_hot)
    return torch.cat(parts) if parts else torch.zeros(0)


class PerformancePredictor(nn.Module):
    """MLP on ``[encoding, architecture counts]`` → predicted query accuracy."""

    def __init__(self, dim: int, arch_dim: int, hidden: int = 64):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim + arch_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1)
        )

    def forward(self, encoding: torch.Tensor, arch: torch.Tensor) -> torch.Tensor:
        if encoding.dim() == 1:
            encoding = encoding.expand(arch.shape[0], -1)
        return self.net(torch.cat([encoding, arch], 1)).squeeze(1)


@dataclass
class RecordBuffer:
    """The (task, architecture, query accuracy) records of meta-training, newest ``capacity`` kept.

    A task is kept as its support-set statistics and labels, so the predictor always reads the encoder's
    current encoding of it.
    """

    capacity: int = 2048
    tasks: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    records: list[tuple[int, torch.Tensor, float]] = field(default_factory=list)
    next_task: int = 0
    total: int = 0

    def add_task(self, features: torch.Tensor, labels: torch.Tensor) -> int:
        self.tasks[self.next_task] = (features.detach().cpu(), labels.detach().cpu())
        self.next_task += 1
        return self.next_task - 1

    def add(self, task: int, arch: torch.Tensor, accuracy: float) -> None:
        self.records.append((task, arch, float(accuracy)))
        self.total += 1
        if len(self.records) > self.capacity:
            self.records = self.records[-self.capacity :]
            alive = {t for t, _, _ in self.records}
            self.tasks = {t: v for t, v in self.tasks.items() if t in alive}

    def task_means(self) -> dict[int, float]:
        """Mean query accuracy of each task's records (the predictor's centring)."""
        sums: dict[int, list[float]] = {}
        for task, _, accuracy in self.records:
            sums.setdefault(task, []).append(accuracy)
        return {task: sum(v) / len(v) for task, v in sums.items()}

    def batch(self, size: int, rng: random.Random) -> list[tuple[int, torch.Tensor, float]]:
        return rng.sample(self.records, min(size, len(self.records)))
