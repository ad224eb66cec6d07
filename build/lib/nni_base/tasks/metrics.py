"""The scores every layer above reports: a classifier's accuracy and a mean with its confidence interval.

Sits beside the task samplers, below the space and the search, so that search modules, evaluators, retraining,
few-shot evaluation and benchmarks all compute a score the same way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torchmetrics.functional.classification import multiclass_accuracy

__all__ = ['accuracy', 'mean_ci']


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Top-1 accuracy over the batch, as a 0-dim tensor on the logits' device (no host sync until read)."""
    return multiclass_accuracy(logits, labels, logits.shape[-1], average='micro', validate_args=False)


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """The mean of ``values`` and the half-width of its Student-t confidence interval.

    One value gives a half-width of ``nan``: its spread is unknown, and ``0`` would read as certainty. No value
    raises ``ValueError``.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        raise ValueError('mean_ci needs at least one value.')
    if v.size < 2:
        return float(v.mean()), math.nan
    from scipy import stats  # slow to import; most callers never reach here

    half = stats.t.ppf(0.5 + confidence / 2, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size)
    return float(v.mean()), float(half)
