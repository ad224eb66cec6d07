"""BASE's search algorithms: one Lightning module each, over the shared task loop.

BASE's half of nni-base, above the data, tasks and spaces and :mod:`nni_base.config`, below
:mod:`nni_base.database` (MetaD2A) and the strategy: :mod:`.loop` (snapshot → adapt → query → restore, written
once), :mod:`.reptile` and :mod:`.maml` (meta-training), :mod:`.single_task` (search and adaptation on one
dataset), :mod:`.adaptation` (adapting outside a trainer), :mod:`.top_k`
(export). Nothing here imports :mod:`nni_base.database`.
"""

from ..config import BaseConfig
from ..prior import load_prior, save_prior
from .adaptation import TaskAdapter
from .base import BaseSearchModule
from .maml import MamlModule
from .meta_training import MetaTrainingModule
from .reptile import ReptileModule
from .single_task import SingleTaskModule

__all__ = [
    'BaseConfig',
    'BaseSearchModule',
    'MamlModule',
    'MetaTrainingModule',
    'ReptileModule',
    'SingleTaskModule',
    'TaskAdapter',
    'load_prior',
    'save_prior',
]
