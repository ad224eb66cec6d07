"""The BASE prior: its file (format, validation, loading), the heads a prior rebuilds, the priors nni-base ships.

Where it sits: above the spaces and :mod:`nni_base.config`, below the search algorithms (:mod:`nni_base.search`)
and the strategies that save and apply it. :mod:`.file` reads and writes a prior (never running code from it),
:mod:`.head` finds the classifier heads of another class count, :mod:`.shipped` names the priors in the package's
resources (``load_prior('default')``) and :mod:`.space` rebuilds a prior's space.
"""

from .file import (
    PRIOR_FORMAT,
    PRIOR_VERSION,
    apply_prior,
    build_prior,
    load_prior,
    save_prior,
    space_arguments,
    space_signature,
)
from .head import head_mismatch, head_modules
from .shipped import SHIPPED_PRIORS, resolve_prior_path, shipped_prior_path
from .space import prior_space

__all__ = [
    'PRIOR_FORMAT',
    'PRIOR_VERSION',
    'SHIPPED_PRIORS',
    'apply_prior',
    'build_prior',
    'head_mismatch',
    'head_modules',
    'load_prior',
    'prior_space',
    'resolve_prior_path',
    'save_prior',
    'shipped_prior_path',
    'space_arguments',
    'space_signature',
]
