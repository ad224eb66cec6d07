"""What a dataset must look like for BASE, checked once where it enters, with the fix in the message.

Where it sits: at the boundary between a user's data and everything after it. :class:`~nni_base.TaskDistribution`
checks one item when it is built; single-dataset search and adaptation check, before the first step
(:meth:`~nni_base.search.single_task.SingleTaskModule.check_and_prepare`), every label of the training dataset where
they can be read without loading an image (:func:`loader_labels`: ``.targets``, ``.labels``, a ``TensorDataset``,
a ``Subset`` or ``ConcatDataset`` of those), else the first batch's, and the first batch's images. Nothing here runs
per step: a label out of range in a later batch is translated where the loss raises it (:func:`label_error`), and
a loss that turns non-finite checks its own batch (:func:`nni_base.search.adaptation.non_finite_loss`).

Images must be float tensors, channels first — ``(C, H, W)`` per item, ``(N, C, H, W)`` per batch — with the
stem's channel count, finite values, and at least :func:`min_image_side` pixels a side; labels integers
``0 .. C-1`` for a C-output classifier, of at least two classes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import (
    BatchSampler,
    ConcatDataset,
    DataLoader,
    DistributedSampler,
    RandomSampler,
    SequentialSampler,
    Subset,
    SubsetRandomSampler,
    TensorDataset,
    WeightedRandomSampler,
)

__all__ = [
    'check_image',
    'check_images',
    'check_labels',
    'check_batch',
    'check_dataset_labels',
    'check_image_size',
    'dataset_labels',
    'loader_labels',
    'label_error',
    'image_reductions',
    'min_image_side',
    'input_channels',
    'classifier_outputs',
]


def input_channels(model: nn.Module) -> int | None:
    """Channels the model's stem reads: the first convolution of its ``stem`` (NNI's DARTS) or of its ``stems``
    (one per input size); None for a model without either, whose input is then not checked."""
    stem = getattr(model, 'stem', None)
    if not isinstance(stem, nn.Module):
        stems = getattr(model, 'stems', None)
        stem = next(iter(stems.values()), None) if isinstance(stems, nn.ModuleDict) else None
    conv = next((m for m in stem.modules() if isinstance(m, nn.Conv2d)), None) if stem is not None else None
    return None if conv is None else int(conv.in_channels)


def classifier_outputs(model: nn.Module) -> int | None:
    """Outputs of the model's classifier (its ``classifier`` layer, else its last ``nn.Linear``), if any."""
    head = getattr(model, 'classifier', None)
    if not isinstance(head, nn.Linear):
        head = next((m for m in reversed(list(model.modules())) if isinstance(m, nn.Linear)), None)
    return None if head is None else int(head.out_features)


def check_image(image: Any, *, where: str, channels: int | None = None) -> None:
    """Refuse one dataset item's image unless it is a float ``(C, H, W)`` tensor (see :func:`check_images`)."""
    if not isinstance(image, torch.Tensor):
        kind = type(image).__name__
        fix = (
            'pass transform=torchvision.transforms.ToTensor() to the dataset'
            if 'Image' in kind
            else 'convert it with torch.as_tensor(...).float()'
        )
        raise ValueError(f'{where}: images must be float tensors (C, H, W), got a {kind}: {fix}.')
    if image.ndim not in (2, 3):
        raise ValueError(f'{where}: images must be (C, H, W) per image, got shape {tuple(image.shape)}.')
    check_images(image.unsqueeze(0), where=where, channels=channels, per_item=True)


def check_images(x: Any, *, where: str, channels: int | None = None, per_item: bool = False) -> None:
    """Refuse a batch of images unless it is a finite float ``(N, C, H, W)`` tensor with ``channels`` channels."""
    shape = tuple(x.shape)
    shown = shape[1:] if per_item else shape
    layout = '(C, H, W) per image' if per_item else '(N, C, H, W) per batch'
    if x.ndim == 3:  # a batch of 2-D images (or, per item, a 2-D image)
        fix = 'image.unsqueeze(0)' if per_item else 'x.unsqueeze(1)'
        raise ValueError(f'{where}: images are 2-D {shown}, without a channel dimension: add one ({fix}).')
    if x.ndim != 4:
        raise ValueError(f'{where}: images must be {layout}, got shape {shown}.')
    last, first = shape[3], shape[1]
    if last in (1, 3, 4) and first not in (1, 3, 4) or (channels is not None and last == channels != first):
        fix = 'image.permute(2, 0, 1)' if per_item else 'x.permute(0, 3, 1, 2)'
        raise ValueError(
            f'{where}: images are channels-last {shown} (H, W, C); BASE reads channels first: '
            f'permute them ({fix}), or use torchvision.transforms.ToTensor().'
        )
    if not x.is_floating_point():
        raise ValueError(
            f'{where}: images are {str(x.dtype).replace("torch.", "")} tensors; the network needs '
            'floats: convert with .float() / 255 (or torchvision.transforms.ToTensor(), which scales '
            'to [0, 1]), then normalise as for training.'
        )
    if channels is not None and first != channels:
        fix = (
            'repeat the channel (x.repeat(1, 3, 1, 1), or transforms.Grayscale(num_output_channels=3))'
            if first == 1 and channels == 3
            else f'give the images {channels} channels'
        )
        raise ValueError(
            f"{where}: images have {first} channel{'s' if first != 1 else ''} but the space's stem "
            f'reads {channels}: {fix}.'
        )
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        bad = int((~finite).flatten(1).any(1).sum())
        raise ValueError(
            f'{where}: {bad} of {shape[0]} images contain NaN or inf values: clean the data (drop '
            'those images, or torch.nan_to_num) before training.'
        )


def check_labels(y: Any, *, where: str, num_classes: int | None = None) -> torch.Tensor:
    """Refuse labels that are not integers in ``0 .. num_classes - 1``; returns them as a long tensor."""
    y = torch.as_tensor(y)
    if y.is_floating_point() or y.dtype == torch.bool:
        raise ValueError(
            f'{where}: labels are {str(y.dtype).replace("torch.", "")}; classification needs integer '
            'class indices: convert with .long() (one-hot labels: .argmax(1)).'
        )
    if y.numel() and int(y.min()) < 0:
        raise ValueError(
            f'{where}: labels must be class indices from 0, got {int(y.min())} ({int((y < 0).sum())} of '
            f'{y.numel()} labels are negative): map the classes to 0 .. C-1.'
        )
    if num_classes is not None and y.numel() and int(y.max()) >= num_classes:
        top = int(y.max())
        raise ValueError(
            f"{where}: a label is {top} but the space's classifier has {num_classes} outputs (labels "
            f'0 .. {num_classes - 1}; {int((y >= num_classes).sum())} of {y.numel()} labels are {num_classes} '
            f'or more): build the space with num_classes={top + 1} or more (and the evaluator, e.g. '
            f'Classification(num_classes={top + 1})), or map the labels to 0 .. {num_classes - 1}.'
        )
    return y.long()


def check_batch(
    batch: Any,
    *,
    where: str,
    channels: int | None = None,
    num_classes: int | None = None,
    model: nn.Module | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Check an ``(images, labels)`` batch (see :func:`check_images`, :func:`check_labels`, and with ``model``
    :func:`check_image_size`); returns both."""
    if not isinstance(batch, (list, tuple)) or len(batch) < 2:
        raise ValueError(
            f'{where}: batches must be (images, labels) pairs, got {type(batch).__name__}: use a '
            'dataset whose items are (image tensor, int label).'
        )
    x, y = batch[0], batch[1]
    if not isinstance(x, torch.Tensor):
        check_image(x, where=where)
    check_images(x, where=where, channels=channels)
    if model is not None:
        check_image_size(x.shape, model, where=where)
    return x, check_labels(y, where=where, num_classes=num_classes)


# ---- image size against the space ------------------------------------------------------------------------------
def image_reductions(model: nn.Module) -> int | None:
    """How many times the model halves an image before its classifier: the stride-2 convolutions of its stem plus one
    per reduction cell, for NNI's DARTS-family spaces (``NDS``: DARTS, ENAS, NASNet, ...); None for other models
    and for one with a stem per input size (it refuses a size it has no stem for itself)."""
    from nni.nas.hub.pytorch.nasnet import NDS  # here, not at the top: the data layer otherwise needs torch only

    if not isinstance(model, NDS) or isinstance(getattr(model, 'stems', None), nn.ModuleDict):
        return None
    stems = [m for name in ('stem', 'stem0', 'stem1') if isinstance(m := getattr(model, name, None), nn.Module)]
    strided = sum(1 for s in stems for m in s.modules() if isinstance(m, nn.Conv2d) and max(m.stride) >= 2)
    # NDS opens every stage after the first with a reduction cell (NDSStage.downsampling; a frozen model's stages
    # are plain Sequentials without the flag)
    stages = getattr(model, 'stages', [])
    return strided + sum(bool(getattr(stage, 'downsampling', i > 0)) for i, stage in enumerate(stages))


def min_image_side(model: nn.Module) -> int | None:
    """The smallest image side the model's cells can use: ``2 ** (reductions + 1)`` (8 for NNI's DARTS with the
    'cifar' stem, 64 with the 'imagenet' stem); None where :func:`image_reductions` does not know the model.

    Each reduction halves the side, rounding up with padding. From this size on the last cells see a map of at
    least 2x2 made of image pixels; below it the map is 2x2 only through padding (5 to 7 pixels with the 'cifar'
    stem) or 1x1 (4 and below: every 3x3 or 5x5 operation there reads its centre only, and a batch of one image
    fails in BatchNorm). Measured in ``tests/data/test_dataset_checks.py``.
    """
    reductions = image_reductions(model)
    return None if reductions is None else 2 ** (reductions + 1)


def check_image_size(shape: Sequence[int], model: nn.Module, *, where: str) -> None:
    """Refuse images of ``shape`` (``(..., H, W)``) smaller than :func:`min_image_side` of ``model``, naming the
    size to resize to."""
    side = min_image_side(model)
    height, width = int(shape[-2]), int(shape[-1])
    if side is None or min(height, width) >= side:
        return
    reductions = image_reductions(model)
    other = " or use the 'cifar' stem (fewer reductions)" if getattr(model, 'dataset', None) == 'imagenet' else ''
    raise ValueError(
        f'{where}: images are {height}x{width}, smaller than the space can use: it halves them {reductions} times '
        f'(stem and reduction cells), so its last cells need at least {side}x{side} images to see a 2x2 map. '
        f'Resize them to {side}x{side} or more (torchvision.transforms.Resize({side})){other}.'
    )


# ---- every label of the training dataset, where they can be read without loading images -------------------------
def dataset_labels(dataset: Any) -> tuple[torch.Tensor, str] | None:
    """The labels ``dataset[i]`` would give, for all ``i``, read without loading any image, and where they were read
    (``'.targets'``, ...); None where that is not cheap or not certain (a ``target_transform``, a subclass's own
    ``__getitem__``, labels that are not numbers)."""
    if isinstance(dataset, Subset):
        inner = dataset_labels(dataset.dataset)
        if inner is None:
            return None
        return inner[0][torch.as_tensor(list(dataset.indices), dtype=torch.long)], f'a Subset of {inner[1]}'
    if isinstance(dataset, ConcatDataset):
        parts = [dataset_labels(d) for d in dataset.datasets]
        if not parts or any(p is None for p in parts):
            return None
        return torch.cat([p[0] for p in parts if p is not None]), 'a ConcatDataset of ' + ' and '.join(
            sorted({p[1] for p in parts if p is not None})
        )
    if isinstance(dataset, TensorDataset):
        # a subclass may map labels in its own __getitem__: only the plain one returns tensors[1] as it is
        if type(dataset).__getitem__ is not TensorDataset.__getitem__ or len(dataset.tensors) < 2:
            return None
        return dataset.tensors[1], 'TensorDataset.tensors[1]'
    # torchvision maps each item's label through these: the loss would see other labels than .targets
    joint = getattr(dataset, 'transforms', None)
    if getattr(dataset, 'target_transform', None) is not None or getattr(joint, 'target_transform', joint) is not None:
        return None
    for name in ('targets', 'labels'):
        raw = getattr(dataset, name, None)
        if raw is None or callable(raw):
            continue
        try:
            labels = raw if isinstance(raw, torch.Tensor) else torch.as_tensor(np.asarray(raw))
            size = len(dataset)
        except (TypeError, ValueError, RuntimeError):
            return None  # labels that are not numbers (class names?), or a dataset without a length
        if labels.ndim != 1 or len(labels) != size or labels.dtype == torch.bool:
            return None
        return labels, f'.{name}'
    return None


def loader_labels(loader: Any) -> tuple[torch.Tensor, str] | None:
    """Every label a DataLoader can yield (:func:`dataset_labels` of its dataset, restricted to the indices its
    sampler draws from), or None where its sampler is one whose indices are not known (then the labels are checked
    batch by batch)."""
    # the indices come from the batch sampler's sampler (a DataLoader(batch_sampler=...) leaves .sampler at its default)
    batches = getattr(loader, 'batch_sampler', None) if isinstance(loader, DataLoader) else None
    if type(batches) is not BatchSampler:
        return None
    found = dataset_labels(loader.dataset)
    if found is None:
        return None
    labels, source = found
    sampler = batches.sampler
    try:
        if isinstance(sampler, SubsetRandomSampler):
            indices = torch.as_tensor(list(sampler.indices), dtype=torch.long)
            return labels[indices], f"{source}, at its sampler's indices"
        if isinstance(sampler, WeightedRandomSampler):
            drawn = torch.as_tensor(sampler.weights) > 0
            return labels[drawn], f"{source}, where its sampler's weights are above 0"
    except IndexError:
        return None  # a sampler that does not fit its dataset fails in the loader, with the loader's own error
    if isinstance(sampler, (SequentialSampler, RandomSampler, DistributedSampler)):
        return labels, source  # every index (DistributedSampler: all ranks together)
    return None


def check_dataset_labels(loader: Any, *, num_classes: int | None, where: str = 'the training dataset') -> bool:
    """Check every label the training loader can yield (:func:`loader_labels`): integers in ``0 .. num_classes - 1``,
    and of at least two classes. Returns whether they could be read; where not, only batches are checked."""
    found = loader_labels(loader)
    if found is None:
        return False
    labels, source = found
    where = f'{where} ({len(labels)} labels, read from {source})'
    labels = check_labels(labels, where=where, num_classes=num_classes)
    classes = torch.unique(labels)
    if len(classes) == 1:
        raise ValueError(
            f'{where}: every label is {int(classes[0])}, so there is one class and a classifier has nothing to '
            'learn: give it images of at least 2 classes (an ImageFolder needs one sub-folder per class).'
        )
    return True


# ---- a bad label in a later batch, where the loss raises it ------------------------------------------------------
_OUT_OF_BOUNDS = re.compile(r'Target (-?\d+) is out of bounds')


def label_error(error: BaseException, *, where: str, num_classes: int | None) -> ValueError | None:
    """A clear error for the loss's raw one on an out-of-range label (``IndexError: Target 7 is out of bounds``,
    or CUDA's device-side assert); None for any other error, which the caller re-raises unchanged."""
    valid = f'0 .. {num_classes - 1}' if num_classes is not None else '0 .. C-1'
    seen = (
        'every label is checked before training only where the dataset gives them without loading its images '
        '(.targets, .labels, a TensorDataset), else the first batch'
    )
    match = _OUT_OF_BOUNDS.search(str(error)) if isinstance(error, IndexError) else None
    if match is not None:
        label = int(match.group(1))
        fix = (
            f'map the labels to {valid}'
            if label < 0
            else f'build the space with num_classes={label + 1} or more (and the evaluator, e.g. '
            f'Classification(num_classes={label + 1})), or map the labels to {valid}'
        )
        return ValueError(f"{where} has label {label}, outside the classifier's {valid} ({seen}): {fix}.")
    if isinstance(error, RuntimeError) and 'device-side assert' in str(error):
        return ValueError(
            f'{where}: CUDA stopped on a device-side assert, which in a classification loss is a label outside '
            f"the classifier's {valid} (CUDA does not say which; {seen}). Check the labels (map them to {valid}, "
            'or build the space with more num_classes) and start a new process: this one cannot use the GPU again. '
            'On the CPU the same run names the label.'
        )
    return None
