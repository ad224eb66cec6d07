"""Datasets for BASE: the embedded rotated-digits benchmark and loaders for data already on disk."""

from .datasets import LabeledArrayDataset, LabeledFileDataset, LabeledTensorDataset, normalize_uint8_image
from .digits import DIGITS_MEAN, DIGITS_STD, digits_splits
from .fewshot import MINI_IMAGENET_SPLITS, load_mini_imagenet, load_omniglot, omniglot_splits
from .imagenet import load_downsampled_imagenet
from .loaders import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    CIFAR100_MEAN,
    CIFAR100_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    SVHN_MEAN,
    SVHN_STD,
    load_cifar10,
    load_cifar100,
    load_image_folder,
    load_svhn,
)

__all__ = [
    'CIFAR10_MEAN',
    'CIFAR10_STD',
    'CIFAR100_MEAN',
    'CIFAR100_STD',
    'DIGITS_MEAN',
    'DIGITS_STD',
    'IMAGENET_MEAN',
    'IMAGENET_STD',
    'SVHN_MEAN',
    'SVHN_STD',
    'MINI_IMAGENET_SPLITS',
    'LabeledArrayDataset',
    'LabeledFileDataset',
    'LabeledTensorDataset',
    'digits_splits',
    'load_cifar10',
    'load_cifar100',
    'load_downsampled_imagenet',
    'load_image_folder',
    'load_mini_imagenet',
    'load_omniglot',
    'omniglot_splits',
    'load_svhn',
    'normalize_uint8_image',
]
