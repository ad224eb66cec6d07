"""Training-time augmentation for retraining, driven by an explicit random generator.

Retraining must give the same weights whether it ran in one go or was stopped and resumed, and
whatever the number of loader workers. So every random choice here comes from a ``torch.Generator``
seeded per (run seed, epoch, sample) by :class:`SeededShuffleSampler`, never from global RNG state.

Images arrive already normalised (the :mod:`nni_base.data` loaders normalise on access), so
zero-padding and the Cutout mask fill with the dataset mean, as in the DARTS training code.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, Sampler

__all__ = ['Augment', 'AugmentedDataset', 'SeededShuffleSampler', 'center_crop', 'derive_seed']


def derive_seed(*keys: int) -> int:
    """A 63-bit seed that depends on every key (NumPy's SeedSequence mixes them; no accidental collisions)."""
    return int(
        np.random.SeedSequence([int(k) & 0xFFFFFFFFFFFFFFFF for k in keys]).generate_state(2, np.uint64)[0]
        >> np.uint64(1)
    )


def _uniform(g: torch.Generator) -> float:
    return float(torch.rand((), generator=g))


def _randint(high: int, g: torch.Generator) -> int:
    return int(torch.randint(high, (), generator=g))


def random_crop(img: torch.Tensor, padding: int, g: torch.Generator) -> torch.Tensor:
    """Zero-pad by ``padding`` on every side and cut a window of the original size at a random place."""
    if padding <= 0:
        return img
    _, h, w = img.shape
    padded = F.pad(img, (padding, padding, padding, padding))
    top, left = _randint(2 * padding + 1, g), _randint(2 * padding + 1, g)
    return padded[:, top : top + h, left : left + w]


def cutout(img: torch.Tensor, length: int, g: torch.Generator) -> torch.Tensor:
    """Zero a ``length`` x ``length`` square centred at a random pixel (clipped at the borders; DeVries & Taylor)."""
    if length <= 0:
        return img
    _, h, w = img.shape
    cy, cx = _randint(h, g), _randint(w, g)
    out = img.clone()
    out[:, max(0, cy - length // 2) : min(h, cy + length // 2), max(0, cx - length // 2) : min(w, cx + length // 2)] = 0
    return out


def center_crop(img: torch.Tensor, size: int) -> torch.Tensor:
    """Central ``size`` x ``size`` window (the evaluation view of a resized-crop pipeline)."""
    _, h, w = img.shape
    if h < size or w < size:
        raise ValueError(f'cannot center-crop {size}x{size} from a {h}x{w} image; load images at >= {size} pixels')
    top, left = (h - size) // 2, (w - size) // 2
    return img[:, top : top + size, left : left + size]


def random_resized_crop(
    img: torch.Tensor,
    size: int,
    g: torch.Generator,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> torch.Tensor:
    """Crop a random area fraction and aspect ratio, resized to ``size`` (the usual ImageNet training view)."""
    _, h, w = img.shape
    for _ in range(10):
        area = h * w * (scale[0] + (scale[1] - scale[0]) * _uniform(g))
        aspect = math.exp(math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * _uniform(g))
        cw, ch = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
        if 0 < cw <= w and 0 < ch <= h:
            top, left = _randint(h - ch + 1, g), _randint(w - cw + 1, g)
            break
    else:  # no valid box in 10 tries (extreme ratio): fall back to the central square
        ch = cw = min(h, w)
        top, left = (h - ch) // 2, (w - cw) // 2
    crop = img[:, top : top + ch, left : left + cw]
    return F.interpolate(crop[None], size=(size, size), mode='bilinear', align_corners=False)[0]


@dataclass(frozen=True)
class Augment:
    """One training-view recipe: optional random resized crop, padded random crop, flip, Cutout.

    Parameters
    ----------
    crop_padding
        Zero padding for the random crop (4 for CIFAR-10/SVHN; 0 disables it).
    flip
        Random horizontal flip (off for digits, where a mirrored digit is another symbol).
    cutout_length
        Side of the Cutout square (16 for CIFAR-10 in DARTS/BASE; 0 disables it).
    resized_crop
        If set, first take a random resized crop to this size (ImageNet, 224).
    """

    crop_padding: int = 0
    flip: bool = False
    cutout_length: int = 0
    resized_crop: int | None = None

    def __call__(self, img: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        if self.resized_crop:
            img = random_resized_crop(img, self.resized_crop, g)
        img = random_crop(img, self.crop_padding, g)
        if self.flip and _uniform(g) < 0.5:
            img = img.flip(-1)
        return cutout(img, self.cutout_length, g)


class AugmentedDataset(Dataset):
    """Training view of a labelled dataset: item ``(index, seed)`` is ``base[index]`` augmented with that seed."""

    def __init__(self, base: Dataset, augment: Augment):
        self.base = base
        self.augment = augment

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, int]:
        index, seed = key
        img, label = self.base[index]
        return self.augment(img, torch.Generator().manual_seed(seed)), label


class EvalView(Dataset):
    """Evaluation view of a labelled dataset: optional center crop, nothing random."""

    def __init__(self, base: Dataset, crop: int | None = None):
        self.base = base
        self.crop = crop

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        img, label = self.base[index]
        return (center_crop(img, self.crop) if self.crop else img), label


class SeededShuffleSampler(Sampler):
    """Shuffles ``num_samples`` indices per epoch and gives each a seed, both functions of (seed, epoch) only.

    Yields ``(index, sample_seed)`` pairs for :class:`AugmentedDataset`. Lightning calls
    :meth:`set_epoch` before every epoch, so an interrupted run resumed at epoch ``e`` sees exactly
    the batches an uninterrupted one would.
    """

    def __init__(self, num_samples: int, seed: int):
        if num_samples < 1:
            raise ValueError('the training set is empty: check --data-root')
        self.num_samples = num_samples
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[tuple[int, int]]:
        g = torch.Generator().manual_seed(derive_seed(self.seed, self.epoch, 0))
        order = torch.randperm(self.num_samples, generator=g).tolist()
        seeds = torch.randint(2**62, (self.num_samples,), generator=g).tolist()
        return iter(zip(order, seeds))
