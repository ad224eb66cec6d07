"""Downsampled ImageNet (Imagenet32x32 / Imagenet64x64, Chrabaszcz et al. 2017) from its official batch files.

Pickled batches are read with :mod:`nni_base.data.safe_pickle` (numpy arrays and plain containers only), ``.npz``
copies with ``allow_pickle=False``; nothing here downloads.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .datasets import LabeledArrayDataset
from .loaders import IMAGENET_MEAN, IMAGENET_STD, PathLike, _check_image_size, _flat_chw, _get, _missing, _unpickle

__all__ = ['load_downsampled_imagenet']


def _imagenet_files(root: Path, resolution: int, train: bool) -> list[Path]:
    # accept the files directly in root, or in the folders the official zip archives extract to
    candidates = [root, root / f'Imagenet{resolution}_{"train" if train else "val"}']
    candidates.append(root / f'Imagenet{resolution}_{"train" if train else "val"}_npz')
    pattern = re.compile(r'train_data_batch_(\d+)(\.npz)?$' if train else r'val_data(\.npz)?$')
    for folder in candidates:
        if not folder.is_dir():
            continue
        found = {}
        for p in folder.iterdir():
            m = pattern.match(p.name)
            if m and p.is_file():
                key = int(m.group(1)) if train else 0
                found.setdefault(key, p)  # if both 'x' and 'x.npz' exist, either holds the same data
        if found:
            return [found[k] for k in sorted(found)]
    expected = 'train_data_batch_1 .. train_data_batch_10' if train else 'val_data'
    missing = root / ('train_data_batch_1' if train else 'val_data')
    raise _missing(
        missing if root.is_dir() else root,
        f'{root}/{expected} (pickles, or the same names with a .npz suffix)',
        f'download Imagenet{resolution}_{"train" if train else "val"} from https://image-net.org/download-images '
        f'(downsampled ImageNet {resolution}x{resolution}) and extract its files into {root}',
    )


def _read_imagenet_batch(path: Path) -> dict:
    if path.suffix == '.npz':
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    return _unpickle(path)


def _read_batch(path: Path, resolution: int, max_classes: int | None) -> tuple[np.ndarray, np.ndarray]:
    """One batch file's images (N x C x H x W uint8) and 0-based labels, the classes past ``max_classes`` dropped."""
    record = _read_imagenet_batch(path)
    images = _flat_chw(_get(record, 'data'), resolution, path)
    y = np.asarray(_get(record, 'labels'), dtype=np.int64).reshape(-1) - 1  # files are 1-based
    if len(y) != len(images):
        raise ValueError(f'{path}: {len(images)} images but {len(y)} labels')
    if y.size and (y.min() < 0 or y.max() > 999):
        raise ValueError(f'{path}: labels must be 1-based ints in 1..1000, found {y.min() + 1}..{y.max() + 1}')
    if max_classes is not None:
        keep = y < max_classes
        images, y = images[keep], y[keep]  # boolean indexing copies, so the full batch can be freed
    return images, y


def load_downsampled_imagenet(
    root: PathLike,
    resolution: int = 32,
    train: bool = True,
    image_size: int | None = None,
    max_classes: int | None = None,
) -> LabeledArrayDataset:
    """Load downsampled ImageNet (Imagenet32x32 / Imagenet64x64 / ...) from the official batch files.

    Parameters
    ----------
    root
        Folder with ``train_data_batch_1`` .. ``train_data_batch_10`` and ``val_data`` (pickled dicts, or ``.npz``
        files with the same keys); the archives' ``Imagenet{res}_train`` / ``Imagenet{res}_val`` sub-folders are
        also accepted. Whichever training batches are present are loaded, in numeric order.
    resolution
        Native side length of the stored images (8, 16, 32 or 64); checked against the data width.
    train
        Load the training batches or ``val_data``.
    image_size
        Output side length; ``None`` keeps ``resolution``.
    max_classes
        Keep only the first ``max_classes`` classes (labels ``0..max_classes-1``), e.g. to save memory.

    Returns
    -------
    LabeledArrayDataset
        Labels are 0-based (the files store 1..1000); ``num_classes`` is 1000 or ``max_classes``. Images stay
        ``uint8`` in memory (about 3.9 GB for all of Imagenet32; loading briefly needs about twice that).
    """
    _check_image_size(image_size)
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1:
        raise ValueError(f'resolution must be a positive int, got {resolution!r}')
    if max_classes is not None and not 1 <= max_classes <= 1000:
        raise ValueError(f'max_classes must be in 1..1000 or None, got {max_classes!r}')
    num_classes = 1000 if max_classes is None else max_classes
    data, labels = [], []
    for path in _imagenet_files(Path(root).expanduser(), resolution, train):
        images, y = _read_batch(path, resolution, max_classes)
        data.append(images)
        labels.append(y)
    images = data[0] if len(data) == 1 else np.concatenate(data)
    del data
    return LabeledArrayDataset(
        images,
        np.concatenate(labels),
        [f'class{k:04d}' for k in range(num_classes)],
        image_size=image_size,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        channels_last=False,
    )
