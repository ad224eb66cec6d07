"""Loaders for datasets the user already has on disk. Nothing here ever downloads.

Every loader reads the official on-disk format directly (no md5 checks, so partial or hand-made copies work)
and raises :class:`FileNotFoundError` naming the missing path, the expected layout and how to get it.
All returned datasets follow the :mod:`nni_base.data.datasets` contract (``.labels`` 1-D LongTensor,
``.class_names``, ``dataset[i] -> (float CxHxW tensor, int)``) and keep images as ``uint8`` until accessed.

CIFAR and downsampled-ImageNet batches are Python pickles; they are read with an unpickler that only builds numpy
arrays and plain containers (:mod:`nni_base.data.safe_pickle`), so a tampered file cannot run code.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .datasets import LabeledArrayDataset, LabeledFileDataset
from .safe_pickle import load_array_pickle

__all__ = [
    'CIFAR10_MEAN',
    'CIFAR10_STD',
    'CIFAR100_MEAN',
    'CIFAR100_STD',
    'IMAGENET_MEAN',
    'IMAGENET_STD',
    'SVHN_MEAN',
    'SVHN_STD',
    'load_cifar10',
    'load_cifar100',
    'load_image_folder',
    'load_svhn',
]

# Commonly used per-channel statistics of each training set (images scaled to [0, 1]).
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)
SVHN_MEAN = (0.4377, 0.4438, 0.4728)
SVHN_STD = (0.1980, 0.2010, 0.1970)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.gif', '.tif', '.tiff', '.webp', '.ppm', '.pgm')

PathLike = str | os.PathLike


def _missing(path: Path, layout: str, fix: str) -> FileNotFoundError:
    return FileNotFoundError(f'{path} does not exist.\nExpected layout: {layout}\nFix: {fix}')


def _get(record: dict, key: str) -> Any:
    """Look ``key`` up as str or bytes: Python-2 pickles (CIFAR) load with bytes keys, newer ones with str."""
    for k in (key, key.encode()):
        if k in record:
            return record[k]
    raise KeyError(f'missing key {key!r}; found keys {sorted(map(repr, record))}')


def _unpickle(path: Path) -> dict:
    # latin1 is what numpy needs to read arrays pickled by Python 2; Python-3 bytes keys stay bytes
    record = load_array_pickle(path)
    if not isinstance(record, dict):
        raise ValueError(f'{path} does not hold a pickled dict (got {type(record).__name__}); is it the right file?')
    return record


def _as_str(name: Any) -> str:
    return name.decode() if isinstance(name, bytes) else str(name)


def _check_image_size(image_size: int | None) -> None:
    if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1):
        raise ValueError(f'image_size must be a positive int or None, got {image_size!r}')


def _flat_chw(data: Any, resolution: int, path: Path) -> np.ndarray:
    """Reshape rows of CHW-flattened uint8 pixels into an (N, 3, res, res) view."""
    data = np.asarray(data)
    width = 3 * resolution * resolution
    if data.ndim != 2 or data.shape[1] != width:
        found = f'shape {data.shape}'
        if data.ndim == 2 and data.shape[1] % 3 == 0:
            side = int(round((data.shape[1] // 3) ** 0.5))
            if 3 * side * side == data.shape[1]:
                found += f', i.e. {side}x{side} RGB images'
        raise ValueError(
            f"{path}: 'data' must have shape (N, {width}) for {resolution}x{resolution} RGB images, but has {found}"
        )
    if data.dtype != np.uint8:
        if data.size and (data.min() < 0 or data.max() > 255):
            raise ValueError(f'{path}: pixel values must lie in 0..255')
        data = data.astype(np.uint8)
    return data.reshape(len(data), 3, resolution, resolution)


# --------------------------------------------------------------------------------------------------------------
# Image folder
# --------------------------------------------------------------------------------------------------------------


def load_image_folder(
    root: PathLike,
    image_size: int = 32,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> LabeledFileDataset:
    """Load a folder with one sub-folder of images per class.

    Parameters
    ----------
    root
        Folder laid out as ``root/<class name>/<image file>``; classes are the sub-folder names in sorted order.
    image_size
        Images are converted to RGB and resized (bilinear) to ``image_size`` x ``image_size``.
    mean, std
        Per-channel normalisation statistics; ImageNet's by default.

    Returns
    -------
    LabeledFileDataset
        Lazily reads each file on access.

    Raises
    ------
    FileNotFoundError
        If ``root`` is missing or holds no class folder with images.
    """
    _check_image_size(image_size)
    root = Path(root).expanduser()
    layout = f'{root}/<class name>/<image>.png (one sub-folder per class; extensions {", ".join(IMAGE_EXTENSIONS)})'
    if not root.is_dir():
        raise _missing(root, layout, 'pass the folder that directly contains one sub-folder per class')
    paths: list[Path] = []
    labels: list[int] = []
    class_names: list[str] = []
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith('.')):
        files = sorted(p for p in class_dir.rglob('*') if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            continue  # empty folders are not classes; a class without samples cannot form tasks
        paths.extend(files)
        labels.extend([len(class_names)] * len(files))
        class_names.append(class_dir.name)
    if not class_names:
        raise FileNotFoundError(
            f'{root} contains no class sub-folder with images.\nExpected layout: {layout}\n'
            "Fix: put each class's images in its own sub-folder of this folder"
        )
    return LabeledFileDataset(paths, labels, class_names, image_size=image_size, mean=mean, std=std)


# --------------------------------------------------------------------------------------------------------------
# CIFAR
# --------------------------------------------------------------------------------------------------------------


def _cifar_dir(root: PathLike, folder: str, required: str, name: str, archive: str) -> Path:
    """Find the extracted CIFAR folder: accept both ``root`` and ``root/<folder>``."""
    root = Path(root).expanduser()
    base = root if (root / required).exists() and not (root / folder).is_dir() else root / folder
    if not (base / required).exists():
        missing = base if not base.exists() else base / required
        raise _missing(
            missing,
            f"{root}/{folder}/{required} (the official CIFAR 'python version' files)",
            f"download {name} 'python version' ({archive}) from https://www.cs.toronto.edu/~kriz/cifar.html "
            f'and extract it into {root} so that {root / folder / required} exists',
        )
    return base


def _cifar(
    base: Path,
    files: list[str],
    label_key: str,
    meta_file: str,
    names_key: str,
    image_size: int | None,
    mean: Sequence[float],
    std: Sequence[float],
    name: str,
) -> LabeledArrayDataset:
    data, labels = [], []
    for fname in files:
        path = base / fname
        if not path.exists():
            raise _missing(
                path,
                f'{base}/{{{", ".join(files)}}}',
                f"re-extract the {name} 'python version' archive; the folder is incomplete",
            )
        record = _unpickle(path)
        data.append(_flat_chw(_get(record, 'data'), 32, path))
        labels.append(np.asarray(_get(record, label_key), dtype=np.int64))
    meta_path = base / meta_file
    if meta_path.exists():
        class_names = [_as_str(n) for n in _get(_unpickle(meta_path), names_key)]
    else:  # the meta file only carries names; fall back to numbers rather than refusing to load
        class_names = [str(i) for i in range(10 if name == 'CIFAR-10' else 100)]
    images = data[0] if len(data) == 1 else np.concatenate(data)
    return LabeledArrayDataset(
        images, np.concatenate(labels), class_names, image_size=image_size, mean=mean, std=std, channels_last=False
    )


def load_cifar10(root: PathLike, train: bool = True, image_size: int | None = 32) -> LabeledArrayDataset:
    """Load CIFAR-10 from the official "python version" pickles.

    Parameters
    ----------
    root
        Folder containing ``cifar-10-batches-py/`` (or that folder itself), with ``data_batch_1`` ..
        ``data_batch_5``, ``test_batch`` and ``batches.meta``.
    train
        Load the 50k training batches (``True``) or ``test_batch`` (``False``).
    image_size
        Output side length (bilinear resize of the native 32x32); ``None`` keeps 32.

    Returns
    -------
    LabeledArrayDataset
        10 classes named from ``batches.meta``; normalised with :data:`CIFAR10_MEAN` / :data:`CIFAR10_STD`.
    """
    _check_image_size(image_size)
    files = [f'data_batch_{i}' for i in range(1, 6)] if train else ['test_batch']
    base = _cifar_dir(root, 'cifar-10-batches-py', files[0], 'CIFAR-10', 'cifar-10-python.tar.gz')
    return _cifar(
        base, files, 'labels', 'batches.meta', 'label_names', image_size, CIFAR10_MEAN, CIFAR10_STD, 'CIFAR-10'
    )


def load_cifar100(root: PathLike, train: bool = True, image_size: int | None = 32) -> LabeledArrayDataset:
    """Load CIFAR-100 (fine labels) from the official "python version" pickles.

    Parameters
    ----------
    root
        Folder containing ``cifar-100-python/`` (or that folder itself), with ``train``, ``test`` and ``meta``.
    train
        Load ``train`` (50k images) or ``test`` (10k images).
    image_size
        Output side length (bilinear resize of the native 32x32); ``None`` keeps 32.

    Returns
    -------
    LabeledArrayDataset
        100 fine-label classes named from ``meta``; normalised with :data:`CIFAR100_MEAN` / :data:`CIFAR100_STD`.
    """
    _check_image_size(image_size)
    files = ['train' if train else 'test']
    base = _cifar_dir(root, 'cifar-100-python', files[0], 'CIFAR-100', 'cifar-100-python.tar.gz')
    return _cifar(
        base, files, 'fine_labels', 'meta', 'fine_label_names', image_size, CIFAR100_MEAN, CIFAR100_STD, 'CIFAR-100'
    )


# --------------------------------------------------------------------------------------------------------------
# SVHN
# --------------------------------------------------------------------------------------------------------------


def load_svhn(root: PathLike, split: str = 'train', image_size: int | None = 32) -> LabeledArrayDataset:
    """Load SVHN (cropped digits, format 2) from ``ROOT/{split}_32x32.mat``.

    Parameters
    ----------
    root
        Folder holding ``train_32x32.mat`` / ``test_32x32.mat`` / ``extra_32x32.mat`` (torchvision's layout).
    split
        ``'train'``, ``'test'`` or ``'extra'``.
    image_size
        Output side length (bilinear resize of the native 32x32); ``None`` keeps 32.

    Returns
    -------
    LabeledArrayDataset
        10 classes ``'0'..'9'``; the file's label 10 (digit 0) becomes 0.
    """
    _check_image_size(image_size)
    if split not in ('train', 'test', 'extra'):
        raise ValueError(f"split must be 'train', 'test' or 'extra', got {split!r}")
    root = Path(root).expanduser()
    path = root / f'{split}_32x32.mat'
    if not path.exists():
        raise _missing(
            path,
            f'{root}/{{train,test,extra}}_32x32.mat (SVHN format 2, cropped digits)',
            f'download {split}_32x32.mat from http://ufldl.stanford.edu/housenumbers/ into {root}',
        )
    from scipy.io import loadmat  # local import: scipy is only needed for SVHN

    mat = loadmat(path)
    x, y = mat['X'], np.asarray(mat['y'], dtype=np.int64).reshape(-1)
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.shape[3] != len(y):
        raise ValueError(f'{path}: expected X of shape (32, 32, 3, N) and y of shape (N, 1), got {x.shape}, {y.shape}')
    y[y == 10] = 0  # SVHN stores digit 0 as label 10
    if y.size and (y.min() < 0 or y.max() > 9):
        raise ValueError(f'{path}: labels must be 1..10, found {y.min()}..{y.max()}')
    images = np.ascontiguousarray(np.moveaxis(x, 3, 0), dtype=np.uint8)  # (32, 32, 3, N) -> (N, 32, 32, 3)
    return LabeledArrayDataset(
        images, y, [str(d) for d in range(10)], image_size=image_size, mean=SVHN_MEAN, std=SVHN_STD
    )
