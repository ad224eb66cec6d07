"""Tests for nni_base.tasks: episodic task sampling with learn2learn."""

from __future__ import annotations

import random
import re

import numpy as np
import pytest
import torch

from nni_base.data import LabeledArrayDataset, LabeledTensorDataset, digits_splits
from nni_base.tasks import EpisodeDataset, Task, TaskDistribution, episode_loader

NUM_CLASSES = 8
PER_CLASS = 7


def _toy_dataset(per_class: list[int] | None = None) -> LabeledTensorDataset:
    """Dataset whose image ``i`` is filled with the value ``i``, so a task's images can be traced back."""
    per_class = per_class or [PER_CLASS] * NUM_CLASSES
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(per_class)])
    # shuffle sample order so classes are not contiguous in the dataset
    labels = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))]
    images = torch.arange(len(labels), dtype=torch.float32).view(-1, 1, 1, 1).expand(-1, 3, 4, 4).contiguous()
    return LabeledTensorDataset(images, labels, [f'c{c}' for c in range(len(per_class))])


def _ids(x: torch.Tensor) -> list[int]:
    return x[:, 0, 0, 0].long().tolist()


@pytest.fixture(scope='module')
def toy() -> LabeledTensorDataset:
    return _toy_dataset()


def _check_task(task: Task, dataset: LabeledTensorDataset, ways: int, shots: int, queries: int) -> None:
    assert task.support_x.shape == (ways * shots, 3, 4, 4)
    assert task.query_x.shape == (ways * queries, 3, 4, 4)
    assert task.support_y.dtype == torch.long and task.query_y.dtype == torch.long
    assert torch.equal(torch.bincount(task.support_y, minlength=ways), torch.full((ways,), shots))
    assert torch.equal(torch.bincount(task.query_y, minlength=ways), torch.full((ways,), queries))
    support_ids, query_ids = _ids(task.support_x), _ids(task.query_x)
    assert len(set(support_ids)) == len(support_ids) and len(set(query_ids)) == len(query_ids)
    assert not set(support_ids) & set(query_ids)
    # every task label stands for exactly one dataset class, the same in support and query
    original = {}
    for ids, ys in ((support_ids, task.support_y), (query_ids, task.query_y)):
        for i, y in zip(ids, ys.tolist()):
            assert original.setdefault(y, int(dataset.labels[i])) == int(dataset.labels[i])
    assert len(set(original.values())) == ways


def test_distribution_attributes(toy):
    dist = TaskDistribution(toy, ways=5, shots=2, queries=3, name='toy')
    assert (dist.ways, dist.shots, dist.queries, dist.name) == (5, 2, 3, 'toy')
    assert dist.num_classes == NUM_CLASSES
    assert dist.image_shape == (3, 4, 4)


@pytest.mark.parametrize(('ways', 'shots', 'queries'), [(5, 2, 3), (2, 1, 1), (8, 3, 4)])
def test_sample_shapes_labels_and_disjointness(toy, ways, shots, queries):
    dist = TaskDistribution(toy, ways=ways, shots=shots, queries=queries)
    for _ in range(5):
        _check_task(dist.sample(), toy, ways, shots, queries)


def test_labels_are_a_fresh_permutation_per_task(toy):
    dist = TaskDistribution(toy, ways=NUM_CLASSES, shots=1, queries=1)
    random.seed(0)
    mappings = set()
    for _ in range(10):
        task = dist.sample()
        mappings.add(tuple(int(toy.labels[i]) for i in _ids(task.support_x)))  # class of label 0, 1, ...
    assert len(mappings) > 1


def test_task_to_device(toy):
    task = TaskDistribution(toy, ways=3, shots=1, queries=2).sample()
    moved = task.to('cpu')
    assert isinstance(moved, Task) and moved.query_x.device.type == 'cpu'
    assert torch.equal(moved.query_y, task.query_y)


def test_uint8_and_digit_datasets():
    rng = np.random.default_rng(0)
    arrays = LabeledArrayDataset(
        rng.integers(0, 256, (12, 5, 5, 3), dtype=np.uint8), np.arange(12) % 3, ['a', 'b', 'c'], image_size=6
    )
    task = TaskDistribution(arrays, ways=3, shots=2, queries=2).sample()
    assert task.support_x.shape == (6, 3, 6, 6) and task.query_x.dtype == torch.float32

    test_split = digits_splits()['test']
    dist = TaskDistribution(test_split, ways=5, shots=1, queries=15, name='digits-test')
    task = dist.sample()
    assert dist.num_classes == 8 and dist.image_shape == (3, 8, 8)
    assert task.support_x.shape == (5, 3, 8, 8) and task.query_x.shape == (75, 3, 8, 8)


def _same_tasks(a: list[Task], b: list[Task]) -> bool:
    return all(
        torch.equal(x.support_x, y.support_x)
        and torch.equal(x.support_y, y.support_y)
        and torch.equal(x.query_x, y.query_x)
        and torch.equal(x.query_y, y.query_y)
        for x, y in zip(a, b)
    )


def test_episode_dataset_is_deterministic(toy):
    dist = TaskDistribution(toy, ways=4, shots=2, queries=2)
    episodes = EpisodeDataset(dist, tasks_per_step=3, steps=5, seed=7)
    assert len(episodes) == 5
    step2 = episodes[2]
    assert len(step2) == 3 and all(isinstance(t, Task) for t in step2)
    for task in step2:
        _check_task(task, toy, 4, 2, 2)
    episodes[4]  # reading other items in between must not matter
    assert _same_tasks(step2, episodes[2])
    assert _same_tasks(step2, EpisodeDataset(dist, tasks_per_step=3, steps=5, seed=7)[2])
    assert not _same_tasks(step2, episodes[3])
    assert not _same_tasks(step2, EpisodeDataset(dist, tasks_per_step=3, steps=5, seed=8)[2])
    with pytest.raises(IndexError):
        episodes[5]


def test_episode_dataset_restores_global_random_state(toy):
    episodes = EpisodeDataset(TaskDistribution(toy, ways=2, shots=1, queries=1), tasks_per_step=2, steps=3)
    random.seed(123)
    expected = random.random()
    random.seed(123)
    episodes[1]
    assert random.random() == expected


def test_episode_loader(toy):
    dist = TaskDistribution(toy, ways=3, shots=1, queries=2)
    loader = episode_loader(dist, tasks_per_step=2, steps=4, seed=1)
    assert isinstance(loader, torch.utils.data.DataLoader) and len(loader) == 4
    batches = list(loader)
    assert len(batches) == 4 and all(isinstance(b, list) and len(b) == 2 for b in batches)
    assert all(isinstance(t, Task) for b in batches for t in b)
    reference = EpisodeDataset(dist, tasks_per_step=2, steps=4, seed=1)
    assert all(_same_tasks(b, reference[i]) for i, b in enumerate(batches))
    assert _same_tasks(batches[0], next(iter(loader)))  # a second pass repeats the same tasks
    from nni.common.serializer import is_traceable

    assert is_traceable(loader)


@pytest.mark.parametrize(
    ('kwargs', 'message'),
    [
        ({'ways': 1}, 'ways must be at least 2'),
        (
            {'ways': 10},
            "dataset 'toy' has 8 classes but ways=10: lower ways to at most 8 or use a dataset with more classes",
        ),
        ({'shots': 0}, 'shots must be at least 1'),
        ({'queries': 0}, 'queries must be at least 1'),
        ({'shots': 4, 'queries': 4}, "class 'c0' (label 0) has only 7 images but shots + queries = 4 + 4 = 8"),
    ],
)
def test_bad_distribution_arguments(toy, kwargs, message):
    args = {'ways': 5, 'shots': 1, 'queries': 1, **kwargs}
    with pytest.raises(ValueError, match=re.escape(message)):
        TaskDistribution(toy, name='toy', **args)


def test_smallest_class_is_named():
    dataset = _toy_dataset([6, 6, 3, 6])
    with pytest.raises(ValueError, match=re.escape("class 'c2' (label 2) has only 3 images")) as info:
        TaskDistribution(dataset, ways=2, shots=2, queries=2, name='small')
    assert 'lower shots and queries' in str(info.value)
    assert TaskDistribution(dataset.subset_classes([0, 1, 3]), ways=2, shots=2, queries=2).num_classes == 3


def test_bad_episode_arguments(toy):
    dist = TaskDistribution(toy, ways=2, shots=1, queries=1)
    with pytest.raises(ValueError, match='tasks_per_step must be at least 1'):
        EpisodeDataset(dist, tasks_per_step=0, steps=3)
    with pytest.raises(ValueError, match='steps must be at least 1'):
        episode_loader(dist, tasks_per_step=1, steps=0)


# --- datasets without a `labels` attribute ------------------------------------------------------------------


class _Items(torch.utils.data.Dataset):
    """Map-style dataset of (image, label) items with neither `labels` nor `targets`."""

    def __init__(self, images: torch.Tensor, labels: list):
        self.images, self._item_labels = images, labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        return self.images[index], self._item_labels[index]


class _WithTargets(_Items):
    """torchvision-style: labels also in a `targets` list; counts item reads."""

    def __init__(self, images: torch.Tensor, targets: list):
        super().__init__(images, targets)
        self.targets = targets
        self.reads = 0

    def __getitem__(self, index: int):
        self.reads += 1
        return super().__getitem__(index)


def _check_plain_task(task: Task, labels: torch.Tensor, ways: int, shots: int, queries: int) -> None:
    assert task.support_x.shape == (ways * shots, 3, 4, 4) and task.query_x.shape == (ways * queries, 3, 4, 4)
    assert torch.equal(torch.bincount(task.support_y, minlength=ways), torch.full((ways,), shots))
    assert torch.equal(torch.bincount(task.query_y, minlength=ways), torch.full((ways,), queries))
    assert 0 <= int(task.support_y.min()) and int(task.query_y.max()) < ways
    # each task label stands for one class of `labels`, the same in support and query
    original = {}
    for x, ys in ((task.support_x, task.support_y), (task.query_x, task.query_y)):
        for i, y in zip(_ids(x), ys.tolist()):
            assert original.setdefault(y, int(labels[i])) == int(labels[i])
    assert len(set(original.values())) == ways


def _plain_data() -> tuple[torch.Tensor, torch.Tensor]:
    toy = _toy_dataset()
    return toy.images, torch.as_tensor(toy.labels, dtype=torch.long)


@pytest.mark.parametrize('kind', ['tensor_dataset', 'targets', 'items'])
def test_datasets_without_labels_attribute(kind):
    images, labels = _plain_data()
    if kind == 'tensor_dataset':
        dataset = torch.utils.data.TensorDataset(images, labels)
    elif kind == 'targets':
        dataset = _WithTargets(images, labels.tolist())
    else:
        dataset = _Items(images, [np.int64(y) for y in labels.tolist()])
    assert not hasattr(dataset, 'labels')
    dist = TaskDistribution(dataset, ways=5, shots=2, queries=3)
    assert dist.num_classes == NUM_CLASSES and dist.image_shape == (3, 4, 4)
    for _ in range(3):
        _check_plain_task(dist.sample(), labels, ways=5, shots=2, queries=3)


def test_targets_are_used_without_reading_items():
    images, labels = _plain_data()
    dataset = _WithTargets(images, [int(y) for y in labels])
    assert TaskDistribution(dataset, ways=5, shots=1, queries=1).num_classes == NUM_CLASSES
    assert dataset.reads == 1  # only the image-shape check, not one read per sample
    fallback = _WithTargets(images, [int(y) for y in labels])
    del fallback.targets
    TaskDistribution(fallback, ways=5, shots=1, queries=1)
    assert fallback.reads == len(labels) + 1


@pytest.mark.parametrize(
    ('item_labels', 'got'),
    [
        (None, 'a tuple of 1 element(s)'),
        ('cat', "label 'cat'"),
        (1.0, 'label 1.0'),
        (torch.tensor([1, 2]), 'label Tensor of shape (2,)'),
    ],
)
def test_items_without_integer_label(item_labels, got):
    images, labels = _plain_data()

    class NoLabel(_Items):
        def __getitem__(self, index):
            image, label = super().__getitem__(index)
            if index < 3:  # only one item is bad, but it must still be found
                return image, label
            return (image,) if item_labels is None else (image, item_labels)

    dataset = NoLabel(images, labels.tolist())
    message = f'NoLabel item 3 has no integer label: items must be (image, int label) pairs (got {got}'
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        TaskDistribution(dataset, ways=2, shots=1, queries=1)
    assert '`labels` or `targets` attribute' in str(info.value)


def test_bad_targets_attribute():
    images, labels = _plain_data()
    dataset = _WithTargets(images, [float(y) for y in labels])
    with pytest.raises(ValueError, match=r'dataset\.targets must be a 1-D integer array'):
        TaskDistribution(dataset, ways=2, shots=1, queries=1)


def test_item_image_must_still_be_a_chw_tensor():
    _, labels = _plain_data()
    dataset = torch.utils.data.TensorDataset(torch.zeros(len(labels), 16), torch.as_tensor(labels))
    with pytest.raises(ValueError, match=re.escape('images must be (C, H, W) per image, got shape (16,)')):
        TaskDistribution(dataset, ways=2, shots=1, queries=1)
