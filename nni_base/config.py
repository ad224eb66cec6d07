"""The one hyper-parameter schema of BASE (``BaseConfig``), where every search knob is declared once.

Sits between the space and the search algorithms: :class:`~nni_base.BaseStrategy` builds a
``BaseConfig`` from its arguments (:func:`nni_base.config_groups.resolve_config`), each search module reads it, a
prior file stores it, and the nnictl trial validates tuner values (:func:`~nni_base.hparams.coerce`) and writes its
search-space file (:func:`tunable_space`) from the same fields. The grouped objects the strategy takes
(:mod:`nni_base.config_groups`) are views onto those fields.
"""

from __future__ import annotations

import os
from dataclasses import MISSING, asdict, dataclass, fields
from typing import Any, Literal, cast

from .hparams import choice, coerce, hparam
from .space.temperature import TemperatureSchedule

__all__ = [
    'AlphaEstimator',
    'ConditioningFeatures',
    'ConditioningTeacher',
    'HeadInit',
    'MetaAlgorithm',
    'OuterOptimizer',
    'Parameterization',
    'Relaxation',
    'ZeroShotCandidates',
    'choice',
    'BaseConfig',
    'DEFAULT_ARC_LEARNING_RATE',
    'coerce',
    'hparam',
    'tunable_space',
]

#: Adam's step on alpha in single-task search and adaptation (``arc_learning_rate``). One step's alpha gradient
#: is small per logit (batch-mean loss, BatchNorm'd ops), so SGD at ``inner_lr_alpha`` or a small Adam step leaves
#: alpha uniform for hundreds of steps: every step trains another random sub-network and the derived cell ends near
#: chance. Like the meta-level alpha steps that do move alpha, the step must be logit-sized (the measurement:
#: docs/concepts.md, *Adaptation*).
DEFAULT_ARC_LEARNING_RATE = 0.3


#: The choice lists, each declared once: a field's type names its alias and :func:`choice` reads the values from it.
MetaAlgorithm = Literal['reptile', 'maml']
Relaxation = Literal['gumbel', 'softmax']
OuterOptimizer = Literal['sgd', 'adam']
Parameterization = Literal['darts', 'slot']
AlphaEstimator = Literal['paired', 'straight_through']
ConditioningTeacher = Literal['shadow', 'inner']
ConditioningFeatures = Literal['pixels', 'stem']
HeadInit = Literal['zero', 'class_means', 'random']
ZeroShotCandidates = Literal['alpha', 'random', 'both']


@dataclass
class BaseConfig:
    """Hyper-parameters of BASE; :class:`~nni_base.BaseStrategy` documents what each one does."""

    inner_steps: int = hparam(5, 'int', minimum=1, tune={'_type': 'choice', '_value': [1, 2, 3, 5]})
    inner_lr: float = hparam(0.05, 'float', minimum=0, tune={'_type': 'loguniform', '_value': [0.005, 0.2]})
    inner_lr_alpha: float = hparam(0.5, 'float', minimum=0, tune={'_type': 'loguniform', '_value': [0.05, 2.0]})
    outer_lr: float | None = hparam(
        None, 'float', minimum=0, optional=True, tune={'_type': 'uniform', '_value': [0.3, 1.0]}
    )
    outer_lr_alpha: float | None = hparam(
        None, 'float', minimum=0, optional=True, tune={'_type': 'loguniform', '_value': [0.03, 0.5]}
    )
    adapt_steps: int | None = hparam(None, 'int', minimum=0, optional=True)
    # None (as priors written before 0.3 became the default store it) means the default step
    arc_learning_rate: float | None = hparam(DEFAULT_ARC_LEARNING_RATE, 'float', minimum=0, optional=True)
    temperature: TemperatureSchedule | None = hparam(None, 'any', optional=True)
    hard: bool = hparam(True, 'bool')
    sparse: bool = hparam(True, 'bool')
    average_alpha_tasks: int = hparam(0, 'int', minimum=0)
    inner_grad_clip: float | None = hparam(None, 'float', minimum=0, optional=True)
    meta_algorithm: MetaAlgorithm = choice(MetaAlgorithm, 'reptile')
    first_order: bool = hparam(False, 'bool')
    relaxation: Relaxation = choice(Relaxation, 'gumbel')
    freeze_architecture_after: int | None = hparam(None, 'int', minimum=0, optional=True)
    bn_recalibration_batches: int = hparam(8, 'int', minimum=0)
    #: The prior's architecture logits are multiplied by this before a run starts from it; its weights load as they
    #: are. 1 is BASE; 0 keeps the meta-learnt weights and searches the cell from a uniform alpha (measured in
    #: benchmarks/results/database/searches.md, row base_prior_weights).
    prior_alpha_scale: float = hparam(1.0, 'float', minimum=0)
    #: Adaptation steps per candidate of the prior-trust probe (search/trust.py): before adapting a prior, its α,
    #: a tempered α and a uniform one are each tried for this many steps on the dataset's first images and the run
    #: starts from the best. 0 (the default: measured, it did not pay for its time; docs/evidence/metad2a.md): no
    #: probe, the prior's α as it is (times prior_alpha_scale).
    prior_trust_steps: int = hparam(0, 'int', minimum=0)
    sample_none: bool = hparam(False, 'bool')
    samples_per_step: int = hparam(1, 'int', minimum=1)
    outer_optimizer_alpha: OuterOptimizer = choice(OuterOptimizer, 'adam')
    alpha_warmup_steps: int = hparam(0, 'int', minimum=0)
    inner_batch_size: int | None = hparam(None, 'int', minimum=1, optional=True)
    parameterization: Parameterization = choice(Parameterization, 'darts')
    freeze_alpha: bool = hparam(False, 'bool')
    alpha_estimator: AlphaEstimator = choice(AlphaEstimator, 'paired')
    pool_batchnorm: bool = hparam(True, 'bool')
    # the supernet's weights and 4-D inputs in channels-last layout: faster meta-training on CPU at the defaults
    # (benchmarks/results/meta_training_speed.md), and the layout tensor cores want under mixed precision
    channels_last: bool = hparam(True, 'bool')
    dataset_conditioning: bool = hparam(False, 'bool')
    conditioning_lr: float = hparam(0.01, 'float', minimum=0)
    predictor_samples: int = hparam(2, 'int', minimum=0)
    predictor_steps: int = hparam(20, 'int', minimum=0)
    predictor_centred: bool = hparam(True, 'bool')
    # the inner Adam step on alpha of conditioned meta-training (None: SGD at inner_lr_alpha)
    conditioning_alpha_lr: float | None = hparam(0.3, 'float', minimum=0, optional=True)
    conditioning_teacher: ConditioningTeacher = choice(ConditioningTeacher, 'shadow')
    conditioning_centred: bool = hparam(True, 'bool')
    conditioning_standardise: bool = hparam(True, 'bool')
    conditioning_per_op: bool = hparam(True, 'bool')
    conditioning_features: ConditioningFeatures = choice(ConditioningFeatures, 'pixels')
    # with a dataset-conditioned prior and a single-dataset evaluator: generate, do not train
    # a prior's classifier rebuilt for a dataset with another class count: how its rows start (search/head.py)
    # zero: measured best (benchmarks/results/head_init/)
    head_init: HeadInit = choice(HeadInit, 'zero')
    zero_shot: bool = hparam(False, 'bool')
    zero_shot_images: int = hparam(250, 'int', minimum=1)
    zero_shot_pool: int = hparam(4, 'int', minimum=1)
    zero_shot_candidates: ZeroShotCandidates = choice(ZeroShotCandidates, 'alpha')
    # zero-shot from a ground-truth database instead of a conditioned prior: a database file, or 'shipped'
    zero_shot_database: str | None = hparam(None, 'any', optional=True)

    def __post_init__(self):
        if isinstance(self.temperature, dict):  # from a prior file
            self.temperature = TemperatureSchedule(**self.temperature)
        elif isinstance(self.temperature, tuple):
            self.temperature = TemperatureSchedule(*self.temperature)
        for f in fields(self):
            setattr(self, f.name, coerce(f.name, getattr(self, f.name), f.metadata))
        if self.temperature is not None and not isinstance(self.temperature, TemperatureSchedule):
            raise ValueError(
                f'temperature must be a TemperatureSchedule or a (start, end) pair, got {self.temperature!r}.'
            )
        if self.zero_shot_database is not None:
            if not isinstance(self.zero_shot_database, (str, os.PathLike)):
                raise ValueError(
                    f"zero_shot_database must be a database file or 'shipped', got {self.zero_shot_database!r}."
                )
            self.zero_shot_database = os.fspath(self.zero_shot_database)  # a plain str: priors store the config
        maml = self.meta_algorithm == 'maml'
        if self.dataset_conditioning and maml:
            raise ValueError(
                "dataset_conditioning is trained with Reptile's task directions: use "
                "meta_algorithm='reptile' (the default) with it."
            )
        if self.outer_lr is None:
            # Reptile moves the prior toward the mean adapted values (1.0: all the way); MAML's outer
            # optimizer is Adam on the query loss, which wants a small step.
            self.outer_lr = 1e-3 if maml else 1.0
        if self.outer_lr_alpha is None:
            # Reptile + Adam: the step is the *sign-consistent* part of the task directions, in logits.
            # MAML + Adam: at the weights' 3e-3 α moved < 0.1 logit in 30 meta-steps (max p 0.13 on the
            # peaks family); at 0.1 the reduction cells' α found max pooling (0.41-0.43, seeds 0-1).
            self.outer_lr_alpha = 0.1 if maml else (0.15 if self.outer_optimizer_alpha == 'adam' else 1.0)
        if self.relaxation == 'softmax':
            self.hard = self.sparse = False  # a softmax mixture computes every operation
        if not self.hard:
            self.sparse = False  # relaxed samples weight every operation: nothing to skip
        if self.temperature is None:
            # Under hard samples argmax(alpha + g) does not depend on tau, so annealing would only shrink
            # alpha's early gradients: keep tau constant there; anneal only relaxed samples.
            hard_gumbel = self.hard and self.relaxation == 'gumbel'
            self.temperature = TemperatureSchedule(1.0, 1.0, 'constant') if hard_gumbel else TemperatureSchedule()

    @property
    def schedule(self) -> TemperatureSchedule:
        """The temperature schedule (always set after construction)."""
        return cast(TemperatureSchedule, self.temperature)

    @property
    def adaptation_steps(self) -> int:
        """Inner steps on held-out tasks: ``adapt_steps``, else ``inner_steps``."""
        return self.adapt_steps if self.adapt_steps is not None else self.inner_steps

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d['temperature'] = asdict(self.schedule)
        return d

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Every field's declared default (before the defaults that depend on other fields are filled in)."""
        return {f.name: f.default for f in fields(cls) if f.default is not MISSING}


def tunable_space() -> dict[str, dict[str, Any]]:
    """The NNI search-space entries of the BASE knobs worth tuning (``hparam(..., tune=...)``)."""
    return {f.name: dict(f.metadata['tune']) for f in fields(BaseConfig) if f.metadata.get('tune')}
