"""Embedded default data: scikit-learn's bundled 8x8 digits turned into a rotated few-shot benchmark.

``sklearn.datasets.load_digits`` ships inside scikit-learn, so this data needs no download and works offline.
Each (digit, rotation) pair becomes its own class, in the spirit of rotated-Omniglot: with 4 rotations the
10 digits give 40 classes. Held-out digits (with all their rotations) form a test split whose classes never
appear during meta-training.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .datasets import LabeledTensorDataset

__all__ = ['DIGITS_MEAN', 'DIGITS_STD', 'digits_splits']

# Pixel statistics of all 1797 digits scaled to [0, 1] (rotations do not change them). They are fixed
# constants rather than per-split estimates so that train and test images are normalised identically.
DIGITS_MEAN = 0.3053
DIGITS_STD = 0.3760


def _check_args(
    image_size: int, rotations: int, heldout_digits: Sequence[int], val_digits: Sequence[int] = ()
) -> list[int]:
    if isinstance(rotations, bool) or not isinstance(rotations, int) or not 1 <= rotations <= 4:
        raise ValueError(
            f'rotations must be an int in 1..4 (number of 90-degree rotations per digit), got {rotations!r}'
        )
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 4:
        raise ValueError(f'image_size must be an int >= 4, got {image_size!r}')
    heldout = sorted({int(d) for d in heldout_digits})
    bad = [d for d in heldout if not 0 <= d <= 9]
    if bad:
        raise ValueError(f'heldout_digits must be digits in 0..9, got {bad}')
    if not heldout:
        raise ValueError(
            'heldout_digits is empty, so the test split would have no classes: hold out at least one digit'
        )
    val = sorted({int(d) for d in val_digits})
    bad = [d for d in val if not 0 <= d <= 9]
    if bad:
        raise ValueError(f'val_digits must be digits in 0..9, got {bad}')
    overlap = sorted(set(val) & set(heldout))
    if overlap:
        raise ValueError(f'digits {overlap} are in both val_digits and heldout_digits: the splits must be disjoint')
    if len(heldout) + len(val) >= 10:
        raise ValueError('heldout_digits and val_digits leave no digit for training: keep at least one digit')
    return heldout


def _build_split(
    images: torch.Tensor, targets: torch.Tensor, digits: list[int], rotations: int
) -> LabeledTensorDataset:
    xs, ys, names = [], [], []
    for digit in digits:
        base = images[targets == digit]
        for r in range(rotations):
            # rot90 is exact (a pixel permutation), so rotated classes are true rotations of the base class
            xs.append(torch.rot90(base, k=r, dims=(-2, -1)))
            ys.append(torch.full((len(base),), len(names), dtype=torch.long))
            names.append(f'digit{digit}_rot{90 * r}')
    return LabeledTensorDataset(torch.cat(xs).contiguous(), torch.cat(ys), names)


def digits_splits(
    image_size: int = 8, rotations: int = 4, heldout_digits: Sequence[int] = (8, 9), val_digits: Sequence[int] = ()
) -> dict[str, LabeledTensorDataset]:
    """Build the rotated-digits meta-train / meta-test splits.

    Parameters
    ----------
    image_size
        Side length of the returned images; 8 is the native size, other sizes use bilinear interpolation.
    rotations
        Number of rotations per digit (1..4); rotation ``r`` turns the image by ``r * 90`` degrees
        counter-clockwise, and every (digit, rotation) pair is a separate class.
    heldout_digits
        Digits whose classes go to the ``'test'`` split; all other digits go to ``'train'``.
    val_digits
        Digits whose classes form a ``'val'`` split (meta-validation), disjoint from both others; the
        split is only returned when this is non-empty. The few-shot example uses ``(6, 7)``.

    Returns
    -------
    dict[str, LabeledTensorDataset]
        ``{'train': ..., 'test': ...}`` (plus ``'val'``) with disjoint classes. Images are
        ``(3, image_size, image_size)`` floats (gray repeated over 3 channels for the RGB DARTS stem) normalised with
        :data:`DIGITS_MEAN` / :data:`DIGITS_STD`; labels run ``0..C-1`` within each split and
        ``class_names`` reads like ``'digit3_rot90'``.

    Raises
    ------
    ValueError
        If an argument is out of range.
    """
    heldout = _check_args(image_size, rotations, heldout_digits, val_digits)
    val = sorted({int(d) for d in val_digits})
    from sklearn.datasets import load_digits  # local import: sklearn is slow to import and only needed here

    bunch = load_digits()
    images = torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (N, 1, 8, 8) in [0, 1]
    targets = torch.as_tensor(bunch.target, dtype=torch.long)
    if image_size != images.shape[-1]:
        # resize before rotating; bilinear resizing of a square commutes with 90-degree rotations anyway
        images = F.interpolate(images, size=(image_size, image_size), mode='bilinear', align_corners=False)
    images = ((images - DIGITS_MEAN) / DIGITS_STD).repeat(1, 3, 1, 1)
    train_digits = [d for d in range(10) if d not in heldout and d not in val]
    splits = {
        'train': _build_split(images, targets, train_digits, rotations),
        'test': _build_split(images, targets, heldout, rotations),
    }
    if val:
        splits['val'] = _build_split(images, targets, val, rotations)
    return splits


def noisy_digits_splits(
    image_size: int = 16, noise: float = 1.0, shift: int = 2, seed: int = 0
) -> dict[str, LabeledTensorDataset]:
    """:func:`digits_splits` made harder: every image moved by up to ``shift`` pixels each way (zero padded) and
    covered with Gaussian pixel noise of standard deviation ``noise`` (the images' own is 1), drawn from ``seed``.

    The classes and their split are those of :func:`digits_splits` (held-out digits 8 and 9); the clean digits are
    too easy at 16 px for the cells trained on them to differ, these are not.
    """
    if isinstance(shift, bool) or not isinstance(shift, int) or not 0 <= shift < image_size // 2:
        raise ValueError(f'shift must be an int in 0..{image_size // 2 - 1}, got {shift!r}')
    if not noise >= 0:
        raise ValueError(f'noise must be >= 0, got {noise!r}')
    generator = torch.Generator().manual_seed(seed)
    splits = {}
    for name, split in digits_splits(image_size=image_size).items():
        images = F.pad(split.images, (shift,) * 4)
        offsets = torch.randint(0, 2 * shift + 1, (len(images), 2), generator=generator)
        moved = torch.stack(
            [im[:, dy : dy + image_size, dx : dx + image_size] for im, (dy, dx) in zip(images, offsets.tolist())]
        )
        moved = moved + noise * torch.randn(moved.shape[0], 1, image_size, image_size, generator=generator)
        splits[name] = LabeledTensorDataset(moved.contiguous(), split.labels, split.class_names)
    return splits
