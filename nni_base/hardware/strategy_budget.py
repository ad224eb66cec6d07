"""``BaseStrategy(budget=...)``'s two steps: check the argument, bind it to the search module's space.

Where it sits
    Called by :class:`~nni_base.BaseStrategy` only: :func:`checked_budget` at construction (a wrong type is
    refused there, before any data is read), :func:`bound_budget` when the single-task module is created; the
    module builds the :class:`~nni_base.hardware.SearchBudget` from it at its first batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from ..search.top_k import cell_shapes
from .budget import Budget
from .search_budget import SearchBudget

__all__ = ['Budget', 'bound_budget', 'checked_budget']


def checked_budget(budget: Any) -> Budget | None:
    """``budget`` if it is a :class:`Budget` or None; a ``TypeError`` that shows the spelling otherwise."""
    if budget is None or isinstance(budget, Budget):
        return budget
    raise TypeError(
        f'budget= takes a nni_base.hardware.Budget, got {type(budget).__name__} {budget!r}: e.g. '
        'BaseStrategy(budget=Budget(macs=2e6)) or Budget(params=20_000, latency_ms=3).'
    )


def bound_budget(budget: Budget, space: nn.Module | None, module: Any) -> Callable[[tuple[int, ...]], SearchBudget]:
    """A callable from the first batch's image size to the module's :class:`SearchBudget` over ``space``."""
    if space is None:
        raise RuntimeError('The budget has no space to cost: BaseStrategy.mutate_model did not run. Please report it.')

    def make(input_size: tuple[int, ...]) -> SearchBudget:
        return SearchBudget.for_space(budget, space, input_size, cell_shapes(module.cells()))

    return make
