"""Episodic N-way K-shot classification tasks, sampled with learn2learn.

A :class:`TaskDistribution` turns a labelled dataset (see :mod:`nni_base.data`) into a source of few-shot tasks;
:class:`EpisodeDataset` / :func:`episode_loader` fix a reproducible sequence of task batches for meta-training.
"""

from __future__ import annotations

import contextlib
import io
import random
import sys
from dataclasses import dataclass
from typing import Any

import nni
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from ..data.checks import check_image


def _import_learn2learn() -> Any:
    # learn2learn 0.2.0 imports gym, which prints an "unmaintained" notice to stderr on import; that notice is
    # irrelevant here (gym is never used), so swallow it but pass any other output through.
    if 'gym' in sys.modules:
        import learn2learn

        return learn2learn
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stderr(buffer):
            import learn2learn
    finally:
        text = buffer.getvalue()
        if text and 'Gym has been unmaintained' not in text:
            sys.stderr.write(text)
    return learn2learn


l2l = _import_learn2learn()

__all__ = ['EpisodeDataset', 'Task', 'TaskDistribution', 'episode_loader', 'sample_tasks']


@dataclass
class Task:
    """One few-shot classification task.

    Attributes
    ----------
    support_x, query_x
        Images ``(ways * shots, C, H, W)`` and ``(ways * queries, C, H, W)``.
    support_y, query_y
        Labels in ``0..ways-1`` (a fresh random assignment of classes to labels per task).
    """

    support_x: Tensor
    support_y: Tensor
    query_x: Tensor
    query_y: Tensor

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Task:
        """Return a copy of the task with all tensors on ``device``."""
        return Task(
            self.support_x.to(device, non_blocking=non_blocking),
            self.support_y.to(device, non_blocking=non_blocking),
            self.query_x.to(device, non_blocking=non_blocking),
            self.query_y.to(device, non_blocking=non_blocking),
        )

    def pin_memory(self) -> Task:
        """The task in page-locked host memory (what a DataLoader with ``pin_memory=True`` calls)."""
        return Task(
            self.support_x.pin_memory(),
            self.support_y.pin_memory(),
            self.query_x.pin_memory(),
            self.query_y.pin_memory(),
        )


def _check_positive_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f'{name} must be an int, got {value!r}')
    if value < minimum:
        raise ValueError(f'{name} must be at least {minimum}, got {value}')
    return int(value)


def _labels_of(dataset: Dataset) -> np.ndarray:
    """One integer label per sample: ``dataset.labels``, else ``dataset.targets`` (torchvision), else read items.

    The last resort reads ``dataset[i][1]`` for every ``i`` once, as learn2learn's ``MetaDataset`` does, so any
    dataset of ``(image, label)`` items works (e.g. ``torch.utils.data.TensorDataset``), only more slowly.
    """
    for attribute in ('labels', 'targets'):
        labels = getattr(dataset, attribute, None)
        if labels is None:
            continue
        labels = labels.numpy() if isinstance(labels, Tensor) else np.asarray(labels)
        if labels.ndim != 1 or len(labels) != len(dataset) or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(
                f'dataset.{attribute} must be a 1-D integer array with one label per sample ({len(dataset)}), '
                f'got shape {labels.shape} and dtype {labels.dtype}'
            )
        return labels
    return _read_item_labels(dataset)


def _read_item_labels(dataset: Dataset) -> np.ndarray:
    try:
        size = len(dataset)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(
            f'{type(dataset).__name__} has no length: tasks need a map-style dataset of (image, int label) items'
        ) from None
    labels = np.empty(size, dtype=np.int64)
    for i in range(size):
        item = dataset[i]
        label = _item_label(item)
        if label is None:
            if not isinstance(item, tuple | list):
                got = type(item).__name__
            elif len(item) < 2:
                got = f'a {type(item).__name__} of {len(item)} element(s)'
            else:
                got = f'label {_describe(item[1])}'
            raise ValueError(
                f'{type(dataset).__name__} item {i} has no integer label: items must be (image, int label) pairs '
                f'(got {got}); otherwise give the dataset a 1-D integer `labels` or `targets` attribute with one '
                'label per sample'
            )
        labels[i] = label
    return labels


_INT_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def _describe(value: Any) -> str:
    if isinstance(value, Tensor | np.ndarray):
        return f'{type(value).__name__} of shape {tuple(value.shape)} and dtype {value.dtype}'
    return repr(value) if isinstance(value, float | str | bool | None) else type(value).__name__


def _item_label(item: Any) -> int | None:
    if not isinstance(item, tuple | list) or len(item) < 2:
        return None
    label = item[1]
    if isinstance(label, Tensor | np.ndarray):
        if label.ndim != 0:
            return None
        dtype_ok = label.dtype in _INT_DTYPES if isinstance(label, Tensor) else np.issubdtype(label.dtype, np.integer)
        return int(label.item()) if dtype_ok else None
    if isinstance(label, int | np.integer) and not isinstance(label, bool | np.bool_):
        return int(label)
    return None


def _labels_to_indices(labels: np.ndarray) -> dict[int, list[int]]:
    # group with one stable sort instead of a Python loop over (possibly 1.28M) samples
    order = np.argsort(labels, kind='stable')
    classes, starts = np.unique(labels[order], return_index=True)
    ends = np.append(starts[1:], len(order))
    return {int(c): order[s:e].tolist() for c, s, e in zip(classes, starts, ends)}


class TaskDistribution:
    """Distribution of N-way classification tasks over the classes of a dataset.

    Each task draws ``ways`` distinct classes, then ``shots + queries`` distinct images per class, split into
    ``shots`` support and ``queries`` query images; the classes are mapped to a random permutation of
    ``0..ways-1``.

    Parameters
    ----------
    dataset
        A dataset whose items are ``(image CxHxW tensor, int label)``. Labels are read from its ``labels``
        attribute (every dataset in :mod:`nni_base.data` has one), else its ``targets`` attribute (torchvision
        datasets), else from every item once (e.g. ``torch.utils.data.TensorDataset``); an attribute must be a
        1-D integer array with one label per sample.
    ways
        Classes per task (at least 2 and at most the number of classes in ``dataset``).
    shots
        Support images per class (at least 1).
    queries
        Query images per class (at least 1).
    name
        Name used in messages and logs.

    Raises
    ------
    ValueError
        If a count is out of range, the smallest class has fewer than ``shots + queries`` images, the labels are
        malformed, or an item has no integer label.
    """

    def __init__(self, dataset: Dataset, ways: int, shots: int, queries: int, name: str = 'tasks'):
        self.name = str(name)
        self.ways = _check_positive_int('ways', ways, 2)
        self.shots = _check_positive_int('shots', shots, 1)
        self.queries = _check_positive_int('queries', queries, 1)
        self.dataset = dataset
        if len(dataset) == 0:  # type: ignore[arg-type]
            raise ValueError(f"dataset '{self.name}' is empty: give TaskDistribution a dataset of labelled images")
        labels_to_indices = _labels_to_indices(_labels_of(dataset))
        num_classes = len(labels_to_indices)
        if self.ways > num_classes:
            raise ValueError(
                f"dataset '{self.name}' has {num_classes} classes but ways={self.ways}: lower ways to at most "
                f'{num_classes} or use a dataset with more classes'
            )
        smallest = min(labels_to_indices, key=lambda c: len(labels_to_indices[c]))
        size = len(labels_to_indices[smallest])
        if self.shots + self.queries > size:
            class_names = getattr(dataset, 'class_names', None)
            label = f"'{class_names[smallest]}' (label {smallest})" if class_names else f'with label {smallest}'
            raise ValueError(
                f"dataset '{self.name}': class {label} has only {size} images but shots + queries = "
                f'{self.shots} + {self.queries} = {self.shots + self.queries}: lower shots and queries to at most '
                f'{size} in total, or drop the small classes (e.g. with dataset.subset_classes)'
            )
        self._num_classes = num_classes
        first_image = dataset[labels_to_indices[smallest][0]][0]
        check_image(first_image, where=f"dataset '{self.name}'")
        if not bool(torch.isfinite(first_image).all()):
            raise ValueError(
                f"dataset '{self.name}': an image contains NaN or inf values: clean the data (drop those "
                'images, or torch.nan_to_num) before meta-training'
            )
        self._image_shape = tuple(int(s) for s in first_image.shape)

        # Passing labels_to_indices stops MetaDataset from loading every image to read its label.
        meta = l2l.data.MetaDataset(dataset, labels_to_indices=labels_to_indices)
        transforms = [
            l2l.data.transforms.NWays(meta, n=self.ways),
            l2l.data.transforms.KShots(meta, k=self.shots + self.queries),
            l2l.data.transforms.LoadData(meta),
            l2l.data.transforms.RemapLabels(meta, shuffle=True),
            l2l.data.transforms.ConsecutiveLabels(meta),
        ]
        # num_tasks=-1: every access samples a fresh task instead of caching descriptions
        self._taskset = l2l.data.TaskDataset(meta, task_transforms=transforms, num_tasks=-1)

    @property
    def num_classes(self) -> int:
        """Number of classes (with at least one image) that tasks are drawn from."""
        return self._num_classes

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """Shape ``(C, H, W)`` of one image."""
        return self._image_shape

    def sample(self) -> Task:
        """Sample one task, using Python's global :mod:`random` state (as learn2learn does).

        Returns
        -------
        Task
            ``ways * shots`` support and ``ways * queries`` query images, disjoint, grouped by label.
        """
        x, y = self._taskset[0]
        y = torch.as_tensor(y, dtype=torch.long)
        support, query = [], []
        for label in range(self.ways):
            # KShots already drew the images of a class in random order, so the first `shots` are a random pick
            idx = torch.nonzero(y == label).flatten()
            if len(idx) != self.shots + self.queries:  # guards against a learn2learn behaviour change
                raise RuntimeError(
                    f'learn2learn returned {len(idx)} images for label {label} in a task of '
                    f'{self.shots} + {self.queries} per class'
                )
            support.append(idx[: self.shots])
            query.append(idx[self.shots :])
        s, q = torch.cat(support), torch.cat(query)
        return Task(x[s], y[s], x[q], y[q])

    def __repr__(self) -> str:
        return (
            f'TaskDistribution(name={self.name!r}, ways={self.ways}, shots={self.shots}, '
            f'queries={self.queries}, num_classes={self.num_classes}, image_shape={self.image_shape})'
        )


class EpisodeDataset(Dataset):
    """Item i = the list of `tasks_per_step` tasks for meta-step i.

    Items are deterministic: the tasks of step ``i`` depend only on ``(seed, i)`` and the dataset, no matter in
    which order or how often items are read.

    Parameters
    ----------
    distribution
        Where tasks come from.
    tasks_per_step
        Tasks per meta-step (at least 1).
    steps
        Number of meta-steps, i.e. the dataset length (at least 1).
    seed
        Seed of the task sequence.
    """

    def __init__(self, distribution: TaskDistribution, tasks_per_step: int, steps: int, seed: int = 0):
        if not isinstance(distribution, TaskDistribution):
            raise TypeError(f'distribution must be a TaskDistribution, got {type(distribution).__name__}')
        self.distribution = distribution
        self.tasks_per_step = _check_positive_int('tasks_per_step', tasks_per_step, 1)
        self.steps = _check_positive_int('steps', steps, 1)
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
            raise ValueError(f'seed must be an int, got {seed!r}')
        self.seed = int(seed)

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, index: int) -> list[Task]:
        if not -self.steps <= index < self.steps:
            raise IndexError(f'step {index} out of range for {self.steps} steps')
        index %= self.steps
        # learn2learn samples with the global `random` module, so seed that from (seed, index) for this call
        # only; seeding with a str hashes it with SHA-512, which is stable across processes and Python runs.
        state = random.getstate()
        try:
            random.seed(f'nni_base.tasks:{self.seed}:{index}')
            return [self.distribution.sample() for _ in range(self.tasks_per_step)]
        finally:
            random.setstate(state)


def _no_collate(tasks: list[Task]) -> list[Task]:
    # module-level (not a lambda) so the traced DataLoader stays picklable
    return tasks


def episode_loader(
    distribution: TaskDistribution,
    tasks_per_step: int,
    steps: int,
    seed: int = 0,
    *,
    num_workers: int = 0,
    pin_memory: bool = False,
) -> DataLoader:
    """DataLoader whose batch ``i`` is the list of tasks of meta-step ``i`` (see :class:`EpisodeDataset`).

    Parameters
    ----------
    distribution
        Where tasks come from.
    tasks_per_step
        Tasks per meta-step.
    steps
        Meta-steps per pass over the loader.
    seed
        Seed of the task sequence.
    num_workers, pin_memory
        DataLoader worker processes and page-locked batches (for a GPU). Each meta-step's tasks are a function of
        ``(seed, step)``, so the workers yield the same tasks as the main process.

    Returns
    -------
    DataLoader
        Unbatched, uncollated loader, wrapped with :func:`nni.trace` so NNI's Lightning evaluator can record how to
        rebuild it.
    """
    episodes = EpisodeDataset(distribution, tasks_per_step, steps, seed=seed)
    return nni.trace(DataLoader)(
        episodes,
        batch_size=None,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=pin_memory,
        collate_fn=_no_collate,
    )


def sample_tasks(distribution: TaskDistribution, count: int, seed: int) -> list[Task]:
    """``count`` tasks of ``distribution`` that depend only on ``seed`` (the episodes' own seeded sampler)."""
    episodes = EpisodeDataset(distribution, 1, count, seed=seed)
    return [episodes[i][0] for i in range(count)]
