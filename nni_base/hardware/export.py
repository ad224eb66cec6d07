"""Export and top-k under a budget: the most probable architectures under α whose cost stays within the budget.

Where it sits
    After a budgeted search (``BaseStrategy(budget=...)``: ``export_top_models``, ``list_models``, the trial's
    exported cell) and after zero-shot generation under a budget. Without a budget nothing here runs.

How
    An architecture is a product of independent per-node options
    (:func:`~nni_base.search.top_k.architecture_components`), each with a log-probability under α and, from the
    :class:`~nni_base.hardware.CostTable`, a cost per metric; an architecture's cost is the table's fixed part plus
    its options' costs. The most probable architecture within the budget is a multiple-choice knapsack. It is
    solved by Lagrangian relaxation: each option's score becomes ``log p - t * sum_m cost_m / limit_m``, and the
    smallest ``t`` whose best product fits is found by bisection (``t = 0``: the unconstrained export, kept when it
    already fits); a greedy pass then raises any option whose more probable alternative still fits. Top-k adds the
    best one's neighbours and enumerates the relaxed scores best-first (with ``t`` doubled until enough fit), keeps
    the products that fit, and ranks them by their log-probability. Whatever comes back fits: each is checked
    against the budget before it is returned.

    >>> ranked = top_k_under_budget(shapes, alphas, 3, table, Budget(macs=1.5e6))
    >>> all(table.cost_of(sample)['macs'] <= 1.5e6 for sample, _ in ranked)
    True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ..search.top_k import CellShape, architecture_components, best_products, check_top_k, product_sample
from .budget import Budget, BudgetError, check_budget
from .cost_table import CostTable

__all__ = ['BudgetedComponents', 'top_k_under_budget', 'cheapest_costs']

#: Relaxed products the export examines beside the Lagrangian's (fixed, so the export does not depend on top_k).
EXPORT_VISITS = 200
#: Options per component the enumeration keeps: every option (a DARTS node has at most C(5,2) x 7 x 7).
ALL_OPTIONS = 10**6


class BudgetedComponents:
    """The components of an architecture under α, with every option's cost (see the module docstring)."""

    def __init__(
        self,
        shapes: Sequence[CellShape],
        alphas: Mapping[str, torch.Tensor],
        table: CostTable,
        choices: Mapping[str, Sequence[Any]] | None = None,
    ):
        self.table = table
        self.components = architecture_components(shapes, alphas, ALL_OPTIONS, choices)
        self.costs = [[table.entries_cost(entries) for _, entries in options] for options in self.components]

    def cost(self, index: Sequence[int]) -> dict[str, float]:
        table = self.table
        return {m: table.fixed[m] + sum(self.costs[c][i][m] for c, i in enumerate(index)) for m in table.metrics}

    def cheapest(self) -> dict[str, float]:
        """Each metric's minimum over the whole space (the metrics' minima may come from different architectures)."""
        return {
            m: self.table.fixed[m] + sum(min(cost[m] for cost in options) for options in self.costs)
            for m in self.table.metrics
        }

    def relaxed(self, budget: Budget, t: float) -> list[list[tuple[float, dict[str, Any]]]]:
        """Components whose scores are ``log p - t * (cost / limit summed over the limited metrics)``."""
        limits = budget.limits()
        return [
            [
                (score - t * sum(cost[m] / limit for m, limit in limits.items()), entries)
                for (score, entries), cost in zip(options, costs)
            ]
            for options, costs in zip(self.components, self.costs)
        ]

    def best_under(self, budget: Budget) -> tuple[int, ...]:
        """The option indices of the most probable product within ``budget`` (Lagrangian, then greedy)."""

        def fits(index: Sequence[int]) -> bool:
            return budget.allows(self.cost(index))

        def best(t: float) -> tuple[int, ...]:
            relaxed = self.relaxed(budget, t)
            return tuple(max(range(len(options)), key=lambda i: (options[i][0], -i)) for options in relaxed)

        index = best(0.0)
        if not fits(index):
            low, high = 0.0, 1.0
            while not fits(best(high)):
                low, high = high, high * 4
                if high > 1e9:
                    raise BudgetError(
                        'No architecture found within the budget although each limit alone can be met: the limits '
                        f'conflict ({budget.limits()}). Loosen one of them.'
                    )
            for _ in range(40):
                middle = (low + high) / 2
                low, high = (low, middle) if fits(best(middle)) else (middle, high)
            index = best(high)
        return self.raise_greedily(list(index), fits)

    def raise_greedily(self, index: list[int], fits) -> tuple[int, ...]:
        while True:
            gains = []
            for c, options in enumerate(self.components):
                for i, (score, _) in enumerate(options):
                    gain = score - options[index[c]][0]
                    if gain > 1e-12 and fits(index[:c] + [i] + index[c + 1 :]):
                        gains.append((gain, c, i))
            if not gains:
                return tuple(index)
            _, c, i = max(gains)
            index[c] = i

    def log_prob(self, index: Sequence[int]) -> float:
        return sum(self.components[c][i][0] for c, i in enumerate(index))

    def sample(self, index: Sequence[int]) -> dict[str, Any]:
        return product_sample(self.components, index)


def cheapest_costs(
    shapes: Sequence[CellShape], alphas: Mapping[str, torch.Tensor], table: CostTable, choices=None
) -> dict[str, float]:
    """Each metric's minimum over every architecture of the space (α only orders the options)."""
    return BudgetedComponents(shapes, alphas, table, choices).cheapest()


def top_k_under_budget(
    shapes: Sequence[CellShape],
    alphas: Mapping[str, torch.Tensor],
    top_k: int,
    table: CostTable,
    budget: Budget,
    choices: Mapping[str, Sequence[Any]] | None = None,
    pool: int = 50,
) -> list[tuple[dict[str, Any], float]]:
    """Up to ``top_k`` distinct architectures within ``budget`` with their log-probabilities, most probable first.

    The first is the export (the same for every ``top_k``): the best of :meth:`BudgetedComponents.best_under`'s
    product and the products that fit among the best :data:`EXPORT_VISITS` relaxed scores. The others: its
    neighbours that fit (one component changed) and the fitting products among the best ``pool * top_k`` relaxed
    scores, by log-probability. A budget the space cannot meet is a :class:`BudgetError`.
    """
    top_k = check_top_k(top_k)
    parts = BudgetedComponents(shapes, alphas, table, choices)
    check_budget(budget, table, parts.cheapest())
    fits = lambda index: budget.allows(parts.cost(index))  # noqa: E731
    t = _multiplier_of(parts, budget)
    found = {parts.best_under(budget), *_fitting_products(parts, budget, t, EXPORT_VISITS)}
    first = max(found, key=lambda index: (parts.log_prob(index), index))
    first = parts.raise_greedily(list(first), fits)
    found.add(first)
    if top_k > 1:
        for c, options in enumerate(parts.components):
            for i in range(len(options)):
                neighbour = first[:c] + (i,) + first[c + 1 :]
                if fits(neighbour):
                    found.add(neighbour)
        for _ in range(8):  # a larger t trades probability for headroom: more of the enumerated products fit
            found.update(_fitting_products(parts, budget, t, top_k * pool))
            if len(found) >= top_k * 2:
                break
            t = max(2 * t, 1e-2)
    ranked = [first] + sorted(found - {first}, key=lambda index: (-parts.log_prob(index), index))
    result = []
    for index in ranked[:top_k]:
        if not fits(index):  # cannot happen: every product above was checked
            raise AssertionError('an architecture over the budget was about to be exported')
        result.append((parts.sample(index), parts.log_prob(index)))
    return result


def _fitting_products(parts: BudgetedComponents, budget: Budget, t: float, visits: int) -> list[tuple[int, ...]]:
    """The products that fit among the ``visits`` best by relaxed score (option indices of ``parts``)."""
    relaxed = parts.relaxed(budget, t)
    # best_products walks options best first: sort each component by its relaxed score, map indices back
    orders = [sorted(range(len(o)), key=lambda i, o=o: (-o[i][0], i)) for o in relaxed]
    ordered = [[o[i] for i in order] for o, order in zip(relaxed, orders)]

    def original(index: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(order[i] for order, i in zip(orders, index))

    def fits(index: tuple[int, ...]) -> bool:
        return budget.allows(parts.cost(original(index)))

    return [original(index) for index, _ in best_products(ordered, visits, fits, max_visits=visits)]


def _multiplier_of(parts: BudgetedComponents, budget: Budget) -> float:
    """The smallest relaxation weight (to a factor of 2) at which the relaxed best product fits."""
    t = 0.0
    while True:
        relaxed = parts.relaxed(budget, t)
        index = tuple(max(range(len(o)), key=lambda i: (o[i][0], -i)) for o in relaxed)
        if budget.allows(parts.cost(index)) or t > 1e9:
            return t
        t = max(t * 2, 1e-3)
