"""Episodic evaluator: a task distribution and a loss, handed to BaseStrategy through NNI.

NNI splits one-shot NAS into an evaluator (data + loss, as a Lightning module and trainer) and a
strategy (the search). :class:`EpisodicClassification` keeps that split for meta-learning: its
data are *tasks* (each training batch is the list of tasks of one meta-step) and its module says
how to score a task; :class:`~nni_base.BaseStrategy` runs the inner and outer loops on top.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import nni
import torch
import torch.nn as nn
from nni.nas.evaluator.pytorch import Lightning, LightningModule, Trainer
from torch.utils.data import DataLoader, Sampler

from .data.checks import check_image_size, check_images, classifier_outputs, input_channels
from .tasks import EpisodeDataset, TaskDistribution, episode_loader
from .tasks.metrics import accuracy as accuracy_of
from .tasks.mixture import ResolutionMixture

__all__ = [
    'check_evaluator',
    'training_data_of',
    'EpisodicModule',
    'EpisodicClassification',
    'EpochSeededSampler',
    'meta_train_loader',
    'check_episodic_space',
]

_logger = logging.getLogger(__name__)


def _as_is(item):
    return item


class EpochSeededSampler(Sampler[int]):
    """``num_samples`` random meta-step indices per epoch, a function of ``(seed, epoch)`` only.

    The indices are those of ``RandomSampler(replacement=True, num_samples=num_samples)`` with a
    generator seeded once with ``seed`` and iterated epoch after epoch; epoch ``e`` is rebuilt by
    replaying the draws of the epochs before it. Lightning calls :meth:`set_epoch` before every epoch,
    so a run resumed from an end-of-epoch checkpoint draws exactly the episodes the uninterrupted run
    would have drawn, where a sampler holding one running generator would start over at epoch 0.
    """

    def __init__(self, num_samples: int, seed: int, high: int = 2**31 - 1):
        self.num_samples, self.seed, self.high, self.epoch = int(num_samples), int(seed), int(high), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_samples

    def _epoch_draws(self, generator: torch.Generator) -> list[int]:
        # RandomSampler's chunking (32 at a time, then the remainder); the chunks decide the stream's values.
        draws: list[int] = []
        for _ in range(self.num_samples // 32):
            draws += torch.randint(self.high, (32,), dtype=torch.int64, generator=generator).tolist()
        draws += torch.randint(self.high, (self.num_samples % 32,), dtype=torch.int64, generator=generator).tolist()
        return draws

    def __iter__(self) -> Iterator[int]:
        # A generator function, so the epoch is read at the first draw: Lightning may create the iterator
        # before it calls set_epoch.
        generator = torch.Generator().manual_seed(self.seed)
        for _ in range(self.epoch):
            self._epoch_draws(generator)
        yield from self._epoch_draws(generator)


def meta_train_loader(
    tasks: TaskDistribution | ResolutionMixture,
    tasks_per_step: int,
    steps_per_epoch: int,
    seed: int,
    *,
    num_workers: int = 0,
    pin_memory: bool = False,
) -> DataLoader:
    """The meta-training loader of :class:`EpisodicClassification`: batch = list of ``tasks_per_step`` tasks.

    Every epoch draws ``steps_per_epoch`` new meta-steps from a large index space, as a function of ``(seed,
    epoch)`` alone (:class:`EpochSeededSampler`), so two loaders with the same arguments yield the same episodes (the
    few-shot pipeline trains the found architecture on exactly the episodes the search saw) and a resumed run
    continues the sequence.
    """
    if isinstance(tasks, ResolutionMixture):  # balanced steps: tasks_per_step / R tasks of each image size
        episodes = tasks.episodes(tasks_per_step, steps=2**31 - 1, seed=seed)
    else:
        episodes = EpisodeDataset(tasks, tasks_per_step, steps=2**31 - 1, seed=seed)
    sampler = EpochSeededSampler(steps_per_epoch, seed)
    return nni.trace(DataLoader)(
        episodes, batch_size=None, sampler=sampler, collate_fn=_as_is, num_workers=num_workers, pin_memory=pin_memory
    )


@nni.trace
class EpisodicModule(LightningModule):
    """Loss and accuracy of a model on one task's data; the loops are the strategy's."""

    def __init__(self, criterion: type[nn.Module] = nn.CrossEntropyLoss):
        super().__init__()
        self.criterion = criterion()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def loss_and_accuracy(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.model(x)
        if isinstance(logits, tuple):  # retrain-mode spaces also return auxiliary logits
            logits = logits[0]
        accuracy = accuracy_of(logits, y)
        return self.criterion(logits, y), accuracy

    def training_step(self, batch, batch_idx):
        raise TypeError(
            'EpisodicClassification yields lists of tasks, which only nni_base.BaseStrategy can train '
            'on. Use BaseStrategy, or nni.nas.evaluator.pytorch.Classification for other strategies.'
        )

    def configure_optimizers(self):
        return None


@nni.trace
class EpisodicClassification(Lightning):
    """Evaluator over a distribution of classification tasks, for meta-training with BASE.

    Parameters
    ----------
    train_tasks
        Tasks for meta-training (see :class:`~nni_base.tasks.TaskDistribution`), or a
        :class:`~nni_base.tasks.mixture.ResolutionMixture` to draw every meta-step's tasks equally from
        several image sizes (``tasks_per_step`` must then be a multiple of the number of sizes).
    val_tasks
        Held-out tasks (classes disjoint from ``train_tasks``); after every meta-epoch the strategy
        adapts to ``val_episodes`` of them and logs query accuracy before and after adaptation.
    tasks_per_step
        Tasks per meta-step (K in the paper).
    steps_per_epoch
        Meta-steps per epoch; the number of epochs is the trainer's ``max_epochs``.
    val_episodes
        Held-out tasks per validation.
    seed
        Seed of the task sequence (same seed, same tasks).
    num_workers, pin_memory
        DataLoader worker processes that sample the tasks, and page-locked batches for a GPU (the tasks are a
        function of the seed and the step, so workers change nothing but the speed).
    trainer_kwargs
        Passed to the Lightning ``Trainer`` (``max_epochs``, ``accelerator``, ``devices``, ``num_nodes``,
        ``strategy``, ``logger``, ``precision='bf16-mixed'``, ...). With ``strategy='ddp'`` and W processes, each
        meta-step's ``tasks_per_step`` tasks are split among the processes (rank r adapts tasks r, r + W, ...) and the
        outer step is averaged over all of them, so the prior matches a one-process run over the same tasks.

    Examples
    --------
    >>> from nni_base.data import digits_splits
    >>> splits = digits_splits()
    >>> evaluator = EpisodicClassification(TaskDistribution(splits['train'], ways=5, shots=5, queries=5),
    ...                                    TaskDistribution(splits['test'], ways=5, shots=5, queries=5),
    ...                                    max_epochs=2, enable_progress_bar=False, logger=False)
    """

    def __init__(
        self,
        train_tasks: TaskDistribution | ResolutionMixture,
        val_tasks: TaskDistribution | ResolutionMixture | None = None,
        *,
        tasks_per_step: int = 4,
        steps_per_epoch: int = 50,
        val_episodes: int = 8,
        seed: int = 0,
        criterion: type[nn.Module] = nn.CrossEntropyLoss,
        num_workers: int = 0,
        pin_memory: bool = False,
        **trainer_kwargs: Any,
    ):
        if not isinstance(train_tasks, TaskDistribution | ResolutionMixture):
            raise TypeError(
                'train_tasks must be a nni_base.TaskDistribution or ResolutionMixture, got '
                f'{type(train_tasks).__name__}.'
            )
        if val_tasks is not None and val_tasks.ways != train_tasks.ways:
            raise ValueError(
                f'val_tasks are {val_tasks.ways}-way but train_tasks {train_tasks.ways}-way: the '
                'classifier is shared, use the same number of ways.'
            )
        for name, value in (
            ('tasks_per_step', tasks_per_step),
            ('steps_per_epoch', steps_per_epoch),
            ('val_episodes', val_episodes),
        ):
            if int(value) < 1:
                raise ValueError(f'{name} must be at least 1, got {value}.')
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(f'num_workers must be an int >= 0 (DataLoader worker processes), got {num_workers!r}.')
        loading = {'num_workers': num_workers, 'pin_memory': bool(pin_memory)}
        self.train_tasks = train_tasks
        self.val_tasks = val_tasks
        self.tasks_per_step = tasks_per_step
        self.seed = seed
        # Inner loops run during validation too, so Lightning must not switch autograd off there.
        trainer_kwargs['inference_mode'] = False
        # Under DDP every rank must read the same meta-step and keep its share of the tasks (search/distributed.py);
        # Lightning's DistributedSampler would instead hand each rank different meta-steps.
        trainer_kwargs.setdefault('use_distributed_sampler', False)
        trainer_kwargs.setdefault('num_sanity_val_steps', 0)
        train_loader = meta_train_loader(train_tasks, tasks_per_step, steps_per_epoch, seed, **loading)
        # NNI's one-shot strategies insist on a validation loader; an empty list means none.
        if isinstance(val_tasks, ResolutionMixture):  # one task of each size per validation batch
            val_loader = val_tasks.episode_loader(val_tasks.num_resolutions, val_episodes, seed=seed + 1)
        else:
            val_loader = (
                episode_loader(val_tasks, 1, val_episodes, seed=seed + 1, **loading) if val_tasks is not None else []
            )
        super().__init__(
            EpisodicModule(criterion),
            Trainer(**trainer_kwargs),
            train_dataloaders=train_loader,
            val_dataloaders=val_loader,
        )

    def task_config(self) -> dict[str, Any]:
        """JSON-like description of the task distribution, stored in priors."""
        return {
            'train': self.train_tasks.name,
            'val': self.val_tasks.name if self.val_tasks else None,
            'ways': self.train_tasks.ways,
            'shots': self.train_tasks.shots,
            'queries': self.train_tasks.queries,
            'image_shape': list(self.train_tasks.image_shape),
            'tasks_per_step': self.tasks_per_step,
            'seed': self.seed,
        }


def check_episodic_space(evaluator: EpisodicClassification, model: nn.Module | None) -> None:
    """Refuse a space whose classifier or stem does not fit the evaluator's tasks, naming the fix."""
    if model is None:
        return
    ways, outputs = evaluator.train_tasks.ways, classifier_outputs(model)
    if outputs is not None and outputs != ways:
        raise ValueError(
            f"Meta-training on {ways}-way tasks needs a {ways}-output classifier, but the space's has "
            f'{outputs}: build the space with num_classes={ways} (e.g. DartsTaskSpace(num_classes='
            f'{ways})). A prior adapts to datasets with other class counts later.'
        )
    channels, shape = input_channels(model), evaluator.train_tasks.image_shape
    if channels is not None and shape[0] != channels:
        check_images(torch.zeros(1, *shape), where=f'tasks {evaluator.train_tasks.name!r}', channels=channels)


def check_trains(evaluator: Any, config: Any = None) -> None:
    """Refuse a trainer that would run no training step: nothing would be searched, and NNI's final report would
    then fail on the missing metric (``KeyError: 'val_acc'``)."""
    if isinstance(evaluator, EpisodicClassification) and getattr(config, 'average_alpha_tasks', 0):
        return  # a prior's alpha averaged over adapted tasks after the fit (paper §5.2): no training step needed
    trainer = evaluator.trainer
    limit = trainer.limit_train_batches
    for setting, none, fix in (
        (f'max_epochs={trainer.max_epochs}', trainer.max_epochs == 0, 'max_epochs=1'),
        (f'max_steps={trainer.max_steps}', trainer.max_steps == 0, 'max_steps=-1 (no limit)'),
        (f'limit_train_batches={limit}', limit == 0, 'limit_train_batches=1.0 (all batches)'),
    ):
        if none:
            raise ValueError(
                f'The evaluator trains with {setting}: no training step would run, so BaseStrategy would have '
                f'nothing to search, adapt or meta-train. Pass a positive budget, e.g. '
                f'{type(evaluator).__name__}(..., {fix}).'
            )


def check_evaluator(evaluator: Any, config: Any, model: nn.Module | None) -> None:
    """Refuse an evaluator BaseStrategy cannot run with ``config`` (a :class:`~nni_base.search.BaseConfig`) on
    the mutated ``model``, naming the fix; warn about settings the evaluator makes moot."""
    if not isinstance(evaluator, Lightning):
        raise TypeError(
            f'BaseStrategy needs a Lightning evaluator (nni.nas.evaluator.pytorch.Classification '
            f'or nni_base.EpisodicClassification), got {type(evaluator).__name__}.'
        )
    check_trains(evaluator, config)
    episodic = isinstance(evaluator, EpisodicClassification)
    if config.average_alpha_tasks and not episodic:
        raise TypeError('average_alpha_tasks needs an EpisodicClassification evaluator to draw tasks from.')
    if config.zero_shot and episodic:
        raise TypeError(
            "zero_shot=True reads one dataset (NNI's Classification evaluator, its training "
            'dataloader); an EpisodicClassification meta-trains. Use zero_shot=False to meta-train.'
        )
    if episodic:
        check_episodic_space(evaluator, model)
        # images below what the space's reductions can use (a mixture: each of its sizes)
        for tasks in [t for t in (evaluator.train_tasks, evaluator.val_tasks) if t is not None and model is not None]:
            for shape in getattr(tasks, 'image_shapes', [tasks.image_shape]):
                check_image_size(shape, model, where=f'tasks {tasks.name!r}')
        if config.freeze_architecture_after is not None:
            _logger.warning(
                'freeze_architecture_after applies to single-task search / adaptation only; '
                'meta-training with an EpisodicClassification evaluator ignores it.'
            )


def training_data_of(evaluator: Lightning) -> Callable[[], Any]:
    """A callable giving a single-task evaluator's training data loader(s), as the user passed them."""
    if evaluator.datamodule is not None:
        return evaluator.datamodule.train_dataloader
    return lambda: evaluator.train_dataloaders
