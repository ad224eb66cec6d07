"""Labels and image sizes are checked over the whole training dataset where that is cheap, at the boundary.

One table of bad datasets, each run through ``NasExperiment`` + ``BaseStrategy`` as a user runs it: every label is
read without loading images (``.targets``, ``.labels``, a ``TensorDataset``, a ``Subset``/``ConcatDataset`` of those)
and refused before training; where the labels cannot be read cheaply, a bad label in a later batch is translated
where the loss raises it, with the batch index; one-class datasets and images below what the space's reductions can
use are refused with the fix named. A second table holds datasets that must *not* be refused.
"""

from __future__ import annotations

import nni
import numpy as np
import pytest
import torch
from nni.nas.evaluator.pytorch import Classification
from PIL import Image
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Subset, SubsetRandomSampler, TensorDataset
from torchvision.datasets import ImageFolder
from torchvision.transforms import ToTensor

from nni_base import BaseStrategy, DartsTaskSpace, TaskDistribution
from nni_base.api import build_supernet
from nni_base.data import LabeledTensorDataset
from nni_base.data.checks import label_error, min_image_side
from tests.helpers import QUIET, classification, episodic_evaluator, run, tiny_space

N = 60  # images per dataset: 6 batches of 10


def _images(n: int = N, side: int = 8) -> torch.Tensor:
    return torch.randn(n, 3, side, side, generator=torch.Generator().manual_seed(0))


def _sorted_labels(classes: int = 6, n: int = N) -> torch.Tensor:
    return torch.arange(n) * classes // n  # sorted by class, as ImageFolder yields them: the first batch is all 0


class _Unreadable(Dataset):
    """A dataset whose labels cannot be read without loading its items (no .targets, .labels or tensors)."""

    def __init__(self, labels: torch.Tensor, side: int = 8):
        self.images, self.items = _images(len(labels), side), labels.tolist()

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        return self.images[i], self.items[i]


def _image_folder(root, classes: int = 6, per_class: int = 2) -> ImageFolder:
    for c in range(classes):
        (root / f'class{c}').mkdir(parents=True)
        for i in range(per_class):
            pixels = np.random.default_rng(c * per_class + i).integers(0, 256, (8, 8, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / f'class{c}' / f'{i}.png')
    return ImageFolder(str(root), transform=ToTensor())


def _classification(data, *, sampler=None, num_classes: int = 5) -> Classification:
    """Classification training on ``data`` (batches of 10), validating on clean data (Lightning's sanity check
    validates before the first training step)."""
    loader = nni.trace(DataLoader)(data, batch_size=10, sampler=sampler)
    clean = TensorDataset(_images(30), torch.arange(30) % 5)
    return Classification(
        num_classes=num_classes,
        train_dataloaders=loader,
        val_dataloaders=nni.trace(DataLoader)(clean, batch_size=30),
        max_epochs=1,
        limit_train_batches=4,
        limit_val_batches=1,
        **QUIET,
    )


def _tasks(side: int) -> TaskDistribution:
    return TaskDistribution(TensorDataset(_images(20, side), torch.arange(20) % 5), ways=5, shots=1, queries=1)


BAD = [
    (
        'imagefolder-last-class-out-of-range',
        lambda tmp: (tiny_space(), _classification(_image_folder(tmp / 'images'))),
        r'the training dataset \(12 labels, read from \.targets\): a label is 5 but the space.s classifier has 5 '
        r'outputs \(labels 0 \.\. 4; 2 of 12 labels are 5 or more\): build the space with num_classes=6',
    ),
    (
        'tensors-sorted-by-class-last-class-out-of-range',
        lambda tmp: (tiny_space(), _classification(TensorDataset(_images(), _sorted_labels()))),
        r'60 labels, read from TensorDataset\.tensors\[1\]\): a label is 5 .*10 of 60 labels are 5 or more',
    ),
    (
        'labeled-tensor-dataset-labels-out-of-range',
        lambda tmp: (
            tiny_space(),
            _classification(LabeledTensorDataset(_images(), _sorted_labels(7), [f'c{c}' for c in range(7)])),
        ),
        r'read from \.labels\): a label is 6 .*17 of 60 labels are 5 or more.*num_classes=7',
    ),
    (
        'subset-keeps-a-bad-label',
        lambda tmp: (tiny_space(), _classification(Subset(TensorDataset(_images(), _sorted_labels()), range(20, N)))),
        r'40 labels, read from a Subset of TensorDataset\.tensors\[1\].*a label is 5 .*10 of 40 labels',
    ),
    (
        'concat-second-part-out-of-range',
        lambda tmp: (
            tiny_space(),
            _classification(
                ConcatDataset(
                    [TensorDataset(_images(30), torch.arange(30) % 5), TensorDataset(_images(30), torch.full((30,), 9))]
                )
            ),
        ),
        r'read from a ConcatDataset.*a label is 9 .*30 of 60 labels are 5 or more.*num_classes=10',
    ),
    (
        'negative-label-at-the-end',
        lambda tmp: (
            tiny_space(),
            _classification(
                TensorDataset(_images(), torch.cat([torch.arange(59) % 5, -torch.ones(1, dtype=torch.long)]))
            ),
        ),
        r'labels must be class indices from 0, got -1 \(1 of 60 labels are negative\): map the classes to 0 \.\. C-1',
    ),
    (
        'float-labels-in-the-dataset',
        lambda tmp: (tiny_space(), _classification(TensorDataset(_images(), (torch.arange(N) % 5).float()))),
        r'the training dataset .*labels are float32.*\.long\(\)',
    ),
    (
        'one-class',
        lambda tmp: (tiny_space(), _classification(TensorDataset(_images(), torch.zeros(N, dtype=torch.long)))),
        r'every label is 0, so there is one class and a classifier has nothing to learn: give it images of at least 2',
    ),
    (
        'one-class-through-its-sampler',
        lambda tmp: (
            tiny_space(),
            _classification(TensorDataset(_images(), _sorted_labels(5)), sampler=SubsetRandomSampler(range(12))),
        ),
        r"12 labels, read from .*at its sampler's indices\): every label is 0, so there is one class",
    ),
    (
        'unreadable-labels-later-batch-out-of-range',
        lambda tmp: (
            tiny_space(),
            _classification(_Unreadable(torch.cat([torch.arange(25) % 5, torch.full((35,), 7)]))),
        ),
        r'training batch 2 \(epoch 0\) has label 7, outside the classifier.s 0 \.\. 4 \(every label is checked '
        r'before training only where .*\): build the space with num_classes=8 or more',
    ),
    (
        'unreadable-labels-later-batch-negative',
        lambda tmp: (
            tiny_space(),
            _classification(_Unreadable(torch.cat([torch.arange(15) % 5, -torch.ones(45, dtype=torch.long)]))),
        ),
        r'training batch 1 \(epoch 0\) has label -1, outside the classifier.s 0 \.\. 4 .*: map the labels to 0 \.\. 4',
    ),
    (
        'images-7x7',
        lambda tmp: (tiny_space(), _classification(TensorDataset(_images(side=7), torch.arange(N) % 5))),
        r'the first training batch: images are 7x7, smaller than the space can use: it halves them 2 times .*at least '
        r'8x8 images.*Resize\(8\)\)\.$',
    ),
    (
        'images-1x1',
        lambda tmp: (tiny_space(), _classification(TensorDataset(_images(side=1), torch.arange(N) % 5))),
        r'images are 1x1, smaller than the space can use.*at least 8x8',
    ),
    (
        'images-16x16-imagenet-stem',
        lambda tmp: (
            DartsTaskSpace(width=4, num_cells=3, num_classes=5, dataset='imagenet'),
            _classification(TensorDataset(_images(side=16), torch.arange(N) % 5)),
        ),
        r'images are 16x16, .*halves them 5 times .*at least 64x64 .*Resize\(64\)\) or use the .cifar. stem',
    ),
    (
        'episodic-tasks-7x7',
        lambda tmp: (tiny_space(), episodic_evaluator(_tasks(7))),
        r"tasks '.*': images are 7x7, smaller than the space can use.*at least 8x8",
    ),
]


@pytest.mark.parametrize(('build', 'message'), [row[1:] for row in BAD], ids=[row[0] for row in BAD])
def test_bad_datasets_are_refused_with_the_fix(build, message, tmp_path):
    space, evaluator = build(tmp_path)
    with pytest.raises(ValueError, match=message):
        run(space, evaluator, BaseStrategy(seed=0))


GOOD = [
    # raw .targets out of range, but the transform maps them into range: the loss sees the mapped labels
    ('target-transform-maps-into-range', lambda tmp: _with_target_transform(_image_folder(tmp / 'images'))),
    # the sampler never draws the out-of-range class (the last 10 images)
    (
        'sampler-skips-the-bad-class',
        lambda tmp: _classification(TensorDataset(_images(), _sorted_labels()), sampler=SubsetRandomSampler(range(50))),
    ),
    ('labels-unreadable-all-in-range', lambda tmp: _classification(_Unreadable(torch.arange(N) % 5))),
]


def _with_target_transform(folder: ImageFolder) -> Classification:
    folder.target_transform = lambda y: y % 5
    return _classification(folder)


@pytest.mark.parametrize('build', [row[1] for row in GOOD], ids=[row[0] for row in GOOD])
def test_good_datasets_train(build, tmp_path):
    run(tiny_space(), build(tmp_path), BaseStrategy(seed=0))


@pytest.mark.parametrize(('stem', 'side'), [('cifar', 8), ('imagenet', 64)])
def test_the_minimum_size_keeps_a_2x2_map_of_pixels_in_the_last_cells(stem, side):
    # measured on the supernet check_and_prepare sees: the last stage's map at the minimum side is 2x2 and at half
    # of it 1x1 (between the two, rounding up pads a 2x2 map out of fewer rows of pixels)
    supernet = build_supernet(DartsTaskSpace(width=4, num_cells=3, num_classes=5, dataset=stem), BaseStrategy())
    model = supernet.training_module.model.eval()
    assert min_image_side(model) == side
    sizes: list[tuple[int, ...]] = []
    hook = model.stages[-1].register_forward_hook(lambda m, i, out: sizes.append(tuple(out[-1].shape[-2:])))
    with torch.no_grad():
        model(torch.randn(2, 3, side, side))
        model(torch.randn(2, 3, side // 2, side // 2))
    hook.remove()
    assert sizes == [(2, 2), (1, 1)]


class _BrokenLoss(torch.nn.Module):
    """A loss with a bug of its own: its IndexError is not about labels."""

    def forward(self, logits, labels):
        raise IndexError('list index out of range')


def test_other_errors_in_the_training_step_pass_unchanged():
    assert label_error(IndexError('list index out of range'), where='training batch 3', num_classes=5) is None
    assert label_error(RuntimeError('mat1 and mat2 shapes cannot be multiplied'), where='x', num_classes=5) is None
    evaluator = _classification(TensorDataset(_images(), torch.arange(N) % 5))
    evaluator.module.criterion = _BrokenLoss()
    with pytest.raises(IndexError, match=r'^list index out of range$'):
        run(tiny_space(), evaluator, BaseStrategy(seed=0))


def test_a_cuda_assert_in_the_training_step_is_reported_as_a_label_out_of_range():
    # no GPU needed: the RuntimeError CUDA raises at the next sync after the loss's kernel asserted
    error = RuntimeError('CUDA error: device-side assert triggered\nCompile with `TORCH_USE_CUDA_DSA`')
    clear = label_error(error, where='training batch 3 (epoch 0)', num_classes=5)
    assert clear is not None
    assert str(clear).startswith(
        'training batch 3 (epoch 0): CUDA stopped on a device-side assert, which in a classification loss is a '
        "label outside the classifier's 0 .. 4"
    )


def test_a_validation_label_out_of_range_names_the_validation_batch():
    train = TensorDataset(torch.randn(20, 3, 8, 8), torch.arange(20) % 5)
    val = TensorDataset(torch.randn(10, 3, 8, 8), torch.tensor([0, 1, 2, 3, 4, 0, 1, 2, 3, 9]))
    with pytest.raises(ValueError, match=r'validation batch 0 .*label 9, outside the classifier.s 0 \.\. 4'):
        run(tiny_space(), classification(train, val, max_epochs=1, limit_train_batches=1), BaseStrategy())
