"""What ships inside the package (and so inside a wheel): the ground-truth databases, the retraining recipes,
shipped priors. Read through :func:`resource_path`, never through a path relative to a source checkout."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

__all__ = ['resource_path']


def resource_path(*parts: str) -> Path:
    """The file-system path of a shipped resource, e.g. ``resource_path('recipes', 'cifar10.json')``.

    nni-base is installed unpacked (an editable checkout or a wheel), so its package data are plain files.
    """
    return Path(str(files(__package__).joinpath(*parts)))
