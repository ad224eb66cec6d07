"""The task distributions of an NNI trial (:mod:`nni_base.cli.trial`): meta-train and held-out classes."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..data import digits_splits, load_cifar10, load_cifar100, load_downsampled_imagenet, load_image_folder, load_svhn
from ..tasks import TaskDistribution

__all__ = ['load_task_splits']


def _load_dataset(params: dict[str, Any]):
    root, size, name = params['data_root'], params['image_size'], params['dataset']
    if name == 'image_folder':
        return load_image_folder(root, image_size=size or 32)
    if name == 'cifar10':
        return load_cifar10(root, train=True, image_size=size or 32)
    if name == 'cifar100':
        return load_cifar100(root, train=True, image_size=size or 32)
    if name == 'svhn':
        return load_svhn(root, split='train', image_size=size or 32)
    resolution = int(name.removeprefix('imagenet'))
    return load_downsampled_imagenet(root, resolution=resolution, train=True, image_size=size)


def load_task_splits(params: dict[str, Any]):
    """Meta-train and held-out task distributions with disjoint classes.

    ``'digits'`` uses the embedded rotated-digits splits. File-based datasets are loaded with
    :mod:`nni_base.data` and their classes split in two halves by a fixed permutation (independent of the trial
    seed, so that every trial is scored on the same held-out classes).

    Parameters
    ----------
    params
        Validated trial parameters (see :func:`validate_params`).

    Returns
    -------
    tuple[TaskDistribution, TaskDistribution]
        ``(meta_train, held_out)``.
    """
    ways, shots, queries = params['ways'], params['shots'], params['queries']
    if params['dataset'] == 'digits':
        splits = digits_splits(image_size=params['image_size'] or 8)
        train, held_out, name = splits['train'], splits['test'], 'digits'
    else:
        data = _load_dataset(params)
        order = np.random.default_rng(0).permutation(data.num_classes)
        half = (data.num_classes + 1) // 2
        if data.num_classes - half < ways:
            raise ValueError(
                f'dataset {params["dataset"]!r} at {params["data_root"]} has {data.num_classes} classes: '
                f'each half (meta-train / held-out) needs at least ways={ways}, so lower ways to at '
                f'most {data.num_classes - half} or add classes'
            )
        train = data.subset_classes(sorted(order[:half].tolist()))
        held_out = data.subset_classes(sorted(order[half:].tolist()))
        name = params['dataset']
    return (
        TaskDistribution(train, ways, shots, queries, name=f'{name}-train'),
        TaskDistribution(held_out, ways, shots, queries, name=f'{name}-heldout'),
    )
