"""Few-line entry points: meta-train a prior, measure and use adaptation on held-out tasks."""

from __future__ import annotations

import json
import os
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nni.nas.nn.pytorch import ModelSpace
from tqdm.auto import tqdm

from .evaluator import EpisodicModule
from .io import write_json
from .search import BaseSearchModule
from .search.conditioning.predictor import random_architecture
from .search.conditioning.trained_predictor import TrainedRecord, fit_predictor, train_database
from .search.conditioning.zero_shot import ZeroShotResult, conditioner_of, zero_shot
from .search.loop import adapt_each
from .search.prior import load_prior, save_prior
from .strategy import BaseStrategy
from .tasks import EpisodeDataset, Task

__all__ = ['build_supernet', 'adaptation_accuracy', 'load_strategy', 'sample_tasks', 'zero_shot', 'ZeroShotResult',
           'fit_trained_predictor']


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



def fit_trained_predictor(prior: str | os.PathLike, space: ModelSpace, tasks: Sequence[Task],
                          output: str | os.PathLike, *, architectures: int = 20, train_steps: int = 30,
                          fit_steps: int = 300, seed: int = 0, database: str | os.PathLike | None = None,
                          progress: bool = True) -> dict[str, Any]:
    """Give a conditioned prior a predictor of *trained* accuracy; write it to ``output`` and return it.

    ``architectures`` random architectures of the prior's space are each trained from scratch (``train_steps``
    Adam steps) on each of ``tasks`` — meta-training tasks, not the datasets zero-shot is for — and the
    predictor is refitted on those accuracies (:mod:`nni_base.search.conditioning.trained_predictor`); the
    conditioned α is unchanged. ``space`` is the model space the prior was meta-trained on. ``database``: a JSON
    file that receives every accuracy as it is measured; rerun with the same file and arguments, it resumes.
    """
    if architectures < 2:
        raise ValueError(f'architectures must be >= 2 (the predictor learns differences), got {architectures}.')
    loaded = load_prior(prior)
    conditioner = conditioner_of(loaded)
    rng = random.Random(seed)
    samples = [random_architecture(conditioner.shapes, rng, conditioner.choices) for _ in range(architectures)]
    header = {'seed': seed, 'train_steps': train_steps, 'architectures': samples,
              'tasks': [round(float(t.support_x.double().sum()), 4) for t in tasks]}
    done: list[TrainedRecord] = []
    if database is not None and Path(database).is_file():
        stored = json.loads(Path(database).read_text())
        if {k: stored.get(k) for k in header} != json.loads(json.dumps(header)):
            raise ValueError(f'{database} holds a database of other tasks, architectures, seed or train_steps; '
                             'pass another file, or delete it to start over.')
        done = [TrainedRecord(**r) for r in stored['records']]
    bar = tqdm(total=len(tasks) * architectures, initial=len(done), desc='training architectures',
               disable=not progress)

    def on_record(record: TrainedRecord) -> None:
        done.append(record)
        bar.update()
        if database is not None:
            write_json(database, {**header, 'records': [r.as_dict() for r in done]})

    try:
        records = train_database(space, tasks, samples, steps=train_steps, seed=seed, done=list(done),
                                 on_record=on_record)
    finally:
        bar.close()
    fitted = fit_predictor(loaded, tasks, samples, records, steps=fit_steps, seed=seed)
    save_prior(fitted, output)
    return fitted
