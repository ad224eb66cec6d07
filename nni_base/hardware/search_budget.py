"""What a budgeted search carries: the space's cost table, the α penalty, the export under the budget.

Where it sits
    :class:`~nni_base.BaseStrategy` builds one from ``budget=`` when the search sees its first batch (the image size
    fixes the costs) and hands it to the search module, which calls :meth:`SearchBudget.add_gradient` after each
    step's loss and :meth:`SearchBudget.ranked` for export and top-k. The search package never imports this one:
    it only calls these two methods.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..search.top_k import CellShape
from .budget import Budget, check_budget, format_costs
from .cost_table import CostTable, CostTableError, build_cost_table
from .export import BudgetedComponents, top_k_under_budget
from .penalty import BudgetPenalty

__all__ = ['SearchBudget', 'load_cost_table']

_logger = logging.getLogger(__name__)


def load_cost_table(path: str | Path) -> CostTable:
    """A cost (latency) table file written by ``python -m nni_base.cli.latency``, validated."""
    path = Path(path)
    if not path.is_file():
        raise CostTableError(f'The latency table {path} is not a file: build one with python -m nni_base.cli.latency.')
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CostTableError(f'The latency table {path} is not JSON ({error}): rebuild it.') from None
    return CostTable.from_dict(data, where=f'The latency table {path}')


class SearchBudget:
    """A :class:`~nni_base.hardware.Budget` bound to one space and image size (see the module docstring)."""

    def __init__(self, budget: Budget, table: CostTable, shapes: Sequence[CellShape], rate: float = 0.05):
        self.budget, self.table, self.shapes = budget, table, list(shapes)
        self.penalty = BudgetPenalty(table, self.shapes, budget, rate=rate)

    @classmethod
    def for_space(
        cls, budget: Budget, space: nn.Module, input_size: Sequence[int], shapes: Sequence[CellShape]
    ) -> SearchBudget:
        """Build (or, for latency with ``budget.latency_table``, load) the cost table of ``space`` at ``input_size``."""
        input_size = tuple(int(v) for v in input_size)
        if budget.latency_table is not None:  # parameters and MACs counted here, latency as measured in the file
            measured = load_cost_table(budget.latency_table)
            table = build_cost_table(space, input_size).with_latency_of(
                measured, f'The latency table {budget.latency_table}'
            )
        else:
            table = build_cost_table(space, input_size, latency='latency_ms' in budget.limits())
        return cls(budget, table, shapes)

    def check(self, alphas: Mapping[str, torch.Tensor]) -> None:
        """Refuse (:class:`~nni_base.hardware.BudgetError`) a budget no architecture of the space meets."""
        check_budget(self.budget, self.table, BudgetedComponents(self.shapes, alphas, self.table).cheapest())

    def add_gradient(self, alphas: Mapping[str, torch.Tensor]) -> dict[str, float]:
        return self.penalty.add_gradient(alphas)

    def ranked(
        self, alphas: Mapping[str, torch.Tensor], top_k: int, choices: Mapping[str, Sequence[Any]] | None = None
    ) -> list[tuple[dict[str, Any], float]]:
        return top_k_under_budget(self.shapes, alphas, top_k, self.table, self.budget, choices)

    def fits(self, sample: Mapping[str, Any]) -> bool:
        """Whether the architecture ``sample`` is within the budget."""
        return self.budget.allows(self.table.cost_of(sample))

    def describe(self, sample: Mapping[str, Any]) -> str:
        """One line: the sample's costs against the limits."""
        costs = self.table.cost_of(sample)
        limits = ', '.join(f'{m} <= {v:g}' for m, v in self.budget.limits().items())
        return f'Exported cell costs {format_costs(costs)} (budget: {limits}).'
