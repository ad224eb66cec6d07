"""How far to trust a prior's α on a new dataset, decided on that dataset before adaptation starts.

Where it sits
    At the start of BASE's adaptation (:meth:`~nni_base.search.single_task.SingleTaskModule.check_and_prepare`),
    when ``BaseStrategy(prior=...)`` loaded a prior and ``AdaptationConfig(prior_trust_steps=N)`` is above 0 (off
    by default: measured on the database's held-out tasks it did not pay for its time, docs/evidence/metad2a.md).
    A prior's α is what its meta-training families rewarded; on a dataset unlike them it can point the search the
    wrong way, and nothing in the prior says when. So the dataset decides: the first training images
    (the ones the head initialisation reads) are split by class into a probe-train and a probe-validation half;
    from the prior, with α scaled by each of :data:`TRUST_SCALES` (1: the prior's α; 0.5: tempered; 0: uniform,
    the prior's weights only), ``N`` adaptation steps run on the probe-train half, and the derived cell's loss on
    the probe-validation half is measured. The run then starts from the prior with the scale of the lowest loss
    (ties keep the larger scale). Every candidate starts from the same weights and the same random stream, and
    the model, its BatchNorm statistics and the random stream are put back afterwards, so the adaptation proper
    runs as it would have, from the chosen α.

    >>> result = probe_alpha_scales(supernet, x, y, steps=8)
    >>> result.scale, result.losses          # e.g. 0.0, {1.0: 1.43, 0.5: 1.39, 0.0: 1.21}
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..space.mixed import architecture_logits
from .adaptation import TaskAdapter
from .supernet import SearchSupernet

__all__ = ['TRUST_SCALES', 'TrustResult', 'choose_scale', 'probe_alpha_scales', 'split_by_class', 'scale_alpha']

#: The α scales the probe compares, the prior's own first: ties go to the earlier one.
TRUST_SCALES = (1.0, 0.5, 0.0)


@dataclass
class TrustResult:
    """The chosen scale and every candidate's probe-validation loss and accuracy."""

    scale: float
    losses: dict[float, float] = field(default_factory=dict)
    accuracies: dict[float, float] = field(default_factory=dict)

    def describe(self) -> str:
        scores = ', '.join(f'x{s:g}: loss {self.losses[s]:.3f} acc {self.accuracies[s]:.2f}' for s in self.losses)
        kept = 'kept' if self.scale == TRUST_SCALES[0] else f'scaled by {self.scale:g}'
        return f"Prior trust on this dataset's own images ({scores}): the prior's alpha is {kept}."


def choose_scale(losses: dict[float, float]) -> float:
    """The scale of the lowest loss; among equal losses the first in ``losses`` (the prior's own α first)."""
    best = min(losses.values())
    return next(s for s, loss in losses.items() if loss <= best)


def split_by_class(y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of two halves with every class in both where it has two images: alternate images of each class."""
    first, second = [], []
    for c in torch.unique(y).tolist():
        idx = torch.nonzero(y == c).flatten()
        first.append(idx[0::2])
        second.append(idx[1::2])
    return torch.cat(first), torch.cat(second)


@torch.no_grad()
def scale_alpha(supernet: SearchSupernet, scale: float) -> None:
    """Multiply every architecture logit of the supernet by ``scale``."""
    modules = supernet.training_module.model.modules()
    for logits in {id(p): p for m in modules for p in architecture_logits(m).values()}.values():
        logits.mul_(scale)


def probe_alpha_scales(
    supernet: SearchSupernet,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    steps: int,
    batch_size: int = 32,
    scales: tuple[float, ...] = TRUST_SCALES,
) -> TrustResult:
    """Compare ``scales`` of the supernet's (prior) α on ``(x, y)`` and leave the supernet scaled by the winner.

    Each candidate: ``steps`` adaptation steps (weights and α, a fresh Gumbel sample each) on mini-batches of the
    probe-train half, then the derived cell's loss on the probe-validation half (:func:`split_by_class`). With
    fewer than two images of some class in ``(x, y)`` nothing is compared and the prior's α is kept.
    """
    train_idx, val_idx = split_by_class(y)
    if len(val_idx) == 0 or len(train_idx) == 0:
        return TrustResult(scales[0])
    model = supernet.training_module.model
    state = [t.detach().clone() for t in model.state_dict(keep_vars=True).values()]
    tensors = list(model.state_dict(keep_vars=True).values())
    rng = torch.get_rng_state()
    heads = list(supernet.rebuilt_heads)
    result = TrustResult(scales[0])
    generator = torch.Generator().manual_seed(0)
    order = [train_idx[torch.randperm(len(train_idx), generator=generator)[:batch_size]] for _ in range(steps)]
    try:
        for scale in scales:
            _restore(tensors, state)
            torch.set_rng_state(rng)
            supernet.rebuilt_heads = list(heads)
            scale_alpha(supernet, scale)
            adapter = TaskAdapter(supernet, search_steps=steps)
            for idx in order:
                adapter.step(x[idx], y[idx])
            result.losses[scale], result.accuracies[scale] = adapter.evaluate(x[val_idx], y[val_idx])
    finally:
        _restore(tensors, state)
        torch.set_rng_state(rng)
        supernet.rebuilt_heads = heads
    result.scale = choose_scale(result.losses)
    scale_alpha(supernet, result.scale)
    return result


@torch.no_grad()
def _restore(tensors: list[torch.Tensor], saved: list[torch.Tensor]) -> None:
    for t, s in zip(tensors, saved):
        t.copy_(s)
