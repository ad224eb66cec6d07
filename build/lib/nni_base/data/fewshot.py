"""Few-shot benchmarks read from disk: Mini-ImageNet (learn2learn's cache files) and Omniglot (torchvision layout).

Nothing here downloads. Both loaders return datasets with the :mod:`nni_base.data.datasets` contract, ready for
:class:`~nni_base.TaskDistribution`.

* Mini-ImageNet: ``ROOT/mini-imagenet-cache-{train,validation,test}.pkl``, the files learn2learn's
  ``MiniImagenet`` downloads: a pickled dict with ``'image_data'`` (uint8 ``(N, 84, 84, 3)``) and
  ``'class_dict'`` (class name -> list of row indices); 64 / 16 / 20 classes of 600 images.
  The pickles are read with an unpickler that only builds numpy arrays and plain containers, so a
  tampered file cannot run code.
* Omniglot: ``ROOT/omniglot-py/images_background/<alphabet>/<character>/*.png`` and
  ``.../images_evaluation/...`` (what ``torchvision.datasets.Omniglot`` extracts); 1623 characters of
  20 drawings. :func:`omniglot_splits` makes the usual class split (1100 train / 100 val / rest test).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .datasets import LabeledArrayDataset, LabeledFileDataset
from .loaders import IMAGE_EXTENSIONS, IMAGENET_MEAN, IMAGENET_STD, PathLike, _check_image_size, _missing
from .safe_pickle import load_array_pickle

__all__ = ['MINI_IMAGENET_SPLITS', 'load_mini_imagenet', 'load_omniglot', 'omniglot_splits']

MINI_IMAGENET_SPLITS = ('train', 'validation', 'test')


def load_mini_imagenet(root: PathLike, split: str = 'train', image_size: int | None = None) -> LabeledArrayDataset:
    """One split of Mini-ImageNet from learn2learn's cache pickles.

    Parameters
    ----------
    root
        Folder holding ``mini-imagenet-cache-{split}.pkl``.
    split
        ``'train'`` (64 classes), ``'validation'`` (16; ``'val'`` also works) or ``'test'`` (20).
    image_size
        Side length of returned images (bilinear resize); ``None`` keeps the native 84.

    Returns
    -------
    LabeledArrayDataset
        uint8 images kept in memory, normalised with ImageNet statistics on access; labels follow the
        order of ``class_dict``, ``class_names`` are the WordNet ids.
    """
    _check_image_size(image_size)
    split = 'validation' if split == 'val' else split
    if split not in MINI_IMAGENET_SPLITS:
        raise ValueError(f'split must be one of {MINI_IMAGENET_SPLITS}, got {split!r}')
    path = Path(root).expanduser() / f'mini-imagenet-cache-{split}.pkl'
    if not path.is_file():
        raise _missing(
            path,
            "ROOT/mini-imagenet-cache-{train,validation,test}.pkl (learn2learn's Mini-ImageNet cache files)",
            'download them once where you have network access (learn2learn.vision.datasets.MiniImagenet(root, '
            'download=True)) and copy them to ROOT',
        )
    record = load_array_pickle(path)
    if not isinstance(record, dict) or 'image_data' not in record or 'class_dict' not in record:
        keys = sorted(record) if isinstance(record, dict) else type(record).__name__
        raise ValueError(f"{path} must hold a dict with 'image_data' and 'class_dict', found {keys}")
    images = np.asarray(record['image_data'])
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"{path}: 'image_data' must be uint8 (N, H, W, 3), got {images.dtype} {images.shape}")
    labels = np.full(len(images), -1, dtype=np.int64)
    names: list[str] = []
    for name, rows in record['class_dict'].items():
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size and (rows.min() < 0 or rows.max() >= len(images)):
            raise ValueError(f'{path}: class {name!r} lists rows outside 0..{len(images) - 1}')
        labels[rows] = len(names)
        names.append(str(name))
    if (labels < 0).any():
        raise ValueError(f"{path}: {int((labels < 0).sum())} images belong to no class in 'class_dict'")
    return LabeledArrayDataset(images, labels, names, image_size=image_size, mean=IMAGENET_MEAN, std=IMAGENET_STD)


def _omniglot_base(root: Path) -> Path:
    for candidate in (root / 'omniglot-py', root):
        if (candidate / 'images_background').is_dir() or (candidate / 'images_evaluation').is_dir():
            return candidate
    raise _missing(
        root / 'omniglot-py',
        "ROOT/omniglot-py/images_{background,evaluation}/<alphabet>/<character>/<drawing>.png (torchvision's "
        'Omniglot layout)',
        'download and extract images_background.zip and images_evaluation.zip from the Omniglot repository '
        '(or torchvision.datasets.Omniglot(ROOT, download=True) where you have network access)',
    )


def load_omniglot(
    root: PathLike, image_size: int = 28, subsets: Sequence[str] = ('background', 'evaluation')
) -> LabeledFileDataset:
    """Omniglot characters as classes, read lazily from the extracted PNG files.

    Parameters
    ----------
    root
        Folder holding ``omniglot-py/`` (or ``omniglot-py`` itself).
    image_size
        Side length of returned images (28 is the usual few-shot size).
    subsets
        Which of ``'background'`` (964 characters) and ``'evaluation'`` (659) to include, in order.

    Returns
    -------
    LabeledFileDataset
        RGB images scaled to [-1, 1]; classes sorted by subset, alphabet, character, named
        ``'Alphabet/characterNN'``.
    """
    base = _omniglot_base(Path(root).expanduser())
    bad = [s for s in subsets if s not in ('background', 'evaluation')]
    if bad or not subsets:
        raise ValueError(f"subsets must be a non-empty selection of 'background' and 'evaluation', got {subsets!r}")
    paths: list[Path] = []
    labels: list[int] = []
    names: list[str] = []
    for subset in subsets:
        folder = base / f'images_{subset}'
        if not folder.is_dir():
            raise _missing(
                folder,
                f'{base}/images_{subset}/<alphabet>/<character>/*.png',
                f'extract images_{subset}.zip into {base}, or leave {subset!r} out of subsets',
            )
        for alphabet in sorted(p for p in folder.iterdir() if p.is_dir()):
            for character in sorted(p for p in alphabet.iterdir() if p.is_dir()):
                files = sorted(p for p in character.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
                if not files:
                    continue
                paths.extend(files)
                labels.extend([len(names)] * len(files))
                names.append(f'{alphabet.name}/{character.name}')
    if not names:
        raise ValueError(f'no character images found under {base}; expected <alphabet>/<character>/*.png folders')
    return LabeledFileDataset(paths, labels, names, image_size=image_size, mean=(0.5,), std=(0.5,))


def omniglot_splits(
    root: PathLike, image_size: int = 28, num_train: int = 1100, num_val: int = 100
) -> dict[str, LabeledFileDataset]:
    """The usual few-shot Omniglot class split: the first ``num_train`` characters train, the next ``num_val``
    validate, the rest test (classes in :func:`load_omniglot` order: background alphabets first).

    Raises
    ------
    ValueError
        If fewer than ``num_train + num_val + 1`` characters are present.
    """
    dataset = load_omniglot(root, image_size=image_size)
    total = dataset.num_classes
    if num_train < 1 or num_val < 0 or num_train + num_val >= total:
        raise ValueError(
            f'found {total} Omniglot characters, too few for num_train={num_train} + num_val={num_val} and a '
            'non-empty test split: lower num_train / num_val'
        )
    bounds = {'train': (0, num_train), 'val': (num_train, num_train + num_val), 'test': (num_train + num_val, total)}
    splits = {name: dataset.subset_classes(range(lo, hi)) for name, (lo, hi) in bounds.items() if hi > lo}
    return splits  # type: ignore[return-value]
