"""Refit a conditioned prior's performance predictor on architectures *trained* on tasks (MetaD2A's database).

Where it sits
    After meta-training (``BaseStrategy(dataset_conditioning=True)``), before zero-shot use. The predictor that
    meta-training leaves learns weight-sharing accuracies (the supernet adapted for a few steps), which track the
    accuracy an architecture reaches when trained only weakly (``benchmarks/predictor_quality.py``). This builds
    the kind of database MetaD2A learns from — ``architectures`` random architectures of the prior's space, each
    trained from scratch on each of some meta-training ``tasks`` — and fits a fresh predictor on it, with the
    encoder and α generator untouched (the conditioned α does not change; only the ranking of its candidates).

    >>> records = train_database(space, tasks, architectures, steps=30, seed=0)      # minutes: trains every pair
    >>> prior = fit_predictor(load_prior('conditioned.pt'), tasks, architectures, records)  # seconds
    >>> save_prior(prior, 'conditioned_trained.pt'); zero_shot(prior, x, y, top_k=5)

``nni_base.api.fit_trained_predictor`` does all three, resumably.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from nni.nas.nn.pytorch import ModelSpace

from ..search.evaluation import train_on_task
from ..tasks import Task
from .conditioned_zero_shot import conditioner_of
from .encoder import check_support
from .predictor import PerformancePredictor, arch_features

__all__ = ['TrainedRecord', 'train_database', 'fit_predictor']

PAIRS_PER_TASK = 1000  # seeds per task: (task t, architecture a) trains from seed + 1000 t + a


@dataclass(frozen=True)
class TrainedRecord:
    """One database entry: architecture ``sample`` trained from scratch on ``tasks[task]``, its query accuracy."""

    task: int
    architecture: int
    accuracy: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def train_database(
    space: ModelSpace,
    tasks: Sequence[Task],
    architectures: Sequence[dict[str, Any]],
    *,
    steps: int = 30,
    seed: int = 0,
    done: Sequence[TrainedRecord] = (),
    on_record: Callable[[TrainedRecord], None] | None = None,
) -> list[TrainedRecord]:
    """Train every architecture from scratch on every task (``steps`` Adam steps, as ``train_on_task``); return
    the records. The pair (task t, architecture a) starts from ``torch.manual_seed(seed + 1000 t + a)``, so a
    database built in pieces (``done``: records already measured, skipped) equals one built at once."""
    if not tasks or not architectures:
        raise ValueError(
            f'A database needs at least one task and one architecture, got {len(tasks)} tasks and '
            f'{len(architectures)} architectures.'
        )
    if steps < 1:
        raise ValueError(f'steps must be >= 1 (Adam steps per trained architecture), got {steps}.')
    if len(architectures) > PAIRS_PER_TASK:
        raise ValueError(
            f'At most {PAIRS_PER_TASK} architectures per database (each (task, architecture) pair has '
            f'its own seed), got {len(architectures)}; build several databases.'
        )
    measured = {(r.task, r.architecture): r for r in done}
    records: list[TrainedRecord] = []
    for t, task in enumerate(tasks):
        for a, sample in enumerate(architectures):
            if (t, a) not in measured:
                pair_seed = seed + PAIRS_PER_TASK * t + a
                torch.manual_seed(pair_seed)
                net = space.freeze(sample)
                measured[t, a] = TrainedRecord(t, a, float(train_on_task(net, task, steps, seed=pair_seed)))
                if on_record is not None:
                    on_record(measured[t, a])
            records.append(measured[t, a])
    return records


def fit_predictor(
    prior: dict[str, Any],
    tasks: Sequence[Task],
    architectures: Sequence[dict[str, Any]],
    records: Sequence[TrainedRecord],
    *,
    steps: int = 300,
    lr: float = 3e-3,
    weight_decay: float = 1e-2,
    seed: int = 0,
) -> dict[str, Any]:
    """A copy of the conditioned ``prior`` whose predictor is a fresh one fitted (full batch, Adam) on ``records``:
    each task's accuracies relative to its mean, from the frozen encoder's encoding of its support set."""
    if steps < 1:
        raise ValueError(f'steps must be >= 1 (Adam steps of the predictor fit), got {steps}.')
    conditioner = conditioner_of(prior)
    conditioner.eval()
    by_task: dict[int, list[TrainedRecord]] = {}
    for r in records:
        if not (0 <= r.task < len(tasks) and 0 <= r.architecture < len(architectures)):
            raise ValueError(
                f'Record {r} points outside the {len(tasks)} tasks / {len(architectures)} architectures '
                'it was given with.'
            )
        if not math.isfinite(r.accuracy):
            raise ValueError(f'Record {r} has a non-finite accuracy.')
        by_task.setdefault(r.task, []).append(r)
    if sum(len(v) >= 2 for v in by_task.values()) == 0:
        raise ValueError(
            'Fitting the predictor needs at least two architectures trained on one task (it learns '
            'differences within a task); train more architectures per task.'
        )
    with torch.no_grad():
        encodings = {}
        for t in by_task:
            check_support(tasks[t].support_x, tasks[t].support_y)
            encodings[t] = conditioner.encode(tasks[t].support_x, tasks[t].support_y)
    features = [arch_features(s, conditioner.shapes, conditioner.choices) for s in architectures]
    used = [r for t, rs in by_task.items() if len(rs) >= 2 for r in rs]
    means = {t: sum(r.accuracy for r in rs) / len(rs) for t, rs in by_task.items()}
    enc = torch.stack([encodings[r.task] for r in used])
    arch = torch.stack([features[r.architecture] for r in used])
    target = torch.tensor([r.accuracy - means[r.task] for r in used])
    # In units of its spread: accuracy differences of a few points would otherwise be lost to weight decay.
    scale = float(target.std()) if len(target) > 1 and float(target.std()) > 0 else 1.0
    target = target / scale

    torch.manual_seed(seed)
    predictor = PerformancePredictor(conditioner.dim, arch.shape[1], conditioner.hidden)
    optimizer = torch.optim.Adam(predictor.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = (predictor(enc, arch) - target).square().mean()
        loss.backward()
        optimizer.step()
    if not torch.isfinite(loss):
        raise FloatingPointError(f'The predictor fit diverged (loss {float(loss)}); try a smaller lr (now {lr}).')
    with torch.no_grad():  # back to accuracy units
        predictor.net[-1].weight.mul_(scale)
        predictor.net[-1].bias.mul_(scale)
    conditioner.predictor = predictor
    conditioner.predictor_records = len(used)
    conditioner.predictor_labels = 'trained'
    fitted = copy.copy(prior)  # the weights and α are shared with ``prior``, not copied: only the entry changes
    fitted['conditioning'] = conditioner.state()
    fitted['meta'] = {
        **prior.get('meta', {}),
        'trained_predictor': {
            'records': len(used),
            'tasks': len(encodings),
            'architectures': len(architectures),
            'fit_steps': steps,
            'final_mse': float(loss.detach()) * scale**2,
        },
    }
    return fitted
