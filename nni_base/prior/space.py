"""The model space a prior was meta-trained on, rebuilt from the prior: ``prior_space('default')``.

Where it sits: beside the prior file (:mod:`.file`); a user adapting a prior they did not meta-train (a shipped
one) needs its space before ``NasExperiment(space, evaluator, BaseStrategy(prior=...))``.
"""

from __future__ import annotations

import os
from typing import Any

from ..errors import PriorMismatchError
from ..space.darts import DartsTaskSpace
from .file import load_prior

__all__ = ['prior_space']


def prior_space(prior: str | os.PathLike | dict[str, Any], num_classes: int | None = None) -> DartsTaskSpace:
    """A :class:`~nni_base.DartsTaskSpace` with the arguments ``prior`` (a path, a shipped prior's name, or a loaded
    prior) was meta-trained with; ``num_classes`` for the user's dataset (the head is rebuilt in any case).

    >>> space = prior_space('default', num_classes=37)   # doctest: +SKIP
    """
    loaded = prior if isinstance(prior, dict) else load_prior(prior)
    space = loaded['space']
    if not str(space.get('class', '')).endswith('.DartsTaskSpace'):
        raise PriorMismatchError(
            f'prior_space rebuilds DartsTaskSpace priors; this prior was meta-trained on {space.get("class")}: '
            'build that space with the arguments of its meta-training.'
        )
    arguments = dict(space.get('arguments') or {})
    if 'width' not in arguments or 'num_cells' not in arguments:
        raise PriorMismatchError(
            "This prior does not record its space's width and num_cells (written before they were stored): build "
            'DartsTaskSpace with the arguments of its meta-training.'
        )
    if num_classes is not None:
        arguments['num_classes'] = num_classes
    return DartsTaskSpace(**arguments)
