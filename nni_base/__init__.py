"""nni-base: BASE (Bayesian Meta Architecture SEarch) as an NNI one-shot strategy.

>>> from nni_base import BaseStrategy, DartsTaskSpace, EpisodicClassification, TaskDistribution
"""

import warnings

# NNI 3.0 wraps every class of torch.nn at import and warns about the ones newer torch releases added that are
# not modules (torch.nn.Buffer, ...): harmless on this stack, and a user importing
# nni_base should not read it. Only that message, only while NNI's module is first imported.
with warnings.catch_warnings():
    warnings.filterwarnings('ignore', message='.*is found to be not a nn.Module.*', category=RuntimeWarning)
    import nni.nas.nn.pytorch  # noqa: F401

from .config_groups import AdaptationConfig, ConditioningConfig, MetaTrainingConfig, SupernetConfig, ZeroShotConfig
from .errors import CorruptPriorError, MetaTrainingDiverged, PriorMismatchError
from .evaluator import EpisodicClassification, EpisodicModule
from .hardware import Budget
from .prior import load_prior, prior_space, save_prior
from .runs import show_nni_base_lines
from .search.adaptation import TaskAdapter
from .space.darts import DartsTaskSpace
from .space.multires import MultiResolutionDartsSpace
from .space.temperature import TemperatureSchedule
from .strategy import BaseStrategy
from .tasks import EpisodeDataset, Task, TaskDistribution
from .tasks.mixture import ResolutionMixture
from .zero_shot_strategies import ConditionedZeroShotStrategy, DatabaseZeroShotStrategy

show_nni_base_lines()  # nni-base's decisions in NNI's console, at INFO (runs.py)

# Lightning 2.6 builds torch's LeafSpec, which torch 2.14 deprecates, on every fit: a note between the two pinned
# libraries that no user code can act on. Only that message, only from that Lightning module.
warnings.filterwarnings(
    'ignore',
    message=r'`isinstance\(treespec, LeafSpec\)` is deprecated',
    category=FutureWarning,
    module=r'pytorch_lightning\.utilities\._pytree',
)

__version__ = '0.1.0'

__all__ = [
    'Budget',
    'BaseStrategy',
    'DatabaseZeroShotStrategy',
    'ConditionedZeroShotStrategy',
    'SupernetConfig',
    'MetaTrainingConfig',
    'AdaptationConfig',
    'ConditioningConfig',
    'ZeroShotConfig',
    'DartsTaskSpace',
    'EpisodicClassification',
    'EpisodicModule',
    'TaskDistribution',
    'Task',
    'EpisodeDataset',
    'TemperatureSchedule',
    'load_prior',
    'save_prior',
    'prior_space',
    'PriorMismatchError',
    'CorruptPriorError',
    'MetaTrainingDiverged',
    'MultiResolutionDartsSpace',
    'ResolutionMixture',
    'TaskAdapter',
]
