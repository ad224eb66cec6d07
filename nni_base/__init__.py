"""nni-base: BASE (Bayesian Meta Architecture SEarch) as an NNI one-shot strategy.

>>> from nni_base import BaseStrategy, DartsTaskSpace, EpisodicClassification, TaskDistribution
"""

from .adaptation import TaskAdapter
from .errors import CorruptPriorError, MetaTrainingDiverged, PriorMismatchError
from .evaluator import EpisodicClassification, EpisodicModule
from .multires import MultiResolutionDartsSpace
from .prior import load_prior, save_prior
from .spaces import DartsTaskSpace
from .strategy import BaseStrategy
from .task_mixture import ResolutionMixture
from .tasks import EpisodeDataset, Task, TaskDistribution
from .temperature import TemperatureSchedule

__version__ = '0.1.0'

__all__ = [
    'BaseStrategy', 'DartsTaskSpace', 'EpisodicClassification', 'EpisodicModule', 'TaskDistribution', 'Task',
    'EpisodeDataset', 'TemperatureSchedule', 'load_prior', 'save_prior', 'PriorMismatchError',
    'CorruptPriorError', 'MetaTrainingDiverged', 'MultiResolutionDartsSpace', 'ResolutionMixture', 'TaskAdapter',
]
