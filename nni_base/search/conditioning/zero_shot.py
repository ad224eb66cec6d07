"""Zero-shot generation: a new dataset's support set → top-k architectures, with no training step.

Where it sits
    The last stage of dataset conditioning, after meta-training wrote a conditioned prior
    (``BaseStrategy(dataset_conditioning=True, save_prior_to=...)``): encode the support set, α = shared α +
    g(encoding), the ``top_k`` most probable distinct architectures of that α (:mod:`..top_k`), re-ranked by the
    meta performance predictor when it has learnt from records. ``nni_base.api.zero_shot`` is this function.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..prior import load_prior
from ..top_k import check_top_k, rank_architectures, top_k_architectures
from .conditioner import Conditioner
from .encoder import check_support

__all__ = ['ZeroShotResult', 'zero_shot', 'conditioner_of']


@dataclass
class ZeroShotResult:
    """Top-k architectures for one dataset, best first, and what ranked them."""

    samples: list[dict[str, Any]]
    scores: list[float]            # predicted query accuracy, relative to the dataset's mean with a predictor_centred
    #                                prior (ranked_by 'predictor'), or log-probability under α
    log_probs: list[float]         # log-probability of each sample under the conditioned α
    ranked_by: str                 # 'predictor' or 'alpha'
    alpha: dict[str, torch.Tensor]  # the conditioned α
    encoding: torch.Tensor


def conditioner_of(prior: dict[str, Any]) -> Conditioner:
    """The prior's dataset conditioning, or a ``ValueError`` saying how to get a prior that has one."""
    state = prior.get('conditioning')
    if state is None:
        raise ValueError('This prior has no dataset encoder: zero-shot generation needs a prior meta-trained with '
                         'BaseStrategy(dataset_conditioning=True). Plain priors adapt to a dataset instead '
                         '(BaseStrategy(prior=...) with a Classification evaluator).')
    return Conditioner.from_state(state)


def zero_shot(prior: str | os.PathLike | dict[str, Any], support_x: torch.Tensor, support_y: torch.Tensor,
              top_k: int = 5, *, rank_by: str = 'auto', pool: int = 4) -> ZeroShotResult:
    """Encode a dataset's support set and return its ``top_k`` architectures (NNI samples), best first.

    ``rank_by``: ``'auto'`` (the predictor when it has learnt from records, else α), ``'predictor'`` or ``'alpha'``.
    ``pool``: the predictor ranks the ``pool * top_k`` architectures most probable under the conditioned α (a
    larger pool leans more on the predictor, e.g. one refitted on trained networks, and less on α).
    """
    top_k = check_top_k(top_k)
    if not isinstance(pool, int) or pool < 1:
        raise ValueError(f'pool must be an integer >= 1 (candidates per requested architecture), got {pool!r}.')
    if rank_by not in ('auto', 'predictor', 'alpha'):
        raise ValueError(f"rank_by must be 'auto', 'predictor' or 'alpha', got {rank_by!r}.")
    prior = load_prior(prior) if isinstance(prior, (str, os.PathLike, Path)) else prior
    conditioner = conditioner_of(prior)
    check_support(support_x, support_y)
    conditioner.eval()
    alpha, encoding = conditioner.conditioned_alpha(prior['alpha'], support_x, support_y)
    use_predictor = rank_by == 'predictor' or (rank_by == 'auto' and conditioner.predictor_records > 0)
    if use_predictor:
        ranked = rank_architectures(conditioner.shapes, alpha, top_k, conditioner.scorer(encoding), pool=pool,
                                    choices=conditioner.choices)
        log_prob = {_key(s): lp for s, lp in top_k_architectures(conditioner.shapes, alpha, top_k * pool,
                                                                 conditioner.choices)}
        log_probs = [log_prob[_key(s)] for s, _ in ranked]
    else:
        ranked = top_k_architectures(conditioner.shapes, alpha, top_k, conditioner.choices)
        log_probs = [score for _, score in ranked]
    return ZeroShotResult([s for s, _ in ranked], [score for _, score in ranked], log_probs,
                          'predictor' if use_predictor else 'alpha', alpha, encoding)


def _key(sample: dict[str, Any]) -> str:
    return repr(sorted(sample.items()))
