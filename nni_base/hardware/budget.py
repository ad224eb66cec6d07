"""A cost budget for a search: caps on parameters, MACs and CPU latency, and the check that one can be met.

Where it sits
    ``BaseStrategy(budget=Budget(macs=2e6))`` (and the zero-shot strategies) take one; the search steers α under it
    (:mod:`.penalty`), export and top-k return architectures under it (:mod:`.export`), and a budget no
    architecture of the space meets is refused before any training (:func:`check_budget`).

    >>> Budget(macs=2e6, params=20_000).limits()
    {'params': 20000.0, 'macs': 2000000.0}
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .cost_table import CostTable

__all__ = ['Budget', 'BudgetError', 'check_budget', 'format_costs']

UNITS = {'params': 'parameters', 'macs': 'MACs', 'latency_ms': 'ms'}


class BudgetError(ValueError):
    """A budget that is malformed or that no architecture of the space can meet."""


@dataclass(frozen=True)
class Budget:
    """Upper limits on an exported architecture's cost (any of them; ``None``: not limited).

    Parameters
    ----------
    params
        Parameters of the whole network (the auxiliary head left out, as the NAS papers count).
    macs
        Multiply-accumulates of one image at the evaluator's image size (convolutions and linear layers: what
        NAS papers call "FLOPs" or "multiply-adds").
    latency_ms
        CPU milliseconds of one image's forward pass, one thread, predicted from a latency table measured on
        this machine (``python -m nni_base.cli.latency``) or measured while the cost table is built.
    latency_table
        A latency table file for ``latency_ms`` (``None``: measure while building the cost table).
    """

    params: float | None = None
    macs: float | None = None
    latency_ms: float | None = None
    latency_table: str | None = None

    def __post_init__(self) -> None:
        for name in UNITS:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise BudgetError(f'Budget({name}={value!r}): a limit is a positive number (or None for no limit).')
        if not self.limits():
            raise BudgetError('Budget() limits nothing: pass params=, macs= or latency_ms= (e.g. Budget(macs=2e6)).')

    def limits(self) -> dict[str, float]:
        """The limited metrics and their limits."""
        return {name: float(getattr(self, name)) for name in UNITS if getattr(self, name) is not None}

    def allows(self, costs: dict[str, float], tolerance: float = 1e-9) -> bool:
        """Whether ``costs`` (metric → value) are within every limit."""
        return all(costs[m] <= limit * (1 + tolerance) for m, limit in self.limits().items())

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in (*UNITS, 'latency_table') if getattr(self, name) is not None}


def format_costs(costs: dict[str, float]) -> str:
    """``'12,345 parameters, 1.20 M MACs, 2.31 ms'`` for the metrics present."""
    parts = []
    for metric, value in costs.items():
        if metric == 'macs':
            parts.append(f'{value / 1e6:.3g} M MACs')
        elif metric == 'latency_ms':
            parts.append(f'{value:.3g} ms')
        elif metric == 'params':
            parts.append(f'{int(round(value)):,} parameters')
    return ', '.join(parts)


def check_budget(budget: Budget, table: CostTable, cheapest: dict[str, float]) -> None:
    """Refuse a budget that the cheapest architecture (``cheapest``: each metric's minimum over the space) breaks,
    or that limits a metric the table lacks."""
    missing = [m for m in budget.limits() if m not in table.metrics]
    if missing:
        raise BudgetError(
            f'The budget limits {missing} but the cost table has only {list(table.metrics)}: for latency_ms build '
            'the table with latency (python -m nni_base.cli.latency) or pass Budget(latency_table=...).'
        )
    broken = {m: limit for m, limit in budget.limits().items() if cheapest[m] > limit}
    if broken:
        parts = [f'{m} <= {limit:g} (the cheapest architecture needs {cheapest[m]:g})' for m, limit in broken.items()]
        raise BudgetError(
            'No architecture of this space meets the budget: '
            + '; '.join(parts)
            + '. Raise the limit, or search a smaller space (fewer cells or channels, smaller images).'
        )
