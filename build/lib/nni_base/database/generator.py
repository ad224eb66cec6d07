"""The α generator: dataset encoding → an offset to the shared architecture logits, one tensor per cell type.

Where it sits
    Between the set encoder (:mod:`.encoder`) and the supernet: a task starts its inner loop from
    ``shared α + offset`` (:class:`.module.ConditionedReptileModule`), and zero-shot generation
    (:func:`.zero_shot.zero_shot`) exports the top-k architectures of that α. Its last layer starts at zero, so an
    untrained generator leaves the prior exactly as it was.

Per-operation offsets (``per_op``, the default)
    One task's α direction is noise-dominated edge by edge (texture's reduction cell, Adam inner step 0.3: the
    avg_pool entry moves +0.23 ± 0.26 on average over edges, single edges far noisier), and a generator with one
    output per (edge, operation) fitted that noise: two families' offsets differed, but not along any operation.
    With ``per_op`` the generator outputs one offset per (cell type, operation), added to every edge of the cell
    type: its regression target is the edge mean of the task's direction, 14x less noisy on a DARTS cell, and what
    it can express is what the known answers are (which operation a cell type prefers). A choice outside the
    cells (a ``LayerChoice``, each edge of NNI's ``NasBench201`` cell) has one logit vector: its offset is that
    vector's own.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn as nn

__all__ = ['AlphaOffsetGenerator']


class AlphaOffsetGenerator(nn.Module):
    """MLP from the encoding to ``{label: offset}`` with the shapes of the supernet's α tensors."""

    def __init__(self, dim: int, alpha_shapes: Mapping[str, tuple[int, ...]], hidden: int = 64, per_op: bool = True):
        super().__init__()
        self.alpha_shapes = {str(k): tuple(int(s) for s in v) for k, v in alpha_shapes.items()}
        if per_op and any(len(s) not in (1, 2) for s in self.alpha_shapes.values()):
            raise ValueError(
                f'per_op offsets need (edges, operations) or (values,) alpha tensors, got {self.alpha_shapes}.'
            )
        self.per_op = per_op
        total = sum(self._out_shape(s)[-1] if per_op else math.prod(s) for s in self.alpha_shapes.values())
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, total))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def _out_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        # a choice outside the cells (one logit vector, e.g. a NasBench201 edge) is its own single "edge"
        return (shape[-1],) if self.per_op else shape

    def forward(self, encoding: torch.Tensor) -> dict[str, torch.Tensor]:
        flat = self.net(encoding)
        out, start = {}, 0
        for label, shape in self.alpha_shapes.items():
            n = math.prod(self._out_shape(shape))
            part = flat[start : start + n]
            out[label] = part.expand(shape) if self.per_op else part.view(shape)
            start += n
        return out
