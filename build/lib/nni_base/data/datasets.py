"""Small in-memory classification datasets used for episodic (few-shot) task sampling.

All datasets here share one contract that :mod:`nni_base.tasks` relies on:

* ``labels`` is a 1-D ``torch.long`` tensor with one entry per sample, so label bookkeeping never has to
  touch the images;
* ``class_names`` is a list indexed by label;
* ``dataset[i]`` returns ``(image, label)`` with ``image`` a float tensor ``(C, H, W)`` and ``label`` a Python int.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

__all__ = [
    'LabeledArrayDataset',
    'LabeledFileDataset',
    'LabeledTensorDataset',
    'normalize_uint8_image',
]


def _as_label_tensor(labels: Sequence[int] | np.ndarray | Tensor) -> Tensor:
    labels = torch.as_tensor(np.asarray(labels) if not isinstance(labels, Tensor) else labels)
    if labels.ndim != 1:
        raise ValueError(f'labels must be 1-D, got shape {tuple(labels.shape)}')
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise ValueError(f'labels must be integers, got dtype {labels.dtype}')
    return labels.long()


def _check_labels(labels: Tensor, class_names: Sequence[str]) -> None:
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= len(class_names)):
        raise ValueError(
            f'labels must lie in 0..{len(class_names) - 1} (one class name per label), '
            f'got range {int(labels.min())}..{int(labels.max())}'
        )


def _resize(image: Tensor, image_size: int) -> Tensor:
    """Bilinearly resize a ``(C, H, W)`` float image to ``image_size`` x ``image_size``."""
    if image.shape[-2:] == (image_size, image_size):
        return image
    # antialias only matters (and only helps) when shrinking; it avoids aliasing on e.g. 64 -> 32
    shrinking = image.shape[-1] > image_size or image.shape[-2] > image_size
    return F.interpolate(
        image.unsqueeze(0), size=(image_size, image_size), mode='bilinear', align_corners=False, antialias=shrinking
    ).squeeze(0)


def normalize_uint8_image(image: Tensor, image_size: int | None, mean: Tensor, std: Tensor) -> Tensor:
    """Turn one ``uint8`` ``(C, H, W)`` image into a normalised float image.

    Parameters
    ----------
    image
        ``uint8`` tensor of shape ``(C, H, W)`` with values in 0..255.
    image_size
        Output side length; ``None`` keeps the native size.
    mean, std
        Per-channel statistics of shape ``(C, 1, 1)`` for images scaled to [0, 1].

    Returns
    -------
    Tensor
        ``float32`` tensor ``(C, image_size, image_size)``.
    """
    out = image.float().div_(255.0)
    if image_size is not None:
        out = _resize(out, image_size)
    return (out - mean) / std


def _stat_tensor(values: Sequence[float], channels: int, what: str) -> Tensor:
    t = torch.as_tensor(values, dtype=torch.float32).flatten()
    if t.numel() == 1:
        t = t.repeat(channels)
    if t.numel() != channels:
        raise ValueError(f'{what} needs 1 or {channels} values (one per channel), got {t.numel()}')
    if what == 'std' and bool((t <= 0).any()):
        raise ValueError('std values must be positive')
    return t.view(channels, 1, 1)


class _LabeledBase(Dataset):
    """Shared label bookkeeping; subclasses implement ``__getitem__`` and ``_select``."""

    labels: Tensor
    class_names: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        """Number of classes, i.e. ``len(class_names)`` (a class may have no samples after filtering)."""
        return len(self.class_names)

    def _select(self, indices: Tensor, labels: Tensor, class_names: list[str]) -> _LabeledBase:
        raise NotImplementedError

    def subset_classes(self, classes: Sequence[int]) -> _LabeledBase:
        """Keep only ``classes`` and relabel them ``0..len(classes)-1`` in the given order.

        Parameters
        ----------
        classes
            Labels of the classes to keep; must be distinct and valid.

        Returns
        -------
        A dataset of the same type holding only the samples of those classes.
        """
        classes = [int(c) for c in classes]
        if len(set(classes)) != len(classes):
            raise ValueError(f'classes must be distinct, got {classes}')
        bad = [c for c in classes if not 0 <= c < self.num_classes]
        if bad:
            raise ValueError(f'classes {bad} are out of range 0..{self.num_classes - 1}')
        # lookup table old label -> new label (-1 = dropped) keeps this O(N) without Python loops
        remap = torch.full((self.num_classes,), -1, dtype=torch.long)
        remap[torch.tensor(classes, dtype=torch.long)] = torch.arange(len(classes))
        new_labels = remap[self.labels] if len(self.labels) else self.labels.clone()
        keep = torch.nonzero(new_labels >= 0).flatten()
        return self._select(keep, new_labels[keep], [self.class_names[c] for c in classes])


class LabeledTensorDataset(_LabeledBase):
    """Images already held as a float tensor, e.g. the embedded digits data.

    Parameters
    ----------
    images
        Float tensor ``(N, C, H, W)``, already normalised.
    labels
        Integer labels ``(N,)`` in ``0..len(class_names)-1``.
    class_names
        Name of each class, indexed by label.
    """

    def __init__(self, images: Tensor, labels: Sequence[int] | np.ndarray | Tensor, class_names: Sequence[str]):
        images = torch.as_tensor(images)
        if images.ndim != 4:
            raise ValueError(f'images must have shape (N, C, H, W), got {tuple(images.shape)}')
        if not images.is_floating_point():
            raise ValueError(f'images must be a float tensor, got dtype {images.dtype}')
        labels = _as_label_tensor(labels)
        if len(labels) != len(images):
            raise ValueError(f'got {len(images)} images but {len(labels)} labels')
        _check_labels(labels, class_names)
        self.images = images
        self.labels = labels
        self.class_names = list(class_names)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.images[index], int(self.labels[index])

    def _select(self, indices: Tensor, labels: Tensor, class_names: list[str]) -> LabeledTensorDataset:
        return LabeledTensorDataset(self.images[indices], labels, class_names)


class LabeledArrayDataset(_LabeledBase):
    """Images stored as ``uint8`` and converted to normalised floats one item at a time.

    Storing bytes instead of floats keeps large datasets (1.28M ImageNet32 images = 3.9 GB as uint8, 15.7 GB as
    float32) in memory.

    Parameters
    ----------
    images
        ``uint8`` array ``(N, H, W, C)`` (or ``(N, C, H, W)`` with ``channels_last=False``). It is kept as is
        (no copy), so a view of a larger array works.
    labels
        Integer labels ``(N,)`` in ``0..len(class_names)-1``.
    class_names
        Name of each class, indexed by label.
    image_size
        Side length of returned images (bilinear resize); ``None`` keeps the native size.
    mean, std
        Per-channel statistics for images scaled to [0, 1] (one value is broadcast to all channels).
    channels_last
        Whether ``images`` is NHWC (``True``) or NCHW (``False``).
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: Sequence[int] | np.ndarray | Tensor,
        class_names: Sequence[str],
        image_size: int | None = None,
        mean: Sequence[float] = (0.5,),
        std: Sequence[float] = (0.5,),
        channels_last: bool = True,
    ):
        images = np.asarray(images)
        if images.ndim != 4:
            layout = '(N, H, W, C)' if channels_last else '(N, C, H, W)'
            raise ValueError(f'images must have shape {layout}, got {images.shape}')
        if images.dtype != np.uint8:
            raise ValueError(f'images must be uint8, got dtype {images.dtype}')
        if image_size is not None and image_size < 1:
            raise ValueError(f'image_size must be positive or None, got {image_size}')
        labels = _as_label_tensor(labels)
        if len(labels) != len(images):
            raise ValueError(f'got {len(images)} images but {len(labels)} labels')
        _check_labels(labels, class_names)
        channels = images.shape[3] if channels_last else images.shape[1]
        self.images = images
        self.labels = labels
        self.class_names = list(class_names)
        self.image_size = image_size
        self.channels_last = channels_last
        self.mean = _stat_tensor(mean, channels, 'mean')
        self.std = _stat_tensor(std, channels, 'std')

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        image = torch.from_numpy(np.ascontiguousarray(self.images[index]))
        if self.channels_last:
            image = image.permute(2, 0, 1)
        return normalize_uint8_image(image, self.image_size, self.mean, self.std), int(self.labels[index])

    def _select(self, indices: Tensor, labels: Tensor, class_names: list[str]) -> LabeledArrayDataset:
        return LabeledArrayDataset(
            self.images[indices.numpy()],
            labels,
            class_names,
            image_size=self.image_size,
            mean=self.mean.flatten().tolist(),
            std=self.std.flatten().tolist(),
            channels_last=self.channels_last,
        )


class LabeledFileDataset(_LabeledBase):
    """Images read lazily from files with PIL, converted to RGB and resized on access.

    Parameters
    ----------
    paths
        One image file per sample.
    labels
        Integer labels ``(N,)`` in ``0..len(class_names)-1``.
    class_names
        Name of each class, indexed by label.
    image_size
        Side length of returned images.
    mean, std
        Per-channel RGB statistics for images scaled to [0, 1].
    """

    def __init__(
        self,
        paths: Sequence[str | Path],
        labels: Sequence[int] | np.ndarray | Tensor,
        class_names: Sequence[str],
        image_size: int,
        mean: Sequence[float] = (0.5,),
        std: Sequence[float] = (0.5,),
    ):
        labels = _as_label_tensor(labels)
        if len(labels) != len(paths):
            raise ValueError(f'got {len(paths)} paths but {len(labels)} labels')
        if image_size < 1:
            raise ValueError(f'image_size must be positive, got {image_size}')
        _check_labels(labels, class_names)
        self.paths = [Path(p) for p in paths]
        self.labels = labels
        self.class_names = list(class_names)
        self.image_size = image_size
        self.mean = _stat_tensor(mean, 3, 'mean')
        self.std = _stat_tensor(std, 3, 'std')

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        from PIL import Image  # local import: PIL is only needed when files are actually read

        with Image.open(self.paths[index]) as img:
            # resize on the uint8 PIL image before converting to float: cheaper and antialiased
            rgb = img.convert('RGB').resize((self.image_size, self.image_size), Image.Resampling.BILINEAR)
            array = np.asarray(rgb, dtype=np.uint8)
        image = torch.from_numpy(array.copy()).permute(2, 0, 1)
        return normalize_uint8_image(image, None, self.mean, self.std), int(self.labels[index])

    def _select(self, indices: Tensor, labels: Tensor, class_names: list[str]) -> LabeledFileDataset:
        return LabeledFileDataset(
            [self.paths[i] for i in indices.tolist()],
            labels,
            class_names,
            image_size=self.image_size,
            mean=self.mean.flatten().tolist(),
            std=self.std.flatten().tolist(),
        )
