"""Moved to :mod:`nni_base.database`: this name keeps old imports working, with a DeprecationWarning."""

import warnings

from ... import database as _moved

warnings.warn(
    'nni_base.search.conditioning moved to nni_base.database: import from there.',
    DeprecationWarning,
    stacklevel=2,
)


def __getattr__(name: str):
    return getattr(_moved, name)
