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
import math
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, cast

import torch
import torch.nn as nn
import torch.nn.functional as F
from nni.nas.nn.pytorch import Cell
from nni.nas.nn.pytorch.cell import preprocess_cell_inputs
from nni.nas.oneshot.pytorch.supermodule.sampling import PathSamplingCell

NONE_OP = 'none'

__all__ = [
    'GumbelMixedCell',
    'derived_architecture',
    'fixed_architecture',
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


@contextlib.contextmanager
def fixed_architecture(cells: Iterable[GumbelMixedCell], sample: dict[str, Any]) -> Iterator[None]:
    """Run the architecture of an NNI ``sample`` (DARTS-cell keys) with the supernet's weights inside the block.

    Used to score sampled architectures on a task's query set with the adapted shared weights (the records
    the meta performance predictor learns from, :mod:`nni_base.search.conditioning`).
    """
    cells = list(cells)
    for cell in cells:
        edges: dict[int, list[tuple[int, int]]] = {}
        for node in range(cell.num_predecessors, cell.num_predecessors + cell.num_nodes):
            edges[node] = [
                (
                    int(sample[f'{cell.label}/input_{node}_{k}'][0]),
                    cell.op_names.index(sample[f'{cell.label}/op_{node}_{k}']),
                )
                for k in range(cell.num_ops_per_node)
            ]
        cell.fixed_edges = edges
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


class GumbelMixedCell(PathSamplingCell):
    """Supernet version of a DARTS cell with a Gumbel-softmax distribution over each edge.

    Built by :meth:`mutate` from an NNI :class:`~nni.nas.nn.pytorch.Cell`; users do not create it.

    Parameters
    ----------
    alpha
        Shared logits of this cell type, ``(num_edges, num_ops + 1)``.
    hard
        One-hot samples with straight-through gradients, computing only sampled operations.
    sparse
        With ``hard``, skip the operations that were not sampled. ``False`` computes all of them
        and weights them by the one-hot sample (the dense reference path; same forward value).
    relaxation
        ``'gumbel'`` (default) samples from the Gumbel-softmax distribution; ``'softmax'`` mixes every
        operation with ``softmax(alpha)`` weights (no noise; ``hard`` and ``sparse`` do not apply).
    """

    def __init__(
        self,
        op_factory,
        num_nodes,
        num_ops_per_node,
        num_predecessors,
        preprocessor,
        postprocessor,
        concat_dim,
        memo,
        mutate_kwargs,
        label,
    ):
        super().__init__(
            op_factory,
            num_nodes,
            num_ops_per_node,
            num_predecessors,
            preprocessor,
            postprocessor,
            concat_dim,
            memo,
            mutate_kwargs,
            label,
        )
        expected = (num_edges(num_nodes, num_predecessors), len(self.op_names) + 1)
        # A key of its own: the strategy fills memo[label] with the logits of NNI choices labelled `label`.
        key = f'{self.label}/__cell_alpha__'
        if key not in memo:  # first cell of this type: it creates the shared logits
            memo[key] = nn.Parameter(torch.randn(*expected) * 1e-3)
        alpha = memo[key]
        if tuple(alpha.shape) != expected:
            raise ValueError(
                f'Cells labelled {self.label!r} disagree on their shape: alpha {tuple(alpha.shape)} '
                f'vs {expected}. Give differently shaped cells different labels.'
            )
        self._arch_alpha = alpha
        self.hard: bool = mutate_kwargs.get('hard', True)
        self.sparse: bool = mutate_kwargs.get('sparse', True)
        self.relaxation: str = mutate_kwargs.get('relaxation', 'gumbel')
        if self.relaxation not in ('gumbel', 'softmax'):
            raise ValueError(f"relaxation must be 'gumbel' or 'softmax', got {self.relaxation!r}.")
        self.tau: float = 1.0
        # Whether hard samples may draw `none`. A sampled `none` computes nothing, so its edge gets no alpha
        # gradient and `none` drifts up whenever shrinking an op helps; by default it is left out of the
        # samples (its logit stays put) and the DARTS export ignores it anyway.
        self.sample_none: bool = False
        # How hard samples send a gradient to alpha: 'paired' (sampled op vs. runner-up) or 'straight_through'.
        self.estimator: str = 'paired'
        self._second: list[int] | None = None
        self.pool_batchnorm: bool = True
        # Weights of the current sample: set by resample(), shared by all cells of this label.
        self._weights: torch.Tensor | None = None
        self._chosen: list[int] | None = None
        self._derived: dict[int, list[tuple[int, int]]] | None = None
        self._derived_from: torch.Tensor | None = None
        # Run the derived architecture even in train mode (query evaluation with batch statistics).
        self.use_derived = False
        # An architecture to run instead of the derived one (``fixed_architecture``): node -> [(input, op index)].
        self.fixed_edges: dict[int, list[tuple[int, int]]] | None = None

    @classmethod
    def mutate(cls, module, name, memo, mutate_kwargs):
        if type(module) is Cell:
            if module.op_candidates_factory is None:
                raise TypeError(
                    f'Cell {module.label!r} has no op candidate factory; BaseStrategy supports cells '
                    "built from a list or dict of candidate operations (as in NNI's DARTS space)."
                )
            if mutate_kwargs.get('parameterization', 'darts') == 'slot':
                # Imported here, not at the top, only to avoid a circular import: slot_cell subclasses this class.
                # SlotGumbelCell keeps its logits under memo['{label}/__slot_alpha__'], never the per-edge key.
                from .slot_cell import SlotGumbelCell

                if not issubclass(cls, SlotGumbelCell):
                    cls = SlotGumbelCell
            return cls(
                module.op_candidates_factory,
                module.num_nodes,
                module.num_ops_per_node,
                module.num_predecessors,
                module.preprocessor,
                module.postprocessor,
                module.concat_dim,
                memo,
                mutate_kwargs,
                module.label,
            )
        return None

    # ---- architecture parameters -------------------------------------------------------------
    @property
    def alpha(self) -> nn.Parameter:
        return cast(nn.Parameter, self._arch_alpha)

    def arch_parameters(self):
        yield self._arch_alpha

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

    def _derived_edges(self) -> dict[int, list[tuple[int, int]]]:
        """``node -> [(pred, op index)]`` of the exported architecture (recomputed when alpha changes)."""
        # Compare values, not tensor versions: a MAML clone holds a fresh alpha tensor whose version
        # counter can equal the original's while its values differ.
        alpha = self.alpha.detach()
        if self._derived is None or self._derived_from is None or not torch.equal(self._derived_from, alpha):
            sample = self.export({})
            derived: dict[int, list[tuple[int, int]]] = {}
            for node in range(self.num_predecessors, self.num_predecessors + self.num_nodes):
                derived[node] = [
                    (
                        sample[f'{self.label}/input_{node}_{k}'][0],
                        self.op_names.index(sample[f'{self.label}/op_{node}_{k}']),
                    )
                    for k in range(self.num_ops_per_node)
                ]
            self._derived, self._derived_from = derived, alpha.clone()
        return self._derived

    # ---- forward -------------------------------------------------------------------------------
    def forward(self, *inputs: list[torch.Tensor] | torch.Tensor) -> tuple[torch.Tensor, ...] | torch.Tensor:
        processed: list[torch.Tensor] = preprocess_cell_inputs(self.num_predecessors, *inputs)
        states: list[torch.Tensor] = self.preprocessor(processed)
        if not self.training or self.use_derived:
            self._forward_derived(states)
        else:
            if self._weights is None:
                raise RuntimeError('GumbelMixedCell has no sample: call resample() before a training forward pass.')
            self._forward_sampled(states)
        this_cell = torch.cat(states[self.num_predecessors :], self.concat_dim)
        return self.postprocessor(this_cell, processed)

    def _forward_derived(self, states: list[torch.Tensor]) -> None:
        for node, edges in (self.fixed_edges or self._derived_edges()).items():
            node_ops = cast(Sequence[nn.ModuleDict], self.ops[node - self.num_predecessors])
            out = None
            for pred, op in edges:
                # Same op as the search ran it (pooling normalised): these are the weights it trained.
                y = self._search_op(node_ops[pred], op, states[pred])
                out = y if out is None else out + y
            states.append(cast(torch.Tensor, out))

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

    def _search_op(self, ops: nn.ModuleDict, k: int, x: torch.Tensor) -> torch.Tensor:
        """Operation ``k`` as the search runs it: pooling outputs normalised by their batch statistics.

        Every parametric DARTS op ends in BatchNorm, NNI's pooling ops do not; unnormalised, a pooled output's
        scale alone decides how it compares with the others. DARTS adds a non-affine BatchNorm after pooling
        during search for this reason; here it is stateless (batch statistics, no buffers), so priors keep
        their tensors. The supernet's derived forward uses it too (its weights were trained with it); the
        exported NNI sample is unchanged and is retrained as NNI's own ops.
        """
        name = self.op_names[k]
        y = ops[name](x)
        if self.pool_batchnorm and 'pool' in name:
            y = F.batch_norm(y, None, None, training=True)
        return y

    def _zeros_like_node(self, states: list[torch.Tensor]) -> torch.Tensor:
        ref = states[self.num_predecessors - 1]
        if len(states) > self.num_predecessors:
            return torch.zeros_like(states[-1])
        # The first node of a reduction cell has no computed sibling: infer the strided shape.
        reduction = any(getattr(m, 'stride', 1) in (2, (2, 2)) for m in self.ops[0].modules())
        h, w = ref.shape[-2:]
        if reduction:
            h, w = math.ceil(h / 2), math.ceil(w / 2)
        return ref.new_zeros(ref.shape[0], ref.shape[1], h, w)
