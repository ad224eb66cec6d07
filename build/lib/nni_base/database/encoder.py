"""The dataset encoder: a permutation-invariant set encoder over a task's support set (MetaD2A's).

Where it sits
    First stage of dataset conditioning (:mod:`nni_base.database`): support set → encoding, which the
    generator (:mod:`.generator`) turns into an α offset and the predictor (:mod:`.predictor`) reads beside an
    architecture. Trained inside Reptile meta-training (:class:`.module.ConditionedReptileModule`).

How
    Each image becomes a few channel-agnostic statistics (a 4x4 average-pooled map, mean, spread, edge energy,
    local peakiness), so any image size and channel count is accepted — or, with ``conditioning_features='stem'``,
    the per-channel statistics of the prior's stem output (:mod:`.stem`); an MLP embeds them; the embeddings are
    mean-pooled within each class (intra-class), transformed, then mean-pooled across classes (inter-class) and
    projected. Mean pooling at both levels makes the encoding invariant to the order of the images and of the
    classes — the two set levels of MetaD2A's encoder, with DeepSets pooling in place of its set transformer.

Why the statistics are standardised
    Raw, the statistics of two task families (peaks, texture) differ by ~30% in a few entries and the encoder's
    biases dominate its output: the two families' mean encodings differed by 6-8% of their norm (untrained
    encoder, 3 seeds; 19-29% standardised), the generator read nearly one input for both and learnt one offset
    for both. With ``standardise`` the statistics are standardised by running per-entry mean and
    variance over the meta-training support images (buffers, saved with the prior; updated only by training-mode
    ``forward``, used as stored in eval mode and zero-shot). They are the
    encoder's *input*, which training does not move, so they do not lag a drifting encoder (standardising the
    encoding instead was tried: its running statistics lagged the encoder's drift and both families' inputs
    ended on the same side of the mean).
    Conditioned priors written before (version 1) load with ``standardise=False``, as they were trained.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ['IMAGE_FEATURES', 'image_features', 'SetEncoder']

_POOLED = 4
#: Length of :func:`image_features`' vectors.
IMAGE_FEATURES = _POOLED * _POOLED + 5


def image_features(x: torch.Tensor) -> torch.Tensor:
    """``(N, C, H, W)`` images → ``(N, IMAGE_FEATURES)`` statistics that do not depend on C, H or W."""
    if x.dim() != 4:
        raise ValueError(f'Support images must be (N, C, H, W), got shape {tuple(x.shape)}.')
    x = x.float()
    pooled = F.adaptive_avg_pool2d(x, _POOLED).mean(1).flatten(1)
    mean = x.mean((1, 2, 3))
    std = x.flatten(1).std(1, unbiased=False)
    dx = (x[..., :, 1:] - x[..., :, :-1]).abs().mean((1, 2, 3))
    dy = (x[..., 1:, :] - x[..., :-1, :]).abs().mean((1, 2, 3))
    peak = (F.max_pool2d(x, 3, 1, 1) - F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)).mean((1, 2, 3))
    return torch.cat([pooled, torch.stack([mean, std, dx, dy, peak], 1)], 1)


def check_support(x: torch.Tensor, y: torch.Tensor) -> None:
    """A clear error for an empty or mismatched support set."""
    if x.numel() == 0 or len(x) == 0:
        raise ValueError('The support set is empty: the dataset encoder needs at least one labelled image.')
    if len(x) != len(y):
        raise ValueError(f'support_x has {len(x)} images but support_y {len(y)} labels.')


class SetEncoder(nn.Module):
    """Support set ``(x, y)`` → encoding ``(dim,)``: per-image embedding, intra-class then inter-class pooling."""

    def __init__(self, dim: int = 32, hidden: int = 64, standardise: bool = True, in_features: int = IMAGE_FEATURES):
        super().__init__()
        self.dim, self.hidden = dim, hidden
        self.standardise = standardise
        self.register_buffer('feature_mean', torch.zeros(in_features))
        self.register_buffer('feature_var', torch.ones(in_features))
        self.register_buffer('feature_count', torch.zeros((), dtype=torch.long))  # images seen so far
        self.embed = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.intra = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU())
        self.inter = nn.Linear(hidden, dim)

    def forward(self, features: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-image ``features`` (:func:`image_features`, or the stem's, :mod:`.stem`) and labels → encoding."""
        check_support(features, y)
        if self.training and self.standardise:
            self._update_stats(features)
        return self.encode_features(features, y)

    @torch.no_grad()
    def _update_stats(self, features: torch.Tensor) -> None:
        """Merge a support set's image statistics into the running mean and variance (exact pooled moments)."""
        f = features.detach().to(self.feature_mean.device, torch.float32)
        n, m = int(self.feature_count), len(f)
        mean, var = f.mean(0), f.var(0, unbiased=False)
        total = n + m
        delta = mean - self.feature_mean
        pooled = (self.feature_var * n + var * m + delta.square() * n * m / total) / total if n else var
        self.feature_mean.add_(delta, alpha=m / total)
        self.feature_var.copy_(pooled)
        self.feature_count.fill_(total)

    def encode_features(self, features: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The encoding from per-image features, without updating the statistics (the predictor's records)."""
        features = features.to(self.inter.weight.device)
        if self.standardise and int(self.feature_count) > 1:
            features = (features - self.feature_mean) / (self.feature_var.sqrt() + 1e-6)
        h = self.embed(features)
        _, inverse = torch.unique(y.to(h.device), return_inverse=True)
        n_classes = int(inverse.max()) + 1
        sums = h.new_zeros(n_classes, h.shape[1]).index_add(0, inverse, h)
        counts = torch.bincount(inverse, minlength=n_classes).to(h.dtype).unsqueeze(1)
        per_class = self.intra(sums / counts)  # intra-class pooling, then a class-level transform
        return self.inter(per_class.mean(0))  # inter-class pooling
