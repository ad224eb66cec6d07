"""The zero-shot modes as their own NNI strategies: one thin class per mode, each picking its own module.

:class:`~nni_base.BaseStrategy` meta-trains and adapts; these two generate a dataset's architecture without
training, so they take only what their mode reads:

* :class:`DatabaseZeroShotStrategy` — MetaD2A's half, no prior needed: the cells of the ground-truth database ranked for
  the dataset (:class:`~nni_base.database.zero_shot_module.DatabaseZeroShotModule`);
* :class:`ConditionedZeroShotStrategy` — a dataset-conditioned prior's generator and predictor
  (:class:`~nni_base.database.ZeroShotModule`).

Both run on the path NNI users run, ``NasExperiment(space, Classification(...), strategy)``, and refuse an
episodic evaluator (a distribution of tasks has no one dataset to generate for).
"""

from __future__ import annotations

import os
from typing import Any

from .config import ZeroShotCandidates
from .config_groups import ZeroShotConfig
from .evaluator import EpisodicClassification
from .strategy import BaseStrategy

__all__ = ['ConditionedZeroShotStrategy', 'DatabaseZeroShotStrategy']


class _ZeroShotMode(BaseStrategy):
    """A BaseStrategy fixed to one zero-shot mode; refuses the meta-training evaluator."""

    def mutate_evaluator(self, evaluator):
        if isinstance(evaluator, EpisodicClassification):  # before BaseStrategy's check, which names zero_shot=
            raise TypeError(
                f"{type(self).__name__} generates one dataset's architecture: give it a single-dataset evaluator "
                "(NNI's Classification), not EpisodicClassification; meta-train with BaseStrategy()."
            )
        return super().mutate_evaluator(evaluator)


class DatabaseZeroShotStrategy(_ZeroShotMode):
    """Zero-shot NAS from the ground-truth database: the dataset's cell without a prior or any training.

    Example::

        exp = NasExperiment(DartsTaskSpace(width=8, num_cells=3, num_classes=5), Classification(...),
                            DatabaseZeroShotStrategy())
        exp.run(); exp.export_top_models(formatter='dict')

    Parameters
    ----------
    database
        A database file (``python -m nni_base.cli.database``) or ``'shipped'``, the one nni-base ships.
    images
        Training images encoded to describe the dataset.
    seed
        Seeds the run (:class:`~nni_base.BaseStrategy`).
    """

    def __init__(self, database: str | os.PathLike = 'shipped', *, images: int = 250, seed: int | None = 0, **kwargs):
        super().__init__(zero_shot=ZeroShotConfig(database=os.fspath(database), images=images), seed=seed, **kwargs)


class ConditionedZeroShotStrategy(_ZeroShotMode):
    """Zero-shot NAS from a dataset-conditioned prior (meta-trained with ``BaseStrategy(conditioning=True)``).

    Example::

        exp = NasExperiment(space, Classification(...), ConditionedZeroShotStrategy('conditioned.pt', pool=8))

    Parameters
    ----------
    prior
        The conditioned prior file.
    images, pool, candidates
        Training images encoded; candidates scored (the generated α's samples, ``'random'`` cells, or ``'both'``).
    seed
        Seeds the run (:class:`~nni_base.BaseStrategy`).
    """

    def __init__(
        self,
        prior: str | os.PathLike,
        *,
        images: int = 250,
        pool: int = 4,
        candidates: ZeroShotCandidates = 'alpha',
        seed: int | None = 0,
        **kwargs: Any,
    ):
        config = ZeroShotConfig(images=images, pool=pool, candidates=candidates)
        super().__init__(prior=prior, zero_shot=config, seed=seed, **kwargs)
