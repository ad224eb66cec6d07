"""Zero-shot generation: a new dataset's support set → top-k architectures, with no training step.

Where it sits
    The last stage of dataset conditioning, after meta-training wrote a conditioned prior
    (``BaseStrategy(dataset_conditioning=True, save_prior_to=...)``): encode the support set, α = shared α +
    g(encoding), the ``top_k`` most probable distinct architectures of that α (:mod:`..top_k`), re-ranked by the
    meta performance predictor when it has learnt from records. ``nni_base.api.zero_shot`` is this function.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..prior import load_prior
from ..search.top_k import architecture_log_prob, check_top_k, random_architecture, top_k_architectures
from .conditioner import Conditioner
from .encoder import check_support

__all__ = ['ZeroShotResult', 'zero_shot', 'conditioner_of', 'rank_candidates']


@dataclass
class ZeroShotResult:
    """Top-k architectures for one dataset, best first, and what ranked them."""

    samples: list[dict[str, Any]]
    scores: list[float]  # predicted query accuracy, relative to the dataset's mean with a predictor_centred
    #                                prior (ranked_by 'predictor'), or log-probability under α
    log_probs: list[float]  # log-probability of each sample under the conditioned α
    ranked_by: str  # 'predictor' or 'alpha'
    alpha: dict[str, torch.Tensor]  # the conditioned α
    encoding: torch.Tensor


def conditioner_of(prior: dict[str, Any]) -> Conditioner:
    """The prior's dataset conditioning, or a ``ValueError`` saying how to get a prior that has one."""
    state = prior.get('conditioning')
    if state is None:
        raise ValueError(
            'This prior has no dataset encoder: zero-shot generation needs a prior meta-trained with '
            'BaseStrategy(dataset_conditioning=True). Plain priors adapt to a dataset instead '
            '(BaseStrategy(prior=...) with a Classification evaluator).'
        )
    return Conditioner.from_state(state)


def zero_shot(
    prior: str | os.PathLike | dict[str, Any],
    support_x: torch.Tensor,
    support_y: torch.Tensor,
    top_k: int = 5,
    *,
    rank_by: str = 'auto',
    pool: int = 4,
    candidates: str = 'alpha',
    seed: int = 0,
) -> ZeroShotResult:
    """Encode a dataset's support set and return its ``top_k`` architectures (NNI samples), best first.

    ``rank_by``: ``'auto'`` (the predictor when it has learnt from records, else α), ``'predictor'`` or ``'alpha'``.
    The ranked pool holds ``pool * top_k`` architectures per source in ``candidates``: ``'alpha'`` (the most
    probable under the conditioned α), ``'random'`` (uniformly random ones, drawn with ``seed``: worth it with a
    predictor of trained accuracy, :func:`nni_base.api.fit_trained_predictor`, when α itself ranks poorly) or
    ``'both'``. With the defaults and ``rank_by='alpha'`` the result is the conditioned α's top-k.
    """
    top_k = check_top_k(top_k)
    if rank_by not in ('auto', 'predictor', 'alpha'):
        raise ValueError(f"rank_by must be 'auto', 'predictor' or 'alpha', got {rank_by!r}.")
    check_candidates(pool, candidates)
    prior = load_prior(prior) if isinstance(prior, (str, os.PathLike, Path)) else prior
    conditioner = conditioner_of(prior)
    check_support(support_x, support_y)
    conditioner.eval()
    alpha, encoding = conditioner.conditioned_alpha(prior['alpha'], support_x, support_y)
    use_predictor = rank_by == 'predictor' or (rank_by == 'auto' and conditioner.predictor_records > 0)
    ranked = rank_candidates(
        conditioner, alpha, encoding, top_k, use_predictor=use_predictor, pool=pool, candidates=candidates, seed=seed
    )
    return ZeroShotResult(
        [s for s, _, _ in ranked],
        [score for _, score, _ in ranked],
        [lp for _, _, lp in ranked],
        'predictor' if use_predictor else 'alpha',
        alpha,
        encoding,
    )


def rank_candidates(
    conditioner: Conditioner,
    alpha: dict[str, torch.Tensor],
    encoding: torch.Tensor,
    top_k: int,
    *,
    use_predictor: bool,
    pool: int = 4,
    candidates: str = 'alpha',
    seed: int = 0,
    budget: Any = None,
) -> list[tuple[dict[str, Any], float, float]]:
    """The ``top_k`` best of the candidate pool (see :func:`zero_shot`): (sample, score, log-probability under α).

    With ``budget`` (a :class:`~nni_base.hardware.SearchBudget`) the pool holds only architectures under it: α's
    most probable ones under the budget, and random ones that fit (a draw over the budget is dropped).
    """
    check_candidates(pool, candidates)
    shapes, choices = conditioner.shapes, conditioner.choices
    size = top_k * pool if use_predictor or candidates != 'alpha' else top_k
    pooled: dict[str, dict[str, Any]] = {}
    if candidates in ('alpha', 'both'):
        if budget is None:
            probable = top_k_architectures(shapes, alpha, size, choices)
        else:
            probable = budget.ranked(alpha, size, choices)
        pooled.update((_key(s), s) for s, _ in probable)
    if candidates in ('random', 'both'):
        rng = random.Random(seed)
        for _ in range(size):
            sample = random_architecture(shapes, rng, choices)
            if budget is None or budget.fits(sample):
                pooled.setdefault(_key(sample), sample)
    if not pooled:  # only random candidates, none under the budget: the most probable ones under it
        pooled.update((_key(s), s) for s, _ in budget.ranked(alpha, size, choices))
    samples = list(pooled.values())
    log_probs = [architecture_log_prob(shapes, alpha, s, choices) for s in samples]
    scores = [float(v) for v in conditioner.scorer(encoding)(samples)] if use_predictor else log_probs
    order = sorted(range(len(samples)), key=lambda i: (-scores[i], i))[:top_k]
    return [(samples[i], scores[i], log_probs[i]) for i in order]


def check_candidates(pool: Any, candidates: Any) -> None:
    """``pool`` and ``candidates`` as :func:`zero_shot` accepts them, or a ``ValueError`` saying what is."""
    if isinstance(pool, bool) or not isinstance(pool, int) or pool < 1:
        raise ValueError(f'pool must be an integer >= 1 (candidates per requested architecture), got {pool!r}.')
    if candidates not in ('alpha', 'random', 'both'):
        raise ValueError(f"candidates must be 'alpha', 'random' or 'both', got {candidates!r}.")


def _key(sample: dict[str, Any]) -> str:
    return repr(sorted(sample.items()))
