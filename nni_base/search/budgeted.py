"""A single-task search under a cost budget: the search module's side of ``BaseStrategy(budget=...)``.

Where it sits
    Mixed into :class:`~nni_base.search.single_task.SingleTaskModule`. The strategy sets ``make_budget``, a
    callable that binds the user's :class:`~nni_base.hardware.Budget` to this space at the data's image size
    (:class:`~nni_base.hardware.SearchBudget`, built in :mod:`nni_base.hardware`, which this package never imports:
    it only calls the object's ``check``, ``add_gradient``, ``ranked`` and ``describe``). Once the first batch is
    seen, the budget is built and checked (an impossible one is refused before any training); every search step
    adds its term to α's gradient; validation, export and top-k use the most probable architecture *under* the
    budget, so the accuracy a run reports is that of the cell it exports.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ..space.gumbel_cell import sample_edges
from .top_k import CellShape

__all__ = ['BudgetedSearch']

_logger = logging.getLogger('nni_base.search.single_task')


class BudgetedSearch:
    """Budget handling for a search module (see the module docstring); inert while ``make_budget`` is None."""

    make_budget: Callable[[tuple[int, ...]], Any] | None = None
    budget: Any = None

    def prepare_budget(self, input_size: tuple[int, ...] | None) -> None:
        """Build the budget for ``input_size`` images and refuse it if no architecture of the space meets it."""
        if self.make_budget is None or self.budget is not None:
            return
        if input_size is None:
            raise TypeError(
                'A budget is costed at the image size of the training batches, but the first batch is not an '
                '(images, labels) pair: give the evaluator a loader of (image tensor, label) batches.'
            )
        budget = self.make_budget(tuple(int(v) for v in input_size))
        budget.check(self.alphas())
        self.budget = budget
        limits = ', '.join(f'{m} <= {v:g}' for m, v in budget.budget.limits().items())
        _logger.info('Searching under a budget: %s.', limits)

    def budget_gradient(self) -> None:
        """Add the budget's term to α's gradient (before α's step) and log the expected cost and multipliers."""
        if self.budget is None:
            return
        for name, value in self.budget.add_gradient(self.alphas()).items():
            self.log(name, value, on_step=True, on_epoch=False)

    def rank(self, top_k: int, shapes: list[CellShape], choices: Any, seed: int) -> list[tuple[dict[str, Any], float]]:
        if self.budget is None:
            return super().rank(top_k, shapes, choices, seed)  # type: ignore[misc]
        if choices:
            raise TypeError(
                'A budget costs the choices of DARTS-style cells; this space also has choices outside them '
                f'({sorted(choices)}), which the cost table does not cover. Search it without budget=.'
            )
        with self.averaged_alpha_applied():
            return self.budget.ranked(self.alphas(), top_k)

    def export(self) -> dict[str, Any]:
        if self.budget is None:
            return super().export()  # type: ignore[misc]
        return self.ranked_models(1)[0][0]

    def pin_budgeted_export(self) -> None:
        """Make the cells run the budgeted export wherever they run the derived architecture (validation, BatchNorm
        recalibration) until :meth:`unpin_export`."""
        if self.budget is None:
            return
        sample = self.export()
        for cell in self.cells():
            cell.fixed_edges = sample_edges(cell, sample)

    def unpin_export(self) -> None:
        if self.budget is None:
            return
        for cell in self.cells():
            cell.fixed_edges = None
