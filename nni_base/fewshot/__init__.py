"""Few-shot BASE (paper section 6.3): search cells with MAML over weights and alpha, then train and test them.

>>> from nni_base.fewshot import Conv4, FixedNetworkMAML, evaluate_fewshot, search_cells, train_maml
"""

from ..tasks.metrics import mean_ci
from .maml import FixedNetworkMAML
from .models import Conv4
from .pipeline import (
    FewShotScore,
    SeedSummary,
    count_parameters,
    darts_cells_without_meta,
    evaluate_fewshot,
    full_network,
    search_cells,
    summarize_seeds,
    train_maml,
    width_for_budget,
)

__all__ = [
    'Conv4',
    'FewShotScore',
    'FixedNetworkMAML',
    'SeedSummary',
    'count_parameters',
    'darts_cells_without_meta',
    'evaluate_fewshot',
    'full_network',
    'mean_ci',
    'search_cells',
    'summarize_seeds',
    'train_maml',
    'width_for_budget',
]


def __getattr__(name: str):
    if name == 'FewShotMAML':  # the old name, which read as a second MAML of BASE's
        import warnings

        warnings.warn('FewShotMAML is now FixedNetworkMAML.', DeprecationWarning, stacklevel=2)
        return FixedNetworkMAML
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
