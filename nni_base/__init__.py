"""nni-base: BASE (Bayesian Meta Architecture SEarch) as an NNI one-shot strategy.

>>> from nni_base import BaseStrategy, DartsTaskSpace, EpisodicClassification, TaskDistribution
"""

from .errors import CorruptPriorError, MetaTrainingDiverged, PriorMismatchError
from .evaluator import EpisodicClassification, EpisodicModule
from .search.adaptation import TaskAdapter
from .search.prior import load_prior, save_prior
from .space.darts import DartsTaskSpace
from .space.multires import MultiResolutionDartsSpace
from .space.temperature import TemperatureSchedule
from .strategy import BaseStrategy
from .tasks import EpisodeDataset, Task, TaskDistribution
from .tasks.mixture import ResolutionMixture

__version__ = '0.1.0'

__all__ = [
    'BaseStrategy', 'DartsTaskSpace', 'EpisodicClassification', 'EpisodicModule', 'TaskDistribution', 'Task',
    'EpisodeDataset', 'TemperatureSchedule', 'load_prior', 'save_prior', 'PriorMismatchError',
    'CorruptPriorError', 'MetaTrainingDiverged', 'MultiResolutionDartsSpace', 'ResolutionMixture', 'TaskAdapter',
]
