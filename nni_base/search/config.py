"""The one hyper-parameter schema of BASE (``BaseConfig``), where every search knob is declared once.

Sits between the space and the search algorithms: :class:`~nni_base.BaseStrategy` builds a
``BaseConfig`` from its arguments, each search module reads it, a prior file stores it, and the
nnictl trial validates tuner values (:func:`coerce`) and writes its search-space file
(:func:`tunable_space`) from the same fields. A test checks that the strategy's signature agrees.
"""

from __future__ import annotations

import json
import math
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, Literal, cast

from ..space.temperature import TemperatureSchedule

__all__ = ['BaseConfig', 'DEFAULT_ARC_LEARNING_RATE', 'coerce', 'hparam', 'tunable_space']

#: Adam's step on alpha in single-task search and adaptation (``arc_learning_rate``). One step's alpha gradient
#: is ~3e-3 per logit (batch-mean loss, BatchNorm'd ops), so SGD at ``inner_lr_alpha`` or Adam at 3e-3 moves alpha
#: < 0.1 logit in 100 steps: alpha stays uniform, every step trains another random sub-network and the derived
#: cell ends near chance. Like the meta-level alpha steps that do move alpha (Reptile's Adam 0.15, MAML's 0.1)
#: the step must be logit-sized: 0.3 concentrates alpha within ~50-100 steps (issue #11: 16 px texture / digits,
#: 100 steps, derived-cell validation accuracy 0.49 / 0.15 -> 0.88 / 0.74).
DEFAULT_ARC_LEARNING_RATE = 0.3


def hparam(default: Any, kind: str, *, minimum: float | None = None, optional: bool = False,
           choices: tuple[str, ...] | None = None, tune: dict[str, Any] | None = None) -> Any:
    """Declare a hyper-parameter: its default, its kind (int/float/bool/choice/any) and its checks.

    ``tune`` is the NNI search-space entry (``{'_type': ..., '_value': ...}``) of a knob worth tuning.
    """
    return field(default=default, metadata={'kind': kind, 'minimum': minimum, 'optional': optional,
                                            'choices': choices, 'tune': tune})


def coerce(name: str, value: Any, metadata: Any, *, json_spelling: bool = False) -> Any:
    """Check one value against its declaration; integral floats (as tuners send) become ints.

    Raises ``ValueError`` naming the parameter and what it accepts, spelt as in Python (``True``, ``None``) or, with
    ``json_spelling`` (the nnictl trial's parameters come as JSON), as in JSON (``true``, ``null``).
    """
    kind, minimum = metadata['kind'], metadata['minimum']
    if value is None and metadata['optional']:
        return None
    none = (' or null' if json_spelling else ' or None') if metadata['optional'] else ''
    shown = _spelt(value, json_spelling)
    if kind == 'int':
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f'{name} must be an integer{none}, got {shown}.')
    elif kind == 'float':
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f'{name} must be a finite number{none}, got {shown}.')
        value = float(value)
    elif kind == 'bool':
        if not isinstance(value, bool):
            raise ValueError(f'{name} must be {"true or false" if json_spelling else "True or False"}, got {shown}.')
    elif kind == 'choice':
        if value not in metadata['choices']:
            accepted = ', '.join(_spelt(c, json_spelling) for c in metadata['choices'])
            raise ValueError(f'{name} must be one of {accepted}, got {shown}.')
    if minimum is not None and kind in ('int', 'float') and value < minimum:
        raise ValueError(f'{name} must be >= {minimum}, got {value}.')
    return value


def _spelt(value: Any, json_spelling: bool) -> str:
    """``value`` as the user wrote it: JSON for the trial's parameters, ``repr`` otherwise."""
    if json_spelling:
        try:
            return json.dumps(value)
        except (TypeError, ValueError):
            pass
    return repr(value)


@dataclass
class BaseConfig:
    """Hyper-parameters of BASE; :class:`~nni_base.BaseStrategy` documents what each one does."""

    inner_steps: int = hparam(5, 'int', minimum=1, tune={'_type': 'choice', '_value': [1, 2, 3, 5]})
    inner_lr: float = hparam(0.05, 'float', minimum=0, tune={'_type': 'loguniform', '_value': [0.005, 0.2]})
    inner_lr_alpha: float = hparam(0.5, 'float', minimum=0, tune={'_type': 'loguniform', '_value': [0.05, 2.0]})
    outer_lr: float | None = hparam(None, 'float', minimum=0, optional=True,
                                    tune={'_type': 'uniform', '_value': [0.3, 1.0]})
    outer_lr_alpha: float | None = hparam(None, 'float', minimum=0, optional=True,
                                          tune={'_type': 'loguniform', '_value': [0.03, 0.5]})
    adapt_steps: int | None = hparam(None, 'int', minimum=0, optional=True)
    # None (as priors written before 0.3 became the default store it) means the default step
    arc_learning_rate: float | None = hparam(DEFAULT_ARC_LEARNING_RATE, 'float', minimum=0, optional=True)
    temperature: TemperatureSchedule | None = hparam(None, 'any', optional=True)
    hard: bool = hparam(True, 'bool')
    sparse: bool = hparam(True, 'bool')
    average_alpha_tasks: int = hparam(0, 'int', minimum=0)
    inner_grad_clip: float | None = hparam(None, 'float', minimum=0, optional=True)
    meta_algorithm: Literal['reptile', 'maml'] = hparam('reptile', 'choice', choices=('reptile', 'maml'))
    first_order: bool = hparam(False, 'bool')
    relaxation: Literal['gumbel', 'softmax'] = hparam('gumbel', 'choice', choices=('gumbel', 'softmax'))
    freeze_architecture_after: int | None = hparam(None, 'int', minimum=0, optional=True)
    bn_recalibration_batches: int = hparam(8, 'int', minimum=0)
    sample_none: bool = hparam(False, 'bool')
    samples_per_step: int = hparam(1, 'int', minimum=1)
    outer_optimizer_alpha: Literal['sgd', 'adam'] = hparam('adam', 'choice', choices=('sgd', 'adam'))
    alpha_warmup_steps: int = hparam(0, 'int', minimum=0)
    inner_batch_size: int | None = hparam(None, 'int', minimum=1, optional=True)
    parameterization: Literal['darts', 'slot'] = hparam('darts', 'choice', choices=('darts', 'slot'))
    freeze_alpha: bool = hparam(False, 'bool')
    alpha_estimator: Literal['paired', 'straight_through'] = hparam('paired', 'choice',
                                                                    choices=('paired', 'straight_through'))
    pool_batchnorm: bool = hparam(True, 'bool')
    dataset_conditioning: bool = hparam(False, 'bool')
    conditioning_lr: float = hparam(0.01, 'float', minimum=0)
    predictor_samples: int = hparam(2, 'int', minimum=0)
    predictor_steps: int = hparam(20, 'int', minimum=0)
    predictor_centred: bool = hparam(True, 'bool')
    # the inner Adam step on alpha of conditioned meta-training (None: SGD at inner_lr_alpha, as before issue #12)
    conditioning_alpha_lr: float | None = hparam(0.3, 'float', minimum=0, optional=True)
    conditioning_teacher: Literal['shadow', 'inner'] = hparam('shadow', 'choice', choices=('shadow', 'inner'))
    conditioning_centred: bool = hparam(True, 'bool')
    conditioning_standardise: bool = hparam(True, 'bool')
    conditioning_per_op: bool = hparam(True, 'bool')
    conditioning_features: Literal['pixels', 'stem'] = hparam('pixels', 'choice', choices=('pixels', 'stem'))
    # with a dataset-conditioned prior and a single-dataset evaluator: generate, do not train
    # a prior's classifier rebuilt for a dataset with another class count: how its rows start (search/head.py)
    # zero: measured best (benchmarks/head_init.py: 10 classes, +0.20 ± 0.11 val accuracy over class_means)
    head_init: Literal['zero', 'class_means', 'random'] = hparam('zero', 'choice',
                                                                 choices=('zero', 'class_means', 'random'))
    zero_shot: bool = hparam(False, 'bool')
    zero_shot_images: int = hparam(250, 'int', minimum=1)
    zero_shot_pool: int = hparam(4, 'int', minimum=1)
    zero_shot_candidates: Literal['alpha', 'random', 'both'] = hparam('alpha', 'choice',
                                                                     choices=('alpha', 'random', 'both'))

    def __post_init__(self):
        if isinstance(self.temperature, dict):  # from a prior file
            self.temperature = TemperatureSchedule(**self.temperature)
        elif isinstance(self.temperature, tuple):
            self.temperature = TemperatureSchedule(*self.temperature)
        for f in fields(self):
            setattr(self, f.name, coerce(f.name, getattr(self, f.name), f.metadata))
        if self.temperature is not None and not isinstance(self.temperature, TemperatureSchedule):
            raise ValueError(f'temperature must be a TemperatureSchedule or a (start, end) pair, got '
                             f'{self.temperature!r}.')
        maml = self.meta_algorithm == 'maml'
        if self.dataset_conditioning and maml:
            raise ValueError("dataset_conditioning is trained with Reptile's task directions: use "
                             "meta_algorithm='reptile' (the default) with it.")
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
