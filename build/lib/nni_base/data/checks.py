"""What a dataset must look like for BASE, checked once where it enters, with the fix in the message.

Where it sits: at the boundary between a user's data and everything after it. :class:`~nni_base.TaskDistribution`
checks one item when it is built; single-dataset search and adaptation check the first training batch before
the first step (:meth:`~nni_base.search.single_task.SingleTaskModule.check_and_prepare`). Nothing here runs per
step: a loss that turns non-finite later checks its own batch (:func:`nni_base.search.adaptation.non_finite_loss`).

Images must be float tensors, channels first — ``(C, H, W)`` per item, ``(N, C, H, W)`` per batch — with the
stem's channel count and finite values; labels integers ``0 .. C-1`` for a C-output classifier.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

__all__ = ['check_image', 'check_images', 'check_labels', 'check_batch', 'input_channels', 'classifier_outputs']


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
            f'{where}: labels must be class indices from 0, got {int(y.min())}: map the classes to 0 .. C-1.'
        )
    if num_classes is not None and y.numel() and int(y.max()) >= num_classes:
        top = int(y.max())
        raise ValueError(
            f"{where}: a label is {top} but the space's classifier has {num_classes} outputs (labels "
            f'0 .. {num_classes - 1}): build the space with num_classes={top + 1} or more (and the '
            f'evaluator, e.g. Classification(num_classes={top + 1})), or map the labels to 0 .. '
            f'{num_classes - 1}.'
        )
    return y.long()


def check_batch(
    batch: Any, *, where: str, channels: int | None = None, num_classes: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Check an ``(images, labels)`` batch (see :func:`check_images`, :func:`check_labels`); returns both."""
    if not isinstance(batch, (list, tuple)) or len(batch) < 2:
        raise ValueError(
            f'{where}: batches must be (images, labels) pairs, got {type(batch).__name__}: use a '
            'dataset whose items are (image tensor, int label).'
        )
    x, y = batch[0], batch[1]
    if not isinstance(x, torch.Tensor):
        check_image(x, where=where)
    check_images(x, where=where, channels=channels)
    return x, check_labels(y, where=where, num_classes=num_classes)
