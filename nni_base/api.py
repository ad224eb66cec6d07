"""Few-line entry points: meta-train a prior, measure and use adaptation on held-out tasks."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nni.nas.nn.pytorch import ModelSpace

from .evaluator import EpisodicModule
from .lightning import BaseLightningModule
from .strategy import BaseStrategy
from .tasks import Task

__all__ = ['build_supernet', 'adaptation_accuracy', 'load_strategy', 'sample_tasks']


def build_supernet(space: ModelSpace, strategy: BaseStrategy) -> BaseLightningModule:
    """A standalone supernet (with the strategy's prior loaded, if it has one) wrapped for adaptation.

    Like NNI's one-shot strategies, this turns ``space`` into the supernet in place.
    """
    module = EpisodicModule()
    module.set_model(strategy.mutate_model(space))
    return BaseLightningModule(module, strategy.config)


def adaptation_accuracy(supernet: BaseLightningModule, tasks: Sequence[Task], steps: int) -> dict[str, Any]:
    """Query accuracy of the derived architecture on each task before and after ``steps`` inner steps.

    The supernet is restored after each task, so every task starts from the same prior.
    """
    from .meta_update import ModelState

    state = ModelState(supernet.training_module.model)
    shared = state.snapshot()
    before, after = [], []
    for k, task in enumerate(tasks):
        before.append(supernet.query_metrics(task)[1])
        supernet.adapt(task, steps, state, where=f'held-out task {k}')
        after.append(supernet.query_metrics(task)[1])
        state.restore(shared)
    return {'before': sum(before) / len(before), 'after': sum(after) / len(after),
            'per_task_before': before, 'per_task_after': after}


def load_strategy(prior: str | os.PathLike | Path, **overrides: Any) -> BaseStrategy:
    """A BaseStrategy with the prior's own hyper-parameters (``overrides`` win)."""
    from .prior import load_prior
    from .temperature import TemperatureSchedule

    config = dict(load_prior(prior)['config'])
    config['temperature'] = TemperatureSchedule(**config['temperature'])
    config.update(overrides)
    return BaseStrategy(prior=prior, **config)


def sample_tasks(distribution, count: int, seed: int) -> list[Task]:
    """``count`` tasks that depend only on ``seed``."""
    from .tasks import EpisodeDataset

    episodes = EpisodeDataset(distribution, 1, count, seed=seed)
    return [episodes[i][0] for i in range(count)]

