"""Few-line entry points: meta-train a prior, measure and use adaptation on held-out tasks."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nni.nas.nn.pytorch import ModelSpace

from .evaluator import EpisodicModule
from .search import BaseSearchModule
from .search.conditioning.zero_shot import ZeroShotResult, zero_shot
from .search.loop import adapt_each
from .search.prior import load_prior
from .strategy import BaseStrategy
from .tasks import EpisodeDataset, Task

__all__ = ['build_supernet', 'adaptation_accuracy', 'load_strategy', 'sample_tasks', 'zero_shot', 'ZeroShotResult']


def build_supernet(space: ModelSpace, strategy: BaseStrategy) -> BaseSearchModule:
    """A standalone supernet (with the strategy's prior loaded, if it has one) wrapped for adaptation.

    Like NNI's one-shot strategies, this turns ``space`` into the supernet in place.
    """
    module = EpisodicModule()
    module.set_model(strategy.mutate_model(space))
    return BaseSearchModule(module, strategy.config)


def adaptation_accuracy(supernet: BaseSearchModule, tasks: Sequence[Task], steps: int) -> dict[str, Any]:
    """Query accuracy of the derived architecture on each task before and after ``steps`` inner steps.

    The supernet is restored after each task, so every task starts from the same prior.
    """
    results = adapt_each(supernet, tasks, steps, where='held-out')
    return {'before': results.mean_before, 'after': results.mean_after,
            'per_task_before': results.before, 'per_task_after': results.after}


def load_strategy(prior: str | os.PathLike | Path, **overrides: Any) -> BaseStrategy:
    """A BaseStrategy with the prior's own hyper-parameters (``overrides`` win)."""
    config = dict(load_prior(prior)['config'])  # BaseConfig turns the stored temperature dict back into a schedule
    config.update(overrides)
    return BaseStrategy(prior=prior, **config)


def sample_tasks(distribution, count: int, seed: int) -> list[Task]:
    """``count`` tasks that depend only on ``seed``."""
    episodes = EpisodeDataset(distribution, 1, count, seed=seed)
    return [episodes[i][0] for i in range(count)]

