"""Moved to :mod:`nni_base.prior`: this name keeps old imports working, with a DeprecationWarning."""

import warnings

from .. import prior as _prior
from ..prior import file as _file

warnings.warn('nni_base.search.prior moved to nni_base.prior: import from there.', DeprecationWarning, stacklevel=2)


def __getattr__(name: str):
    for module in (_prior, _file):
        if hasattr(module, name):
            return getattr(module, name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
