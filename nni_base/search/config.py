"""Moved to :mod:`nni_base.config` (the schema) and :mod:`nni_base.config_groups` (the grouped arguments): this
name keeps old imports working, with a DeprecationWarning."""

import warnings

from .. import config as _schema
from .. import config_groups as _groups

warnings.warn(
    'nni_base.search.config moved to nni_base.config and nni_base.config_groups: import from there.',
    DeprecationWarning,
    stacklevel=2,
)


def __getattr__(name: str):
    for module in (_schema, _groups):
        if hasattr(module, name):
            return getattr(module, name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
