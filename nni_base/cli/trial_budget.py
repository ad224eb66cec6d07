"""A trial's hardware budget (:mod:`nni_base.cli.trial`): the exported cell under it, and its costs as metrics.

The trial's ``budget_params`` / ``budget_macs`` / ``budget_latency_ms`` (with ``latency_table``) parameters make a
:class:`~nni_base.hardware.Budget`. The trial meta-trains as without one (meta-training takes no budget); the
task-averaged α it adapts on held-out tasks is then exported under the budget: ``arch.json`` and ``top_k.json``
hold the most probable cells that fit. Every trial reports its exported cell's parameters and MACs (and latency,
under a latency budget) with its final metrics, so the web UI can sort and plot trials by cost.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..hardware import Budget, SearchBudget, build_cost_table
from ..search.top_k import cell_shapes, top_k_architectures

__all__ = ['export_with_costs', 'input_size_of', 'trial_budget']


def trial_budget(params: Mapping[str, Any]) -> Budget | None:
    """The trial's :class:`~nni_base.hardware.Budget`, or None when no ``budget_*`` parameter is set."""
    limits = {
        'params': params['budget_params'],
        'macs': params['budget_macs'],
        'latency_ms': params['budget_latency_ms'],
    }
    if all(v is None for v in limits.values()):
        return None
    return Budget(**limits, latency_table=params['latency_table'])


def export_with_costs(
    params: Mapping[str, Any], supernet: Any, space: nn.Module, input_size: tuple[int, ...]
) -> tuple[dict[str, Any], list[tuple[dict[str, Any], float]], dict[str, float]]:
    """(the exported sample, the ``top_k`` ranked samples with log-probabilities, the export's costs).

    Under a budget every ranked sample fits it (:class:`~nni_base.hardware.BudgetError` when none can); without
    one, the export and top-k are α's most probable cells, as before.
    """
    shapes = cell_shapes(supernet.cells())
    alphas = {str(label): alpha.detach() for label, alpha in supernet.alphas().items()}
    budget = trial_budget(params)
    if budget is None:
        table = build_cost_table(space, input_size)
        sample = supernet.export()
        ranked = top_k_architectures(shapes, alphas, params['top_k'])
    else:
        bound = SearchBudget.for_space(budget, space, input_size, shapes)
        bound.check(alphas)
        table = bound.table
        ranked = bound.ranked(alphas, params['top_k'])  # the first is the export, whatever top_k
        sample = ranked[0][0]
    costs = table.cost_of(sample)
    return sample, ranked, {m: round(v, 4) if m == 'latency_ms' else int(round(v)) for m, v in costs.items()}


def input_size_of(tasks: list[Any]) -> tuple[int, ...]:
    """(C, H, W) of the held-out tasks' images."""
    x = tasks[0].support_x
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise TypeError(f'held-out tasks hold batches of (C, H, W) images, got {type(x).__name__}')
    return tuple(int(v) for v in x.shape[1:])
