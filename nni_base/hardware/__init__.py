"""Hardware-aware search: what every choice costs, budgets, and export under a budget.

A layer above the search algorithms (it reads their top-k components and cell shapes; they never import it):
:mod:`.cost_table` (parameters, MACs and CPU latency per (node, input, op) of a cell space), :mod:`.budget`
(the limits and the check that a space can meet them), :mod:`.penalty` (α's expected cost and the Lagrange
multiplier that holds a search to the budget), :mod:`.export` (top-k under a budget), :mod:`.search_budget` (what a
budgeted search carries).

>>> from nni_base import BaseStrategy
>>> from nni_base.hardware import Budget
>>> strategy = BaseStrategy(prior='default', budget=Budget(macs=1.5e6))
"""

from .budget import Budget, BudgetError, check_budget, format_costs
from .cost_table import METRICS, CostTable, CostTableError, build_cost_table
from .export import top_k_under_budget
from .penalty import BudgetPenalty, expected_cost
from .search_budget import SearchBudget, load_cost_table

__all__ = [
    'METRICS',
    'Budget',
    'BudgetError',
    'BudgetPenalty',
    'CostTable',
    'CostTableError',
    'SearchBudget',
    'build_cost_table',
    'check_budget',
    'expected_cost',
    'format_costs',
    'load_cost_table',
    'top_k_under_budget',
]
