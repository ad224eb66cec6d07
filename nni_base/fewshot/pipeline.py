"""Few-shot architecture search end to end: search, build the full network, train it with MAML, test it.

The steps of paper section 6.3 / Appendix B, each usable on its own:

1. :func:`search_cells` — few-shot BASE (``meta_algorithm='maml'``) on the meta-train episodes, with an
   NNI ``NasExperiment``; returns the exported NNI sample. ``relaxation='softmax'`` is the ablation.
2. :func:`darts_cells_without_meta` — the non-meta baseline: NNI's own ``DARTS`` strategy on all
   meta-train classes pooled into one classification problem.
3. :func:`full_network` — the sample frozen into NNI's DARTS space with an N-way head.
4. :func:`train_maml` — second-order MAML on the same episodes as the search (same seed).
5. :func:`evaluate_fewshot` — mean accuracy and 95% confidence interval over (at least 600) test episodes.

For a fair comparison, :func:`width_for_budget` picks the full network's width whose parameter count is nearest a
common budget, and :func:`summarize_seeds` pools the scores of several search seeds on the same test episodes.
"""

from __future__ import annotations

import math
import statistics
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import nni
import pytorch_lightning as pl
import torch
import torch.nn as nn
from nni.nas.evaluator.pytorch import Classification
from nni.nas.experiment import NasExperiment
from nni.nas.oneshot.pytorch.strategy import DARTS
from torch.utils.data import DataLoader, Dataset, Subset

from ..evaluator import EpisodicClassification, meta_train_loader
from ..space.darts import DartsTaskSpace
from ..strategy import BaseStrategy
from ..tasks import TaskDistribution, episode_loader
from ..tasks.metrics import mean_ci
from .maml import FixedNetworkMAML

__all__ = [
    'FewShotScore',
    'SeedSummary',
    'search_cells',
    'darts_cells_without_meta',
    'full_network',
    'train_maml',
    'evaluate_fewshot',
    'count_parameters',
    'width_for_budget',
    'summarize_seeds',
]


@dataclass
class FewShotScore:
    """Accuracy over held-out episodes: mean, 95% confidence half-width, and the per-episode values.

    ``episodes_digest`` is the SHA-256 of the test episodes' tensors in order: equal digests mean that two
    scores come from exactly the same episodes.
    """

    mean: float
    ci95: float
    episodes: int
    accuracies: list[float] = field(repr=False, default_factory=list)
    episodes_digest: str = field(repr=False, default='')

    def __str__(self) -> str:
        return f'{100 * self.mean:.2f} ± {100 * self.ci95:.2f}%'


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters of a model."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _quiet_run(exp) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', UserWarning)  # NNI warns about every non-Module it traces
        try:
            exp.run()
        finally:
            exp.stop()  # now rather than from NNI's atexit hook


def search_cells(
    train_tasks: TaskDistribution,
    val_tasks: TaskDistribution | None = None,
    *,
    width: int = 8,
    num_cells: int = 3,
    steps_per_epoch: int = 20,
    max_epochs: int = 1,
    tasks_per_step: int = 4,
    seed: int = 0,
    trainer_kwargs: dict[str, Any] | None = None,
    **strategy_kwargs: Any,
) -> dict[str, Any]:
    """Few-shot BASE on the meta-train episodes; returns the exported NNI sample.

    ``strategy_kwargs`` go to :class:`~nni_base.BaseStrategy` (``meta_algorithm`` defaults to ``'maml'``
    here; pass ``relaxation='softmax'`` for the ablation, ``first_order=True`` for first-order MAML).
    """
    strategy_kwargs.setdefault('meta_algorithm', 'maml')
    evaluator = EpisodicClassification(
        train_tasks,
        val_tasks,
        tasks_per_step=tasks_per_step,
        steps_per_epoch=steps_per_epoch,
        max_epochs=max_epochs,
        seed=seed,
        **(trainer_kwargs or {}),
    )
    strategy = BaseStrategy(seed=seed, **strategy_kwargs)
    exp = NasExperiment(DartsTaskSpace(width, num_cells, train_tasks.ways), evaluator, strategy)
    _quiet_run(exp)
    return strategy.export_sample()


def darts_cells_without_meta(
    dataset: Dataset,
    num_classes: int,
    *,
    width: int = 8,
    num_cells: int = 3,
    steps: int = 30,
    batch_size: int = 32,
    seed: int = 0,
    trainer_kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """NNI's DARTS search on ``dataset`` as one ``num_classes``-way problem (no episodes, no meta-learning).

    Half of the images train the weights, the other half the architecture (DARTS's split).
    """
    pl.seed_everything(seed, workers=True, verbose=False)
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed)).tolist()
    half = len(order) // 2
    loader = nni.trace(DataLoader)
    evaluator = Classification(
        num_classes=num_classes,
        train_dataloaders=loader(
            Subset(dataset, order[:half]),
            batch_size=batch_size,
            shuffle=True,
            generator=torch.Generator().manual_seed(seed),
        ),
        val_dataloaders=loader(
            Subset(dataset, order[half:]),
            batch_size=batch_size,
            shuffle=True,
            generator=torch.Generator().manual_seed(seed + 1),
        ),
        max_epochs=1,
        limit_train_batches=steps,
        **{'logger': False, 'enable_checkpointing': False, **(trainer_kwargs or {})},
    )
    exp = NasExperiment(DartsTaskSpace(width, num_cells, num_classes), evaluator, DARTS())
    _quiet_run(exp)
    return exp.export_top_models(formatter='dict')[0]


def full_network(sample: dict[str, Any], ways: int, *, width: int = 8, num_cells: int = 3) -> nn.Module:
    """The found cells in NNI's DARTS space with a ``ways``-wide head (the paper's "full network")."""
    return DartsTaskSpace(width, num_cells, ways).freeze(sample)


def train_maml(
    model: nn.Module,
    train_tasks: TaskDistribution,
    val_tasks: TaskDistribution | None = None,
    *,
    steps_per_epoch: int = 20,
    max_epochs: int = 1,
    tasks_per_step: int = 4,
    inner_steps: int = 5,
    adapt_steps: int | None = None,
    inner_lr: float = 0.05,
    meta_lr: float = 1e-3,
    first_order: bool = False,
    val_episodes: int = 16,
    seed: int = 0,
    **trainer_kwargs: Any,
) -> FixedNetworkMAML:
    """Train ``model`` with MAML (second order by default) on the episodes ``seed`` selects.

    With the same ``train_tasks``, ``tasks_per_step``, ``steps_per_epoch`` and ``seed`` as
    :func:`search_cells`, the episodes are exactly those the search saw. ``trainer_kwargs`` go to the
    Lightning ``Trainer`` (``accelerator``, ``devices``, ``logger``, ``enable_progress_bar``, ...).
    """
    ways = _classifier_width(model)
    if ways is not None and ways != train_tasks.ways:
        raise ValueError(
            f'the model has {ways} outputs but the tasks are {train_tasks.ways}-way: build the model '
            f'with ways={train_tasks.ways}.'
        )
    pl.seed_everything(seed, workers=True, verbose=False)
    module = FixedNetworkMAML(
        model,
        inner_lr=inner_lr,
        inner_steps=inner_steps,
        adapt_steps=adapt_steps,
        meta_lr=meta_lr,
        first_order=first_order,
    )
    trainer_kwargs.setdefault('num_sanity_val_steps', 0)
    trainer = pl.Trainer(max_epochs=max_epochs, inference_mode=False, **trainer_kwargs)
    val = episode_loader(val_tasks, 1, val_episodes, seed=seed + 1) if val_tasks is not None else None
    with warnings.catch_warnings():
        # without val_tasks there is nothing to validate on, as asked: no need to say that the loop is skipped
        warnings.filterwarnings('ignore', message='.*no `val_dataloader`.*')
        trainer.fit(module, meta_train_loader(train_tasks, tasks_per_step, steps_per_epoch, seed), val)
    return module


def evaluate_fewshot(
    module: FixedNetworkMAML, test_tasks: TaskDistribution, *, episodes: int = 600, seed: int = 0, **trainer_kwargs: Any
) -> FewShotScore:
    """Mean query accuracy after adaptation over ``episodes`` test tasks, with its 95% confidence interval.

    Episodes depend only on ``seed``, so every method compared with the same seed sees the same tasks.
    """
    if episodes < 2:
        raise ValueError(f'episodes must be at least 2 for a confidence interval, got {episodes}.')
    trainer_kwargs.setdefault('logger', False)
    trainer = pl.Trainer(inference_mode=False, **trainer_kwargs)
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', message='.*does not have many workers.*')
        trainer.test(module, episode_loader(test_tasks, 1, episodes, seed=seed), verbose=False)
    mean, ci95 = mean_ci(module.test_accuracies)
    return FewShotScore(
        mean, ci95, len(module.test_accuracies), list(module.test_accuracies), module.test_episodes_digest
    )


def width_for_budget(
    build: Callable[[int], nn.Module], budget: int, *, min_width: int = 1, max_width: int = 1024
) -> tuple[int, int]:
    """The integer width whose network ``build(width)`` has the parameter count nearest ``budget``.

    ``build`` maps a width (channels) to a network, e.g. ``lambda w: full_network(sample, 5, width=w)`` or
    ``lambda h: Conv4(5, 3, h, 8)``; its parameter count (:func:`count_parameters`) must not decrease with the
    width. Widths are tried upwards from ``min_width`` until the count reaches the budget; a tie goes to the
    smaller width. The networks are built under a forked torch RNG, so the caller's random state, and with it
    the initialisation of the network it builds next, is as if this had not run.

    Returns
    -------
    (width, params)
        The chosen width and its parameter count.
    """
    if budget < 1:
        raise ValueError(f'budget must be a positive number of parameters, got {budget}.')
    if not 1 <= min_width <= max_width:
        raise ValueError(f'need 1 <= min_width <= max_width, got {min_width} and {max_width}.')
    best: tuple[int, int] | None = None
    with torch.random.fork_rng(devices=[]):
        for width in range(min_width, max_width + 1):
            params = count_parameters(build(width))
            if best is None or abs(params - budget) < abs(best[1] - budget):
                best = (width, params)
            if params >= budget:
                break
    assert best is not None
    return best


@dataclass
class SeedSummary:
    """Scores of one method over several search seeds, all tested on the same episodes.

    ``mean`` is the mean over seeds of the per-seed accuracies (equal to the mean of the pooled per-episode
    accuracies); ``pooled_ci95`` the 95% half-width over the pooled per-episode accuracies of all seeds (it
    mixes episode and seed variation, but counts every episode of every seed as independent);
    ``seed_sd`` the sample standard deviation of the per-seed means (``nan`` for one seed) and
    ``seed_ci95`` the Student-t 95% half-width over the per-seed means (seed variation only; ``nan`` for one
    seed). ``episode_means`` is, per test episode, the accuracy averaged over seeds (for paired comparisons).
    """

    mean: float
    per_seed: list[float]
    pooled_ci95: float
    seed_sd: float
    seed_ci95: float
    episodes: int
    episode_means: list[float] = field(repr=False, default_factory=list)


def summarize_seeds(scores: Sequence[FewShotScore]) -> SeedSummary:
    """Combine one method's :class:`FewShotScore` of several search seeds (see :class:`SeedSummary`).

    Every score must come from the same test episodes (equal ``episodes_digest`` where set, equal counts).
    """
    if not scores:
        raise ValueError('summarize_seeds needs at least one score.')
    counts = {score.episodes for score in scores}
    digests = {score.episodes_digest for score in scores if score.episodes_digest}
    if len(counts) > 1 or len(digests) > 1 or any(len(s.accuracies) != s.episodes for s in scores):
        raise ValueError(
            'the scores were not computed on the same test episodes '
            f'(episode counts {sorted(counts)}, {len(digests)} distinct episode digests).'
        )
    per_seed = [score.mean for score in scores]
    pooled = [acc for score in scores for acc in score.accuracies]
    mean, pooled_ci95 = mean_ci(pooled)
    n = len(per_seed)
    seed_sd = statistics.stdev(per_seed) if n > 1 else math.nan
    seed_ci95 = mean_ci(per_seed)[1]
    episode_means = [sum(values) / n for values in zip(*(score.accuracies for score in scores))]
    return SeedSummary(mean, per_seed, pooled_ci95, seed_sd, seed_ci95, counts.pop(), episode_means)


def _classifier_width(model: nn.Module) -> int | None:
    classifier = getattr(model, 'classifier', None)
    return getattr(classifier, 'out_features', None)
