"""Moved to :mod:`nni_base.database.ground_truth`: this name keeps old imports working, with a DeprecationWarning."""

import warnings

from ..database import ground_truth as _moved

warnings.warn(
    'nni_base.search.database moved to nni_base.database.ground_truth: import from there.',
    DeprecationWarning,
    stacklevel=2,
)


def __getattr__(name: str):
    return getattr(_moved, name)
