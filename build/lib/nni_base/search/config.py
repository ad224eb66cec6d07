"""Moved to :mod:`nni_base.config`: this name keeps old imports working, with a DeprecationWarning."""

import warnings

from .. import config as _moved

warnings.warn(
    'nni_base.search.config moved to nni_base.config: import from there.',
    DeprecationWarning,
    stacklevel=2,
)


def __getattr__(name: str):
    return getattr(_moved, name)
