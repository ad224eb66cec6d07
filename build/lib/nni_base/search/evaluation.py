"""Training fixed architectures on held-out tasks: the ground truth BASE's α is checked against.

Where it sits: after search. A *known answer* for a task family comes from exhaustive evaluation —
every single-operation cell (:func:`single_op_sample`) trained from scratch on the same held-out
tasks (:func:`train_on_task`) and ranked by query accuracy with confidence intervals
(:func:`mean_ci`). The same routine scores a prior's derived cell against random cells
(:func:`~nni_base.search.top_k.random_architecture`) of the space.

Examples
--------
>>> from nni_base import DartsTaskSpace
>>> space = DartsTaskSpace(width=4, num_cells=3, num_classes=2)
>>> sample = single_op_sample('max_pool_3x3', num_nodes=4)
>>> net = space.freeze(sample)
>>> x, y = torch.randn(8, 3, 16, 16), torch.tensor([0, 1] * 4)
>>> acc = train_on_task(net, Task(x, y, x, y), steps=2, seed=0)
>>> 0.0 <= acc <= 1.0
True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn

from ..space.genotype import DARTS_OPS
from ..space.layout import to_channels_last
from ..tasks import Task
from ..tasks.metrics import accuracy as accuracy_of
from ..tasks.metrics import mean_ci

__all__ = ['DARTS_OPS', 'single_op_sample', 'train_on_task', 'mean_ci', 'kendall_tau']


def single_op_sample(
    op: str, num_nodes: int = 4, labels: Sequence[str] = ('normal', 'reduce'), num_predecessors: int = 2
) -> dict[str, Any]:
    """An NNI sample whose every edge is ``op``; node ``i`` reads nodes ``i-2`` and ``i-1`` (a chain: depth grows)."""
    sample: dict[str, Any] = {}
    for label in labels:
        for node in range(num_predecessors, num_predecessors + num_nodes):
            for k, pred in enumerate((node - 2, node - 1)):
                sample[f'{label}/op_{node}_{k}'] = op
                sample[f'{label}/input_{node}_{k}'] = [pred]
    return sample


def _loss_and_acc(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, float]:
    logits = net(x)
    if isinstance(logits, tuple):
        logits = logits[0]
    accuracy = accuracy_of(logits, y)
    return nn.functional.cross_entropy(logits, y), float(accuracy)


def train_on_task(
    net: nn.Module, task: Task, steps: int, *, lr: float = 3e-3, batch_size: int | None = 32, seed: int = 0
) -> float:
    """Train ``net`` (in place) with Adam on the task's support set; return its query accuracy.

    Mini-batches of ``batch_size`` are drawn from the support set by a generator seeded with ``seed``
    (``None``: the whole support set every step). The query set is scored in train mode (batch
    statistics), as BASE scores tasks in meta-training.
    """
    # Channels-last halves a small convolutional network's CPU step (depthwise convolutions' backward above all).
    net = to_channels_last(net)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    net.train()
    n = len(task.support_y)
    for _ in range(steps):
        if batch_size is None or batch_size >= n:
            x, y = task.support_x, task.support_y
        else:
            idx = torch.randperm(n, generator=generator)[:batch_size]
            x, y = task.support_x[idx], task.support_y[idx]
        optimizer.zero_grad()
        loss, _ = _loss_and_acc(net, x, y)
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return _loss_and_acc(net, task.query_x, task.query_y)[1]


def kendall_tau(a: Sequence[float], b: Sequence[float]) -> float:
    """Kendall's τ-b between two score lists over the same items."""
    from scipy import stats

    return float(stats.kendalltau(a, b).statistic)
