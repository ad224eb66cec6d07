"""Gumbel-softmax supernet cell for BASE.

A :class:`GumbelMixedCell` replaces each :class:`nni.nas.nn.pytorch.Cell` of a DARTS-style model
space. Like DARTS it builds the fully connected cell DAG (every intermediate node receives an edge
from every earlier node) and keeps one categorical distribution per edge over the candidate
operations plus ``none``. The logits (``alpha``) are one tensor per cell *type*: all cells that
share a label (``'normal'`` or ``'reduce'`` in NNI's DARTS space) share the tensor and, within one
forward pass, the same Gumbel sample, so a sample is one architecture for the whole network.

Three forward modes are used while searching:

* ``hard`` sampling (default): a one-hot Gumbel sample per edge with straight-through gradients
  to ``alpha``. Only the sampled operation of each edge is computed and edges that sampled
  ``none`` are skipped, so a step costs about as much as training one sub-network.
* ``soft`` sampling: the relaxed Gumbel-softmax weights, every operation computed and mixed
  (what NNI's ``GumbelDARTS`` does).
* ``softmax`` relaxation (the paper's ablation): no sampling, every operation weighted by
  ``softmax(alpha)`` as in DARTS.

In ``eval()`` mode the cell runs the architecture that :func:`derive_cell` exports, so the
validation accuracy is the accuracy of the architecture a user gets.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, cast

import torch
import torch.nn as nn
import torch.nn.functional as F

from .sampled_cell import SampledCell

NONE_OP = 'none'

__all__ = [
    'GumbelMixedCell',
    'derived_architecture',
    'fixed_architecture',
    'sample_edges',
    'derive_cell',
    'edge_index',
    'num_edges',
    'alpha_entropy',
    'straight_through',
    'paired_straight_through',
    'alpha_max_prob',
    'NONE_OP',
]


def num_edges(num_nodes: int, num_predecessors: int) -> int:
    """Number of edges in a fully connected cell DAG."""
    return sum(range(num_predecessors, num_predecessors + num_nodes))


def edge_index(node: int, pred: int, num_predecessors: int) -> int:
    """Row of ``alpha`` that holds edge ``pred -> node`` (nodes are numbered from the inputs, 0-based)."""
    return sum(range(num_predecessors, node)) + pred


def derive_cell(
    alpha: torch.Tensor,
    op_names: Sequence[str],
    label: str,
    num_nodes: int,
    num_predecessors: int = 2,
    num_inputs_per_node: int = 2,
) -> dict[str, Any]:
    """Most probable discrete cell under the DARTS rule.

    For every edge take the most probable operation other than ``none``; for every node keep the
    ``num_inputs_per_node`` incoming edges whose best operation is most probable.

    Parameters
    ----------
    alpha
        Logits, shape ``(num_edges, len(op_names) + 1)``; the last column is ``none``.
    op_names
        Candidate operation names, in column order.
    label
        Cell label, the prefix of the exported keys.

    Returns
    -------
    dict
        NNI sample entries ``'{label}/op_{i}_{k}'`` and ``'{label}/input_{i}_{k}'`` (inputs as ``[j]``).
    """
    probs = F.softmax(alpha.detach().float(), dim=-1)[:, : len(op_names)]
    sample: dict[str, Any] = {}
    for node in range(num_predecessors, num_predecessors + num_nodes):
        candidates = []
        for pred in range(node):
            p, op = probs[edge_index(node, pred, num_predecessors)].max(dim=0)
            # Sort key: strongest first; ties broken toward the earlier input for determinism.
            candidates.append((-float(p), pred, op_names[int(op)]))
        chosen = sorted(sorted(candidates)[:num_inputs_per_node], key=lambda c: c[1])
        for k in range(num_inputs_per_node):
            _, pred, op = chosen[k % len(chosen)]
            sample[f'{label}/op_{node}_{k}'] = op
            sample[f'{label}/input_{node}_{k}'] = [pred]
    return sample


def straight_through(soft: torch.Tensor) -> torch.Tensor:
    """One-hot of the argmax in value, with the gradient of the chosen entry's relaxed weight (as in GDAS).

    Only the sampled entry carries a gradient, so computing just the sampled operation (the sparse
    path) and computing every operation (the dense path) give the same gradients.
    """
    hard = F.one_hot(soft.detach().argmax(-1), soft.shape[-1]).to(soft.dtype)
    return hard + hard * (soft - soft.detach())


def paired_straight_through(logits: torch.Tensor, tau: float) -> tuple[torch.Tensor, list[int], list[int]]:
    """A hard Gumbel sample whose alpha gradient compares the sampled op with the runner-up.

    Per row, draw the two largest of ``(logits + Gumbel noise) / tau`` (a sample without replacement, as
    ProxylessNAS's binary gates): ``first`` is the sample, ``second`` its runner-up. In value the weights are
    the one-hot of ``first``; their gradient is that of the two-way softmax over (first, second), so alpha
    moves by ``dL/dw_first - dL/dw_second`` — whether the runner-up's output would lower the loss — instead of
    by ``dL/dw_first`` alone, which with BatchNorm after the op mostly measures the output's scale.

    Returns the weights ``(rows, cols)`` and the two index lists.
    """
    gumbel = -torch.empty_like(logits).exponential_().log()
    perturbed = (logits + gumbel) / tau
    top = perturbed.detach().topk(2, dim=-1).indices
    soft = perturbed.gather(-1, top).softmax(-1)
    hard = torch.zeros_like(soft)
    hard[:, 0] = 1.0
    weights = torch.zeros_like(logits).scatter(-1, top, hard + (soft - soft.detach()))  # exactly one-hot in value
    return weights, top[:, 0].tolist(), top[:, 1].tolist()


@contextlib.contextmanager
def derived_architecture(cells: Iterable[Any]) -> Iterator[None]:
    """Run the exported (most probable) architecture of ``cells`` inside the block, also in train mode.

    ``cells``: anything with a ``use_derived`` flag, GumbelMixedCells and the
    :class:`~nni_base.space.mixed.ArchSoftmax` samplers of other choices
    (``BaseSearchModule.architecture_modules()``).

    Used to score the architecture a user gets with batch statistics, and to train only its weights
    once the architecture is frozen. Alpha receives no gradient inside the block.
    """
    cells = list(cells)
    for cell in cells:
        cell.use_derived = True
    try:
        yield
    finally:
        for cell in cells:
            cell.use_derived = False


def sample_edges(cell: Any, sample: dict[str, Any]) -> dict[int, list[tuple[int, int]]]:
    """The (input, op index) pairs of every node of ``cell`` in an NNI ``sample`` (a cell's ``fixed_edges``)."""
    label = cell.label
    return {
        node: [
            (int(sample[f'{label}/input_{node}_{k}'][0]), cell.op_names.index(sample[f'{label}/op_{node}_{k}']))
            for k in range(cell.num_ops_per_node)
        ]
        for node in range(cell.num_predecessors, cell.num_predecessors + cell.num_nodes)
    }


@contextlib.contextmanager
def fixed_architecture(cells: Iterable[GumbelMixedCell], sample: dict[str, Any]) -> Iterator[None]:
    """Run the architecture of an NNI ``sample`` (DARTS-cell keys) with the supernet's weights inside the block.

    Used to score sampled architectures on a task's query set with the adapted shared weights (the records
    the meta performance predictor learns from, :mod:`nni_base.database`).
    """
    cells = list(cells)
    for cell in cells:
        cell.fixed_edges = sample_edges(cell, sample)
        cell.use_derived = True
    try:
        yield
    finally:
        for cell in cells:
            cell.fixed_edges = None
            cell.use_derived = False


def alpha_max_prob(alpha: torch.Tensor) -> torch.Tensor:
    """Mean over rows of the largest probability: 1/columns when uniform, 1 when every choice is certain."""
    return F.softmax(alpha.detach().float(), dim=-1).max(-1).values.mean()


def alpha_entropy(alpha: torch.Tensor) -> torch.Tensor:
    """Mean entropy (nats) of the per-edge categorical distributions."""
    logp = F.log_softmax(alpha.detach().float(), dim=-1)
    return -(logp.exp() * logp).sum(-1).mean()


class GumbelMixedCell(SampledCell):
    """Supernet version of a DARTS cell with a Gumbel-softmax distribution over each edge.

    Built by :meth:`~nni_base.space.sampled_cell.SampledCell.mutate` from an NNI :class:`~nni.nas.nn.pytorch.Cell`
    (users do not create it); ``hard``, ``sparse`` and ``relaxation`` as in :class:`SampledCell`. ``alpha``, the
    logits shared by the cells of a type, is ``(num_edges, num_ops + 1)``: the last column is ``none``.
    """

    logits_key = '__cell_alpha__'

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # How hard samples send a gradient to alpha: 'paired' (sampled op vs. runner-up) or 'straight_through'.
        # A sampled `none` computes nothing, so its edge gets no alpha gradient and `none` drifts up whenever
        # shrinking an op helps: by default (``sample_none`` False) it is left out of the samples.
        self.estimator: str = 'paired'
        self._second: list[int] | None = None

    def logits_shape(self) -> tuple[int, int]:
        return (num_edges(self.num_nodes, self.num_predecessors), len(self.op_names) + 1)

    # ---- distribution ------------------------------------------------------------------------
    @property
    def all_op_names(self) -> list[str]:
        return list(self.op_names) + [NONE_OP]

    # ---- sampling ------------------------------------------------------------------------------
    def resample(self, memo: dict[str, Any]) -> dict[str, Any]:
        """Draw a Gumbel sample for this cell type, or reuse the one another cell of the type drew."""
        key = f'{self.label}/__gumbel__'
        if key not in memo:
            logits = self.alpha
            if self.relaxation == 'softmax':
                # The DARTS-style ablation: a deterministic mixture of every operation, no noise.
                weights = F.softmax(logits, dim=-1)
                chosen = None
            elif self.hard:
                if not self.sample_none:
                    mask = torch.zeros_like(logits, dtype=torch.bool)
                    mask[:, len(self.op_names)] = True
                    logits = logits.masked_fill(mask, float('-inf'))
                if self.estimator == 'paired':
                    weights, chosen, second = paired_straight_through(logits, self.tau)
                    memo[key] = (weights, chosen, second)
                else:
                    weights = straight_through(F.gumbel_softmax(logits, tau=self.tau, hard=False, dim=-1))
                    chosen = weights.detach().argmax(-1).tolist()
            else:
                weights = F.gumbel_softmax(logits, tau=self.tau, hard=False, dim=-1)
                chosen = None
            if key not in memo:
                memo[key] = (weights, chosen, None)
        self._weights, self._chosen, self._second = memo[key]
        return {key: memo[key]}

    def export(self, memo: dict[str, Any]) -> dict[str, Any]:
        if f'{self.label}/op_{self.num_predecessors}_0' in memo:
            return {}
        return derive_cell(
            self.alpha, self.op_names, self.label, self.num_nodes, self.num_predecessors, self.num_ops_per_node
        )

    def export_probs(self, memo: dict[str, Any]) -> dict[str, Any]:
        probs = F.softmax(self.alpha.detach(), dim=-1).cpu().tolist()
        result = {}
        for node in range(self.num_predecessors, self.num_predecessors + self.num_nodes):
            for pred in range(node):
                edge = f'{self.label}/{node}_{pred}'
                if edge not in memo:
                    result[edge] = dict(zip(self.all_op_names, probs[edge_index(node, pred, self.num_predecessors)]))
        return result

    # ---- forward -------------------------------------------------------------------------------
    def _forward_sampled(self, states: list[torch.Tensor]) -> None:
        weights = cast(torch.Tensor, self._weights)
        none_idx = len(self.op_names)
        for node in range(self.num_predecessors, self.num_predecessors + self.num_nodes):
            node_ops = cast(Sequence[nn.ModuleDict], self.ops[node - self.num_predecessors])
            out = None
            for pred in range(node):
                e = edge_index(node, pred, self.num_predecessors)
                if self.hard and self.sparse and self.relaxation == 'gumbel':
                    k = cast(list, self._chosen)[e]
                    terms = []
                    if k != none_idx:
                        # weights[e, k] is 1 in value; it carries the straight-through gradient to alpha.
                        terms.append(self._search_op(node_ops[pred], k, states[pred]) * weights[e, k])
                    j = self._second[e] if self._second is not None else none_idx
                    if j != none_idx:
                        # The runner-up adds 0 in value: only its output's inner product with the loss
                        # gradient is needed (for alpha), so its own weights get no gradient.
                        with torch.no_grad():
                            runner_up = self._search_op(node_ops[pred], j, states[pred])
                        terms.append(runner_up * weights[e, j])
                    if not terms:
                        continue
                    y = terms[0] if len(terms) == 1 else terms[0] + terms[1]
                else:
                    y = sum(
                        weights[e, k] * self._search_op(node_ops[pred], k, states[pred])
                        for k in range(len(self.op_names))
                    )
                out = y if out is None else out + y
            if out is None:  # every incoming edge sampled `none`
                out = self._zeros_like_node(states)
            states.append(cast(torch.Tensor, out))
