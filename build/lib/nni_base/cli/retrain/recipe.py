"""Retraining recipes: every hyper-parameter of a paper-scale retraining run, as a JSON/YAML file.

A recipe names a dataset and says how to build and train the network for an exported cell
architecture. The shipped ones are package data, ``nni_base/resources/recipes/`` (``cifar10``, ``svhn``, ``imagenet``,
following BASE Appendix A / DARTS); :func:`load_recipe` accepts one of those names or a path to
your own file, and :meth:`RetrainRecipe.override` applies command-line changes (tiny CI runs).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ...resources import resource_path

__all__ = ['RetrainRecipe', 'load_recipe', 'recipe_dir', 'DATASETS']

DATASETS = ('cifar10', 'cifar100', 'svhn', 'imagenet')


def recipe_dir() -> Path:
    """Folder of the shipped recipes: package data (``nni_base/resources/recipes``), so a wheel has them too."""
    return resource_path('recipes')


@dataclass(frozen=True)
class RetrainRecipe:
    """How to retrain a found architecture from scratch.

    Attributes
    ----------
    dataset
        ``'cifar10'``, ``'cifar100'``, ``'svhn'`` (32x32 files, see :mod:`nni_base.data`) or
        ``'imagenet'`` (``ROOT/train/<class>/*`` and ``ROOT/val/<class>/*`` image folders).
    stem
        NNI DARTS stem: ``'cifar'`` (stride 1, 32x32 inputs) or ``'imagenet'`` (stride 8, 224x224).
    width, num_cells
        Channels of the first stage and number of cells (CIFAR: 36 and 20; ImageNet mobile: 48 and 14).
    epochs
        Length of the schedules (cosine learning rate, drop-path ramp).
    batch_size, eval_batch_size
        Per-device batch sizes for training and evaluation.
    learning_rate, min_learning_rate, momentum, weight_decay
        SGD with Nesterov-free momentum, cosine-annealed from ``learning_rate`` to ``min_learning_rate``.
    grad_clip
        Global gradient-norm clip (0 disables).
    aux_weight
        Weight of the auxiliary tower's loss (0 builds no tower).
    drop_path_prob
        Final drop-path probability; it ramps linearly from 0 over the epochs, as in DARTS.
    label_smoothing
        Cross-entropy label smoothing (0.1 for ImageNet in DARTS).
    image_size
        Network input side (32 or 224).
    load_size
        Side images are loaded at before cropping (ImageNet: 256, then random-resized / center crop to
        ``image_size``); ``None`` loads at ``image_size``.
    crop_padding, flip, cutout_length
        Training augmentation: padded random crop, horizontal flip, Cutout square side.
    """

    dataset: str
    stem: str = 'cifar'
    width: int = 36
    num_cells: int = 20
    epochs: int = 600
    batch_size: int = 96
    eval_batch_size: int = 256
    learning_rate: float = 0.025
    min_learning_rate: float = 0.0
    momentum: float = 0.9
    weight_decay: float = 3e-4
    grad_clip: float = 5.0
    aux_weight: float = 0.4
    drop_path_prob: float = 0.2
    label_smoothing: float = 0.0
    image_size: int = 32
    load_size: int | None = None
    crop_padding: int = 4
    flip: bool = True
    cutout_length: int = 16

    def __post_init__(self):
        if self.dataset not in DATASETS:
            raise ValueError(f'recipe dataset must be one of {", ".join(DATASETS)}, got {self.dataset!r}')
        if self.stem not in ('cifar', 'imagenet'):
            raise ValueError(f"recipe stem must be 'cifar' or 'imagenet', got {self.stem!r}")
        for name in ('width', 'num_cells', 'epochs', 'batch_size', 'eval_batch_size', 'image_size'):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f'recipe {name} must be a positive int, got {value!r}')
        if self.num_cells < 3:
            raise ValueError(f'recipe num_cells must be at least 3 (one cell per stage), got {self.num_cells}')
        for name in ('crop_padding', 'cutout_length'):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f'recipe {name} must be an int >= 0, got {value!r}')
        for name in (
            'learning_rate',
            'min_learning_rate',
            'momentum',
            'weight_decay',
            'grad_clip',
            'aux_weight',
            'label_smoothing',
            'drop_path_prob',
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ValueError(f'recipe {name} must be a finite number >= 0, got {value!r}')
        if not self.drop_path_prob < 1 or not self.label_smoothing < 1:
            raise ValueError('recipe drop_path_prob and label_smoothing must be below 1')
        if self.load_size is not None and (not isinstance(self.load_size, int) or self.load_size < self.image_size):
            raise ValueError(
                f'recipe load_size must be None or an int >= image_size ({self.image_size}), got {self.load_size!r}'
            )
        if self.stem == 'imagenet' and self.image_size < 64:
            raise ValueError(
                f"the 'imagenet' stem strides by 8: image_size {self.image_size} is too small; "
                "use stem 'cifar' for 32x32 images"
            )

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = 'recipe') -> RetrainRecipe:
        """Build from a parsed file; unknown keys are an error (a typo would otherwise be silently ignored)."""
        if not isinstance(data, dict):
            raise ValueError(f'{source}: a recipe must be a mapping of settings, got {type(data).__name__}')
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f'{source}: unknown recipe setting(s) {", ".join(unknown)}; '
                f'known settings are {", ".join(sorted(known))}'
            )
        if 'dataset' not in data:
            raise ValueError(f'{source}: the recipe must name its dataset ({", ".join(DATASETS)})')
        try:
            return cls(**data)
        except ValueError as e:
            raise ValueError(f'{source}: {e}') from None

    def override(self, **changes: Any) -> RetrainRecipe:
        """Copy with the given settings changed (``None`` values are ignored)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_recipe(name_or_path: str | os.PathLike) -> RetrainRecipe:
    """Load a shipped recipe by name (``'cifar10'``, ``'svhn'``, ``'imagenet'``) or a ``.json``/``.yaml`` file."""
    path = Path(name_or_path).expanduser()
    if not path.is_file():
        shipped = recipe_dir() / f'{name_or_path}.json'
        if not shipped.is_file():
            names = sorted(p.stem for p in recipe_dir().glob('*.json')) if recipe_dir().is_dir() else []
            raise FileNotFoundError(
                f'no recipe {str(name_or_path)!r}: pass the path of a .json/.yaml recipe file'
                + (f' or one of the shipped names: {", ".join(names)}' if names else '')
            )
        path = shipped
    text = path.read_text()
    if path.suffix in ('.yaml', '.yml'):
        import yaml  # PyYAML comes with NNI

        data = yaml.safe_load(text)
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f'{path}: not valid JSON ({e})') from None
    return RetrainRecipe.from_dict(data, source=str(path))
