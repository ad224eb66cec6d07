"""The expected cost of α, differentiable, and the Lagrange multiplier that holds a search to a budget.

Where it sits
    In BASE's single-task search and adaptation under ``BaseStrategy(budget=...)``: after each step's loss has
    given α its gradient, :meth:`BudgetPenalty.add_gradient` adds ``λ_m * E_m(α) / limit_m`` for every limited
    metric ``m`` and moves each multiplier by dual ascent, ``λ_m ← max(0, λ_m + rate * (E_m / limit_m - 1))``: it
    grows while the expected architecture is over its limit and shrinks back once it is under, so the search ends
    near the budget rather than at a fixed accuracy/cost trade-off (NNI's ``ExpectationProfilerPenalty`` adds a
    fixed-weight term). The export then projects onto the budget exactly (:mod:`.export`).

Expected cost
    Slot parameterisation: every slot's (input, op) pair is a categorical under ``softmax(α)``, so
    ``E = fixed + Σ_slots Σ_pairs p(pair) cost(pair)``, exactly the mean cost of the exported distribution.
    DARTS parameterisation: an edge's op is ``softmax`` over its non-``none`` ops, and a node keeps its
    ``num_inputs`` edges whose best op is most probable; the keep is relaxed to weights
    ``w_e = num_inputs * softmax_e(log max_op p_e(op) / 0.1)`` over the node's edges, so
    ``E = fixed + Σ_nodes Σ_edges w_e Σ_ops q_e(op) cost(edge, op)`` (a smooth stand-in for the DARTS rule, equal
    to the export's cost once two edges and their ops dominate).

    >>> penalty = BudgetPenalty(table, shapes, Budget(macs=1.5e6))
    >>> penalty.expected(alphas)['macs']          # a tensor with a gradient to every α
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F

from ..search.top_k import CellShape
from ..space.gumbel_cell import edge_index, num_edges
from ..space.slot_cell import pair_column, slot_index, valid_pairs
from .budget import Budget
from .cost_table import CostTable

__all__ = ['BudgetPenalty', 'cost_tensors', 'expected_cost']

#: Temperature of the relaxed edge keep (DARTS parameterisation): small, so the weights follow the export's rule.
KEEP_TEMPERATURE = 0.1


def cost_tensors(table: CostTable, shape: CellShape, metric: str) -> torch.Tensor:
    """One cell type's costs laid out like its α: (edges, ops) for DARTS cells, (slots, pairs) for slot cells."""
    n_ops = len(shape.op_names)
    ops = [table.op_names[shape.label].index(op) for op in shape.op_names]
    rows = table.slots[shape.label][metric]
    first = shape.num_predecessors
    if shape.parameterization == 'slot':
        costs = torch.zeros(shape.num_nodes * shape.num_inputs, (first + shape.num_nodes - 1) * n_ops)
        for node in range(first, first + shape.num_nodes):
            for k in range(shape.num_inputs):
                for pred in range(node):
                    for o, column in enumerate(ops):
                        value = rows[node - first][pred][column]
                        costs[slot_index(node, k, first, shape.num_inputs), pair_column(pred, o, n_ops)] = value
        return costs
    costs = torch.zeros(num_edges(shape.num_nodes, first), n_ops)
    for node in range(first, first + shape.num_nodes):
        for pred in range(node):
            costs[edge_index(node, pred, first)] = torch.tensor([rows[node - first][pred][c] for c in ops])
    return costs


def expected_cost(alpha: torch.Tensor, costs: torch.Tensor, shape: CellShape) -> torch.Tensor:
    """The expected cost of one cell type's choices under ``alpha`` (the module docstring), differentiable."""
    costs = costs.to(alpha.device, alpha.dtype)
    if shape.parameterization == 'slot':
        mask = valid_pairs(shape.num_nodes, shape.num_inputs, shape.num_predecessors, len(shape.op_names))
        probs = F.softmax(alpha.masked_fill(~mask.to(alpha.device), float('-inf')), dim=-1)
        return (probs * costs).sum()
    n_ops = len(shape.op_names)
    probs = F.softmax(alpha, dim=-1)
    q = probs[:, :n_ops] / probs[:, :n_ops].sum(-1, keepdim=True).clamp_min(1e-12)
    per_edge = (q * costs).sum(-1)
    # the DARTS rule keeps the edges whose best op is most probable; a sharp softmax over that log-probability
    strength = torch.log(probs[:, :n_ops].max(-1).values.clamp_min(1e-12)) / KEEP_TEMPERATURE
    total = alpha.new_zeros(())
    first = shape.num_predecessors
    for node in range(first, first + shape.num_nodes):
        rows = [edge_index(node, pred, first) for pred in range(node)]
        weights = min(shape.num_inputs, node) * F.softmax(strength[rows], dim=0)
        total = total + (weights * per_edge[rows]).sum()
    return total


class BudgetPenalty:
    """The budget's term in α's loss with one Lagrange multiplier per limited metric (the module docstring).

    Parameters
    ----------
    table, shapes
        The space's :class:`~nni_base.hardware.CostTable` and its cell shapes (``search.top_k.cell_shapes``).
    budget
        The limits.
    rate
        Dual-ascent step of every multiplier per search step.
    """

    def __init__(self, table: CostTable, shapes: Sequence[CellShape], budget: Budget, rate: float = 0.05):
        self.table, self.shapes, self.budget, self.rate = table, list(shapes), budget, rate
        self.costs = {(s.label, m): cost_tensors(table, s, m) for s in self.shapes for m in budget.limits()}
        self.multipliers = dict.fromkeys(budget.limits(), 0.0)

    def expected(self, alphas: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Expected cost of every limited metric under ``alphas`` (label → logits)."""
        alphas = {str(label): alpha for label, alpha in alphas.items()}
        result = {}
        for metric in self.budget.limits():
            total = torch.tensor(self.table.fixed[metric])
            for shape in self.shapes:
                total = total + expected_cost(alphas[shape.label], self.costs[shape.label, metric], shape).cpu()
            result[metric] = total
        return result

    def add_gradient(self, alphas: Mapping[str, torch.Tensor]) -> dict[str, float]:
        """Add the budget term's gradient to α's ``.grad`` and take one dual step; returns what to log:
        ``expected_<metric>_ratio`` (expected cost / limit) and ``budget_multiplier_<metric>``."""
        limits = self.budget.limits()
        expected = self.expected(alphas)
        ratios = {m: expected[m] / limit for m, limit in limits.items()}
        term = sum(self.multipliers[m] * ratios[m] for m in limits)
        if isinstance(term, torch.Tensor) and term.requires_grad:
            term.backward()
        logged = {}
        for m in limits:
            ratio = float(ratios[m].detach())
            self.multipliers[m] = max(0.0, self.multipliers[m] + self.rate * (ratio - 1.0))
            logged[f'expected_{m}_ratio'] = ratio
            logged[f'budget_multiplier_{m}'] = self.multipliers[m]
        return logged
