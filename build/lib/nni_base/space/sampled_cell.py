"""What the per-edge and the slot Gumbel cells share: one NNI ``Cell`` → one supernet cell whose architecture
logits are a single tensor per cell type.

Where it sits
    Third layer (space). :class:`SampledCell` is the base of :class:`~nni_base.space.gumbel_cell.GumbelMixedCell`
    (one categorical per edge, DARTS's parameterisation) and :class:`~nni_base.space.slot_cell.SlotGumbelCell`
    (one categorical per input slot, the paper's): the search loop, temperature schedules, the derived-architecture
    mode and priors treat every subclass alike. A subclass says how its logits are shaped and initialised, how a
    sample is drawn from them (:meth:`resample`), what it exports, and how a sampled forward runs; the shared
    logits, the derived and fixed forward, and the search-time normalisation of pooling live here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar, cast

import torch
import torch.nn as nn
import torch.nn.functional as F
from nni.nas.nn.pytorch import Cell
from nni.nas.nn.pytorch.cell import preprocess_cell_inputs
from nni.nas.oneshot.pytorch.supermodule.sampling import PathSamplingCell

__all__ = ['SampledCell']


class SampledCell(PathSamplingCell):
    """A supernet cell with one logits tensor per cell type; built by :meth:`mutate` from an NNI ``Cell``.

    Parameters (of the search, read from ``mutate_kwargs``)
    ----------
    hard
        One-hot samples with straight-through gradients, computing only sampled operations.
    sparse
        With ``hard``, skip the operations that were not sampled (``False``: the dense reference path).
    relaxation
        ``'gumbel'`` (default) samples; ``'softmax'`` mixes every operation with ``softmax(alpha)`` weights.
    """

    #: The memo key (after ``'{label}/'``) of the logits every cell of a label shares; a key per subclass, so one
    #: parameterisation's logits are never taken for another's (or for NNI choices labelled like the cell).
    logits_key: ClassVar[str]

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
        key = f'{self.label}/{self.logits_key}'
        if key not in memo:  # first cell of this type: it creates the shared logits
            memo[key] = nn.Parameter(self.initial_logits())
        alpha = memo[key]
        expected = self.logits_shape()
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
        # Whether hard samples may draw `none` (per-edge cells; slots have no `none`), set by the search.
        self.sample_none: bool = False
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
        """``cls`` in place of an NNI ``Cell`` built from candidate operations; None for anything else."""
        if type(module) is not Cell:
            return None
        if module.op_candidates_factory is None:
            raise TypeError(
                f'Cell {module.label!r} has no op candidate factory; BaseStrategy supports cells '
                "built from a list or dict of candidate operations (as in NNI's DARTS space)."
            )
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

    # ---- what a subclass defines ---------------------------------------------------------------
    def logits_shape(self) -> tuple[int, int]:
        raise NotImplementedError

    def initial_logits(self) -> torch.Tensor:
        return torch.randn(*self.logits_shape()) * 1e-3

    def _forward_sampled(self, states: list[torch.Tensor]) -> None:
        raise NotImplementedError

    # ---- architecture parameters -------------------------------------------------------------
    @property
    def alpha(self) -> nn.Parameter:
        return cast(nn.Parameter, self._arch_alpha)

    def arch_parameters(self):
        yield self._arch_alpha

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
                raise RuntimeError(
                    f'{type(self).__name__} has no sample: call resample() before a training forward pass.'
                )
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
