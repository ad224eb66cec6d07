"""Search spaces and the supernet modules that replace NNI's choices while BASE searches.

A layer of its own above data and tasks, imported by config, search and database; it imports nothing else of
nni_base (``tests/test_layers.py`` keeps it so). Model spaces (:class:`DartsTaskSpace`, multi-resolution), the
sparse Gumbel cell and its slot variant, genotype interop, temperature schedules, costs (parameters, MACs,
CPU latency).
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
