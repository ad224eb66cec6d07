"""The α generator: dataset encoding → an offset to the shared architecture logits, one tensor per cell type.

Where it sits
    Between the set encoder (:mod:`.encoder`) and the supernet: a task starts its inner loop from
    ``shared α + offset`` (:class:`.module.ConditionedReptileModule`), and zero-shot generation
    (:func:`.zero_shot.zero_shot`) exports the top-k architectures of that α. Its last layer starts at zero, so an
    untrained generator leaves the prior exactly as it was.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn as nn

__all__ = ['AlphaOffsetGenerator']


class AlphaOffsetGenerator(nn.Module):
    """MLP from the encoding to ``{label: offset}`` with the shapes of the supernet's α tensors."""

    def __init__(self, dim: int, alpha_shapes: Mapping[str, tuple[int, ...]], hidden: int = 64):
        super().__init__()
        self.alpha_shapes = {str(k): tuple(int(s) for s in v) for k, v in alpha_shapes.items()}
        total = sum(math.prod(s) for s in self.alpha_shapes.values())
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, total))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, encoding: torch.Tensor) -> dict[str, torch.Tensor]:
        flat = self.net(encoding)
        out, start = {}, 0
        for label, shape in self.alpha_shapes.items():
            n = math.prod(shape)
            out[label] = flat[start:start + n].view(shape)
            start += n
        return out
