"""Priors that ship inside nni-base, taken off the shelf by name: ``BaseStrategy(prior='default')``.

Where it sits: the registry :func:`~nni_base.prior.load_prior` consults when it is given a name rather than a path.
The files live in the package's resources (``nni_base/resources/priors/``, so a wheel carries them), each with the
provenance of its meta-training inside it (``prior['meta']['provenance']``: the command, seed, budget, families,
seconds and machine); ``python -m nni_base.cli.shipped_prior`` rebuilds one and ``--describe`` prints it.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..resources import resource_path

__all__ = ['SHIPPED_PRIORS', 'is_prior_name', 'resolve_prior_path', 'shipped_prior_path']

#: name -> what it is. Each name is a file ``<name>.pt`` under ``nni_base/resources/priors/``.
SHIPPED_PRIORS: dict[str, str] = {
    'default': 'meta-trained on all seven families of the ground-truth database v2 (5-way tasks of 16x16 RGB '
    "images), in the database's space: DartsTaskSpace(width=8, num_cells=3)",
}


def shipped_prior_path(name: str) -> Path:
    """The file of the shipped prior ``name`` (which need not exist yet in a checkout that has not built it)."""
    if name not in SHIPPED_PRIORS:
        raise KeyError(f'{name!r} is not a shipped prior; the shipped priors are {sorted(SHIPPED_PRIORS)}.')
    return resource_path('priors', f'{name}.pt')


def is_prior_name(value: object) -> bool:
    """Whether ``value`` reads as a prior's name rather than a path: a str with no folder and no file suffix."""
    return isinstance(value, str) and bool(value) and os.sep not in value and '/' not in value and '.' not in value


def resolve_prior_path(prior: str | os.PathLike) -> Path:
    """The file ``prior`` names: a shipped prior's file for its name (unless a file of that name is in the working
    folder, which wins: a path is never reinterpreted), else the path itself."""
    if isinstance(prior, str) and prior in SHIPPED_PRIORS and not Path(prior).exists():
        return shipped_prior_path(prior)
    return Path(prior)
