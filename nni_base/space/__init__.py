"""Search spaces and the supernet modules that replace NNI's choices while BASE searches.

Third layer: model spaces (:class:`DartsTaskSpace`, multi-resolution), the sparse Gumbel cell and its
slot variant, genotype interop, temperature schedules, parameter/MAC counts.
"""

from .darts import DartsTaskSpace
from .gumbel_cell import GumbelMixedCell, derived_architecture
from .multires import MultiResolutionDartsSpace
from .slot_cell import SlotGumbelCell
from .temperature import TemperatureSchedule

__all__ = [
    'DartsTaskSpace',
    'GumbelMixedCell',
    'MultiResolutionDartsSpace',
    'SlotGumbelCell',
    'TemperatureSchedule',
    'derived_architecture',
]
