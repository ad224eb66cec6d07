"""Moved to :mod:`nni_base.database.build`: this name keeps old imports working, with a DeprecationWarning."""

import warnings

from ..database import build as _moved

warnings.warn(
    'nni_base.search.database_build moved to nni_base.database.build: import from there.',
    DeprecationWarning,
    stacklevel=2,
)


def __getattr__(name: str):
    return getattr(_moved, name)
