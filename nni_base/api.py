"""Few-line entry points: meta-train a prior, measure and use adaptation on held-out tasks."""

from __future__ import annotations

import functools
import json
import os
import random
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from nni.nas.nn.pytorch import ModelSpace
from tqdm.auto import tqdm

from .database.conditioned_zero_shot import ZeroShotResult, conditioner_of, zero_shot
from .database.ground_truth import load_database
from .database.trained_predictor import TrainedRecord, fit_predictor, train_database
from .database.zero_shot_models import DatabaseZeroShot
from .database.zero_shot_module import database_path
from .evaluator import EpisodicModule
from .io import write_json
from .prior import load_prior, save_prior
from .search import BaseSearchModule
from .search.adaptation import TaskAdapter
from .search.loop import adapt_each
from .search.meta_update import ModelState
from .search.top_k import random_architecture
from .strategy import BaseStrategy
from .tasks import Task, sample_tasks

__all__ = [
    'build_supernet',
    'adaptation_accuracy',
    'inner_loop_accuracy',
    'sample_tasks',
    'zero_shot',
    'zero_shot_from_database',
    'ZeroShotResult',
    'fit_trained_predictor',
]


def build_supernet(space: ModelSpace, strategy: BaseStrategy) -> BaseSearchModule:
    """A standalone supernet (with the strategy's prior loaded, if it has one) wrapped for adaptation.

    Like NNI's one-shot strategies, this turns ``space`` into the supernet in place.
    """
    module = EpisodicModule()
    module.set_model(strategy.mutate_model(space))
    supernet = BaseSearchModule(module, strategy.config)
    supernet.prepare_model()
    supernet.rebuilt_heads = list(strategy.rebuilt_heads)  # initialised by TaskAdapter from the first images
    return supernet


def adaptation_accuracy(
    supernet: BaseSearchModule,
    tasks: Sequence[Task],
    steps: int,
    *,
    batch_size: int | None = 32,
    search_steps: int | None = None,
    optimizer: str = 'sgd',
    weight_lr: float | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Query accuracy of the derived architecture on each task before and after ``steps`` adaptation steps.

    Each task runs BASE's adaptation (:class:`~nni_base.search.adaptation.TaskAdapter`, the step
    ``BaseStrategy(prior=...)`` takes through NNI's ``Classification``) on mini-batches of ``batch_size`` support
    images (``None``: all), then scores the query set as NNI's validation does (recalibrated BatchNorm, eval mode).
    ``search_steps``, ``optimizer``, ``weight_lr``: see ``TaskAdapter``. The supernet is restored after each task,
    so every task starts from the same prior.
    """
    state = ModelState(supernet.training_module.model)
    shared = state.snapshot()
    heads = list(supernet.rebuilt_heads)
    generator = torch.Generator().manual_seed(seed)
    before, after = [], []
    try:
        for task in tasks:
            task = task.to(supernet.device)
            supernet.rebuilt_heads = list(heads)
            adapter = TaskAdapter(supernet, search_steps=search_steps, optimizer=optimizer, weight_lr=weight_lr)
            adapter.initialise_head(task.support_x, task.support_y)
            adapter.recent_inputs.append(task.support_x)  # "before" is scored with the support set's statistics
            before.append(adapter.accuracy(task.query_x, task.query_y))
            adapter.recent_inputs.clear()
            n = len(task.support_y)
            for _ in range(steps):
                idx = torch.randperm(n, generator=generator)[:batch_size] if batch_size and batch_size < n else None
                x, y = (task.support_x, task.support_y) if idx is None else (task.support_x[idx], task.support_y[idx])
                adapter.step(x, y)
            after.append(adapter.accuracy(task.query_x, task.query_y))
            state.restore(shared)
    finally:
        state.restore(shared)
        supernet.rebuilt_heads = heads
    return {
        'before': sum(before) / len(before),
        'after': sum(after) / len(after),
        'per_task_before': before,
        'per_task_after': after,
    }


def inner_loop_accuracy(supernet: BaseSearchModule, tasks: Sequence[Task], steps: int) -> dict[str, Any]:
    """Query accuracy before and after ``steps`` steps of meta-training's *inner loop* (not adaptation).

    What meta-training's validation measures (SGD on weights and α, batch statistics): a diagnostic of the
    meta-learned initialisation, not of what a user adapting a prior gets (:func:`adaptation_accuracy`).
    """
    results = adapt_each(supernet, tasks, steps, where='held-out')
    return {
        'before': results.mean_before,
        'after': results.mean_after,
        'per_task_before': results.before,
        'per_task_after': results.after,
    }


def load_strategy(prior: str | os.PathLike | Path, **overrides: Any) -> BaseStrategy:
    """Deprecated: ``BaseStrategy(prior=prior, **overrides)`` (the prior's settings are its defaults)."""
    warnings.warn('load_strategy(prior, ...) is now BaseStrategy(prior=prior, ...)', DeprecationWarning, stacklevel=2)
    return BaseStrategy(prior=prior, **overrides)


def fit_trained_predictor(
    prior: str | os.PathLike,
    space: ModelSpace,
    tasks: Sequence[Task],
    output: str | os.PathLike,
    *,
    architectures: int = 20,
    train_steps: int = 30,
    fit_steps: int = 300,
    seed: int = 0,
    database: str | os.PathLike | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Give a conditioned prior a predictor of *trained* accuracy; write it to ``output`` and return it.

    ``architectures`` random architectures of the prior's space are each trained from scratch (``train_steps``
    Adam steps) on each of ``tasks`` — meta-training tasks, not the datasets zero-shot is for — and the
    predictor is refitted on those accuracies (:mod:`nni_base.database.trained_predictor`); the
    conditioned α is unchanged. ``space`` is the model space the prior was meta-trained on. ``database``: a JSON
    file that receives every accuracy as it is measured; rerun with the same file and arguments, it resumes.
    """
    if architectures < 2:
        raise ValueError(f'architectures must be >= 2 (the predictor learns differences), got {architectures}.')
    loaded = load_prior(prior)
    conditioner = conditioner_of(loaded)
    rng = random.Random(seed)
    samples = [random_architecture(conditioner.shapes, rng, conditioner.choices) for _ in range(architectures)]
    header = {
        'seed': seed,
        'train_steps': train_steps,
        'architectures': samples,
        'tasks': [round(float(t.support_x.double().sum()), 4) for t in tasks],
    }
    done: list[TrainedRecord] = []
    if database is not None and Path(database).is_file():
        stored = json.loads(Path(database).read_text())
        if {k: stored.get(k) for k in header} != json.loads(json.dumps(header)):
            raise ValueError(
                f'{database} holds a database of other tasks, architectures, seed or train_steps; '
                'pass another file, or delete it to start over.'
            )
        done = [TrainedRecord(**r) for r in stored['records']]
    bar = tqdm(total=len(tasks) * architectures, initial=len(done), desc='training architectures', disable=not progress)

    def on_record(record: TrainedRecord) -> None:
        done.append(record)
        bar.update()
        if database is not None:
            write_json(database, {**header, 'records': [r.as_dict() for r in done]})

    try:
        records = train_database(
            space, tasks, samples, steps=train_steps, seed=seed, done=list(done), on_record=on_record
        )
    finally:
        bar.close()
    fitted = fit_predictor(loaded, tasks, samples, records, steps=fit_steps, seed=seed)
    save_prior(fitted, output)
    return fitted


@functools.lru_cache(maxsize=4)
def _database_model(path: str) -> DatabaseZeroShot:
    db = load_database(path)
    return DatabaseZeroShot.fit(db, range(len(db.tasks)))


def zero_shot_from_database(
    support_x: torch.Tensor,
    support_y: torch.Tensor,
    *,
    database: str | os.PathLike = 'shipped',
    top_k: int = 5,
    generator: str = 'frequency',
) -> list[tuple[dict[str, Any], float]]:
    """The ``top_k`` DARTS cells for a labelled support set, generated and ranked by a model fitted on every task
    of a ground-truth database (``'shipped'``: the one nni-base ships), with their predicted accuracy gains over the
    database's mean architecture; no prior, no training. The cells fit any :class:`~nni_base.DartsTaskSpace`.

    The first call fits the model (seconds); later calls for the same database reuse it.
    """
    model = _database_model(database_path(os.fspath(database)))
    return model.top_k(support_x, support_y, k=top_k, generator=generator)
