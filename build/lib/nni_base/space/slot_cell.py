"""The paper's architecture parameterisation: one categorical per node input *slot* over (input, op) pairs.

Where it sits
    A supernet layer, like :class:`~nni_base.space.gumbel_cell.GumbelMixedCell`: both are
    :class:`~nni_base.space.sampled_cell.SampledCell` s, so the search loop, temperature schedule,
    derived-architecture mode and priors treat them alike. :class:`~nni_base.BaseStrategy` builds it instead of the
    DARTS-style cell when created with ``parameterization='slot'``.

Why
    BASE (paper section 3) describes a cell by discrete variables Z: every intermediate node has
    ``num_ops_per_node`` (2) input slots and each slot picks one (input node, operation) pair. That is
    exactly what NNI's :class:`~nni.nas.nn.pytorch.Cell` exposes as the choices ``'{label}/op_{i}_{k}'``
    and ``'{label}/input_{i}_{k}'``. Here each slot has its own categorical distribution over all
    pairs, so the search distribution *is* the distribution over NNI samples and the export is the
    most probable pair of every slot, with no DARTS-style top-k rule in between. Two slots of one node
    may read the same input (as in the genotypes of the BASE release).

Layout of ``alpha`` (one tensor per cell label, shared by all cells of the label)
    Shape ``(num_nodes * num_ops_per_node, (num_predecessors + num_nodes - 1) * len(op_names))``.
    Row ``(i - num_predecessors) * num_ops_per_node + k`` is slot ``k`` of node ``i``; column
    ``j * len(op_names) + o`` is the pair (input ``j``, operation ``op_names[o]``). Columns with
    ``j >= i`` are impossible for node ``i``: they are masked with ``-inf`` before every sample and
    softmax (never sampled, never exported, probability 0, no gradient) and are initialised to a large
    negative logit so that code reading the raw tensor (entropy logs, alpha averaging) sees them as
    (almost) zero-probability too.

Example
-------
>>> from nni_base import BaseStrategy, DartsTaskSpace
>>> from nni_base.api import build_supernet
>>> net = build_supernet(DartsTaskSpace(width=4, num_cells=3, num_classes=5),
...                      BaseStrategy(parameterization='slot'))
>>> tuple(net.alphas()['normal'].shape)      # 4 nodes x 2 slots, 5 inputs x 7 operations
(8, 35)
>>> sample = net.export()                    # {'normal/op_2_0': 'sep_conv_3x3', 'normal/input_2_0': [1], ...}
>>> len(sample)
32
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import torch
import torch.nn as nn
import torch.nn.functional as F

from .gumbel_cell import straight_through
from .sampled_cell import SampledCell

__all__ = ['SlotGumbelCell', 'derive_slot_cell', 'slot_index', 'pair_column', 'valid_pairs', 'INVALID_LOGIT']

INVALID_LOGIT = -30.0
"""Initial raw logit of impossible (input, op) columns; they are masked with ``-inf`` wherever alpha is used."""


def slot_index(node: int, slot: int, num_predecessors: int, num_ops_per_node: int) -> int:
    """Row of ``alpha`` that holds input slot ``slot`` of ``node`` (nodes numbered from the cell inputs, 0-based)."""
    return (node - num_predecessors) * num_ops_per_node + slot


def pair_column(pred: int, op_index: int, num_ops: int) -> int:
    """Column of ``alpha`` that holds the pair (input ``pred``, operation ``op_index``)."""
    return pred * num_ops + op_index


def valid_pairs(num_nodes: int, num_ops_per_node: int, num_predecessors: int, num_ops: int) -> torch.Tensor:
    """Boolean ``(num_slots, num_pairs)`` mask, True where the slot's node may read that pair's input."""
    rows = num_nodes * num_ops_per_node
    cols = (num_predecessors + num_nodes - 1) * num_ops
    mask = torch.zeros(rows, cols, dtype=torch.bool)
    for node in range(num_predecessors, num_predecessors + num_nodes):
        for k in range(num_ops_per_node):
            mask[slot_index(node, k, num_predecessors, num_ops_per_node), : node * num_ops] = True
    return mask


def derive_slot_cell(
    alpha: torch.Tensor,
    op_names: Sequence[str],
    label: str,
    num_nodes: int,
    num_predecessors: int = 2,
    num_ops_per_node: int = 2,
) -> dict[str, Any]:
    """Most probable (input, op) pair of every slot, as an NNI sample.

    Parameters
    ----------
    alpha
        Slot logits, shape ``(num_nodes * num_ops_per_node, (num_predecessors + num_nodes - 1) * len(op_names))``.
        Impossible columns are ignored whatever their value. Ties go to the earliest column (lowest input,
        then the first operation).
    op_names
        Candidate operation names, in column order.
    label
        Cell label, the prefix of the exported keys.

    Returns
    -------
    dict
        ``'{label}/op_{i}_{k}'`` -> operation name and ``'{label}/input_{i}_{k}'`` -> ``[j]``, as
        :func:`~nni_base.space.gumbel_cell.derive_cell` and NNI's ``Cell`` use them.
    """
    num_ops = len(op_names)
    mask = valid_pairs(num_nodes, num_ops_per_node, num_predecessors, num_ops).to(alpha.device)
    if tuple(alpha.shape) != tuple(mask.shape):
        raise ValueError(f'Slot alpha of {label!r} has shape {tuple(alpha.shape)}, expected {tuple(mask.shape)}.')
    best = alpha.detach().float().masked_fill(~mask, float('-inf')).argmax(-1).tolist()
    sample: dict[str, Any] = {}
    for node in range(num_predecessors, num_predecessors + num_nodes):
        for k in range(num_ops_per_node):
            pred, op = divmod(best[slot_index(node, k, num_predecessors, num_ops_per_node)], num_ops)
            sample[f'{label}/op_{node}_{k}'] = op_names[op]
            sample[f'{label}/input_{node}_{k}'] = [pred]
    return sample


class SlotGumbelCell(SampledCell):
    """Supernet cell with one Gumbel-softmax distribution per input slot over (input, op) pairs.

    Built in place of an NNI ``Cell`` when the strategy's ``parameterization`` is ``'slot'``
    (:func:`~nni_base.space.mixed.cell_hook`); users do not create it. ``hard``, ``sparse`` and
    ``relaxation`` mean what they mean for :class:`~nni_base.space.sampled_cell.SampledCell`: hard samples
    compute only the sampled pair of each slot (weighted by its straight-through weight so alpha gets a
    gradient); relaxed Gumbel or ``softmax`` weights mix every possible pair of the slot. A node's output is
    the sum over its slots. ``sample_none`` has no effect (there is no ``none`` choice).

    ``export_probs`` returns ``{'{label}/slot_{i}_{k}': {'{op}@{j}': p}}``: for slot ``k`` of node ``i``,
    the probability of every possible pair (operation ``op`` applied to input node ``j``); each slot's
    values sum to 1.
    """

    logits_key = '__slot_alpha__'

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        valid = valid_pairs(self.num_nodes, self.num_ops_per_node, self.num_predecessors, len(self.op_names))
        # Not persistent: a constant of the space, so priors and checkpoints hold the same keys as before.
        self.register_buffer('_valid_pairs', valid, persistent=False)

    def logits_shape(self) -> tuple[int, int]:
        return (
            self.num_nodes * self.num_ops_per_node,
            (self.num_predecessors + self.num_nodes - 1) * len(self.op_names),
        )

    def initial_logits(self) -> torch.Tensor:
        valid = valid_pairs(self.num_nodes, self.num_ops_per_node, self.num_predecessors, len(self.op_names))
        return (torch.randn(*valid.shape) * 1e-3).masked_fill(~valid, INVALID_LOGIT)

    @property
    def all_op_names(self) -> list[str]:
        return list(self.op_names)

    # ---- distribution ----------------------------------------------------------------------------
    def masked_logits(self) -> torch.Tensor:
        """``alpha`` with impossible pairs at ``-inf`` (differentiable in the possible ones)."""
        valid = cast(torch.Tensor, self._valid_pairs).to(self.alpha.device)
        return self.alpha.masked_fill(~valid, float('-inf'))

    def slot_probs(self) -> torch.Tensor:
        """Probabilities ``(num_slots, num_pairs)``; impossible pairs are exactly 0."""
        return F.softmax(self.masked_logits().detach().float(), dim=-1)

    def resample(self, memo: dict[str, Any]) -> dict[str, Any]:
        """Draw one sample per slot for this cell type, or reuse the one another cell of the type drew."""
        key = f'{self.label}/__slot_gumbel__'
        if key not in memo:
            logits = self.masked_logits()
            if self.relaxation == 'softmax':
                weights, chosen = F.softmax(logits, dim=-1), None
            elif self.hard:
                weights = straight_through(F.gumbel_softmax(logits, tau=self.tau, hard=False, dim=-1))
                chosen = weights.detach().argmax(-1).tolist()
            else:
                weights, chosen = F.gumbel_softmax(logits, tau=self.tau, hard=False, dim=-1), None
            memo[key] = (weights, chosen)
        self._weights, self._chosen = memo[key]
        return {key: memo[key]}

    # ---- export ------------------------------------------------------------------------------------
    def export(self, memo: dict[str, Any]) -> dict[str, Any]:
        if f'{self.label}/op_{self.num_predecessors}_0' in memo:
            return {}
        return derive_slot_cell(
            self.alpha, self.op_names, self.label, self.num_nodes, self.num_predecessors, self.num_ops_per_node
        )

    def export_probs(self, memo: dict[str, Any]) -> dict[str, Any]:
        """``{'{label}/slot_{i}_{k}': {'{op}@{j}': p}}`` over the possible pairs of every slot."""
        probs = self.slot_probs().cpu().tolist()
        n_ops = len(self.op_names)
        result: dict[str, Any] = {}
        for node in range(self.num_predecessors, self.num_predecessors + self.num_nodes):
            for k in range(self.num_ops_per_node):
                key = f'{self.label}/slot_{node}_{k}'
                if key in memo:
                    continue
                row = probs[slot_index(node, k, self.num_predecessors, self.num_ops_per_node)]
                result[key] = {
                    f'{op}@{j}': row[pair_column(j, o, n_ops)]
                    for j in range(node)
                    for o, op in enumerate(self.op_names)
                }
        return result

    # ``_derived_edges`` (node -> [(input, op index)] for eval mode / derived_architecture) is inherited: it
    # reads ``self.export({})``, so the derived forward runs exactly the exported slots.

    # ---- forward -------------------------------------------------------------------------------------
    def _forward_sampled(self, states: list[torch.Tensor]) -> None:
        weights = cast(torch.Tensor, self._weights)
        n_ops = len(self.op_names)
        sparse = self.hard and self.sparse and self.relaxation == 'gumbel'
        for node in range(self.num_predecessors, self.num_predecessors + self.num_nodes):
            node_ops = cast(Sequence[nn.ModuleDict], self.ops[node - self.num_predecessors])
            first = slot_index(node, 0, self.num_predecessors, self.num_ops_per_node)
            # Weight of each pair summed over the node's slots: a pair read by two slots is computed once.
            node_weights = weights[first : first + self.num_ops_per_node].sum(0)
            if sparse:
                columns = sorted(set(cast(list, self._chosen)[first : first + self.num_ops_per_node]))
            else:
                columns = list(range(node * n_ops))
            out = None
            for c in columns:
                pred, op = divmod(c, n_ops)
                # In the sparse path node_weights[c] is 1 (or 2) in value and carries the straight-through gradient.
                y = node_ops[pred][self.op_names[op]](states[pred]) * node_weights[c]
                out = y if out is None else out + y
            states.append(cast(torch.Tensor, out))
