"""The one hyper-parameter schema of BASE (``BaseConfig``), where every search knob is declared once.

Sits between the space and the search algorithms: :class:`~nni_base.BaseStrategy` builds a
``BaseConfig`` from its arguments (:func:`resolve_config`), each search module reads it, a prior file
stores it, and the nnictl trial validates tuner values (:func:`coerce`) and writes its search-space file
(:func:`tunable_space`) from the same fields. The grouped objects the strategy takes
(:class:`SupernetConfig`, :class:`ConditioningConfig`, ...) are views onto those fields: each of their
fields names the ``BaseConfig`` field it stands for and takes its default from there.
"""

from __future__ import annotations

import functools
import json
import math
import os
import warnings
from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, ClassVar, Literal, TypeVar, cast

from .space.temperature import TemperatureSchedule

__all__ = [
    'without_flat_keywords',
    'AdaptationConfig',
    'BaseConfig',
    'ConditioningConfig',
    'DEFAULT_ARC_LEARNING_RATE',
    'GROUPS',
    'MetaTrainingConfig',
    'SupernetConfig',
    'ZeroShotConfig',
    'coerce',
    'grouped_arguments',
    'hparam',
    'resolve_config',
    'tunable_space',
]

#: Adam's step on alpha in single-task search and adaptation (``arc_learning_rate``). One step's alpha gradient
#: is small per logit (batch-mean loss, BatchNorm'd ops), so SGD at ``inner_lr_alpha`` or a small Adam step leaves
#: alpha uniform for hundreds of steps: every step trains another random sub-network and the derived cell ends near
#: chance. Like the meta-level alpha steps that do move alpha, the step must be logit-sized (the measurement:
#: docs/concepts.md, *Adaptation*).
DEFAULT_ARC_LEARNING_RATE = 0.3


def hparam(
    default: Any,
    kind: str,
    *,
    minimum: float | None = None,
    optional: bool = False,
    choices: tuple[str, ...] | None = None,
    tune: dict[str, Any] | None = None,
) -> Any:
    """Declare a hyper-parameter: its default, its kind (int/float/bool/choice/any) and its checks.

    ``tune`` is the NNI search-space entry (``{'_type': ..., '_value': ...}``) of a knob worth tuning.
    """
    return field(
        default=default,
        metadata={'kind': kind, 'minimum': minimum, 'optional': optional, 'choices': choices, 'tune': tune},
    )


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
    meta_algorithm: Literal['reptile', 'maml'] = hparam('reptile', 'choice', choices=('reptile', 'maml'))
    first_order: bool = hparam(False, 'bool')
    relaxation: Literal['gumbel', 'softmax'] = hparam('gumbel', 'choice', choices=('gumbel', 'softmax'))
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
    outer_optimizer_alpha: Literal['sgd', 'adam'] = hparam('adam', 'choice', choices=('sgd', 'adam'))
    alpha_warmup_steps: int = hparam(0, 'int', minimum=0)
    inner_batch_size: int | None = hparam(None, 'int', minimum=1, optional=True)
    parameterization: Literal['darts', 'slot'] = hparam('darts', 'choice', choices=('darts', 'slot'))
    freeze_alpha: bool = hparam(False, 'bool')
    alpha_estimator: Literal['paired', 'straight_through'] = hparam(
        'paired', 'choice', choices=('paired', 'straight_through')
    )
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
    conditioning_teacher: Literal['shadow', 'inner'] = hparam('shadow', 'choice', choices=('shadow', 'inner'))
    conditioning_centred: bool = hparam(True, 'bool')
    conditioning_standardise: bool = hparam(True, 'bool')
    conditioning_per_op: bool = hparam(True, 'bool')
    conditioning_features: Literal['pixels', 'stem'] = hparam('pixels', 'choice', choices=('pixels', 'stem'))
    # with a dataset-conditioned prior and a single-dataset evaluator: generate, do not train
    # a prior's classifier rebuilt for a dataset with another class count: how its rows start (search/head.py)
    # zero: measured best (benchmarks/results/head_init/)
    head_init: Literal['zero', 'class_means', 'random'] = hparam(
        'zero', 'choice', choices=('zero', 'class_means', 'random')
    )
    zero_shot: bool = hparam(False, 'bool')
    zero_shot_images: int = hparam(250, 'int', minimum=1)
    zero_shot_pool: int = hparam(4, 'int', minimum=1)
    zero_shot_candidates: Literal['alpha', 'random', 'both'] = hparam(
        'alpha', 'choice', choices=('alpha', 'random', 'both')
    )
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


# ---- grouped views ----------------------------------------------------------------------------------------------
def _view(flat: str) -> Any:
    """A grouped field standing for ``BaseConfig.<flat>``: same default, same checks."""
    return field(default=BaseConfig.__dataclass_fields__[flat].default, metadata={'flat': flat})


_Group = TypeVar('_Group', bound='ConfigGroup')


class ConfigGroup:
    """Base of the grouped views. Remembers which fields the caller set: with a prior, only those override it."""

    #: the ``BaseConfig`` switch that passing the group turns on (None: the group has none)
    switch: ClassVar[str | None] = None
    _given: frozenset[str]

    def __post_init__(self) -> None:
        for f in fields(self):  # type: ignore[arg-type]
            declared = BaseConfig.__dataclass_fields__[f.metadata['flat']].metadata
            object.__setattr__(self, f.name, coerce(f'{type(self).__name__}.{f.name}', getattr(self, f.name), declared))

    def flat(self, *, given_only: bool = False) -> dict[str, Any]:
        """``{BaseConfig field: value}`` of this group (only the fields the caller set, with ``given_only``)."""
        return {
            f.metadata['flat']: getattr(self, f.name)
            for f in fields(self)  # type: ignore[arg-type]
            if not given_only or f.name in self._given
        }

    @classmethod
    def from_config(cls: type[_Group], config: BaseConfig | Mapping[str, Any]) -> _Group:
        """The group's view of a flat config (a ``BaseConfig`` or a prior's stored dict)."""
        values = config if isinstance(config, Mapping) else vars(config)
        return cls(
            **{
                f.name: values[f.metadata['flat']]
                for f in fields(cls)  # type: ignore[arg-type]
                if f.metadata['flat'] in values
            }
        )


def _group(cls: type[_Group]) -> type[_Group]:
    """Make ``cls`` a frozen keyword-only dataclass that records the fields passed to it."""
    cls = dataclass(frozen=True, kw_only=True)(cls)
    init = cls.__init__

    @functools.wraps(init)
    def __init__(self, **kwargs: Any) -> None:
        object.__setattr__(self, '_given', frozenset(kwargs))
        init(self, **kwargs)

    cls.__init__ = __init__  # type: ignore[method-assign]
    return cls


@_group
class SupernetConfig(ConfigGroup):
    """How the supernet samples and computes an architecture (the cells' parameterisation and estimator)."""

    parameterization: Literal['darts', 'slot'] = _view('parameterization')
    relaxation: Literal['gumbel', 'softmax'] = _view('relaxation')
    hard: bool = _view('hard')
    sparse: bool = _view('sparse')
    alpha_estimator: Literal['paired', 'straight_through'] = _view('alpha_estimator')
    sample_none: bool = _view('sample_none')
    samples_per_step: int = _view('samples_per_step')
    pool_batchnorm: bool = _view('pool_batchnorm')
    channels_last: bool = _view('channels_last')


@_group
class MetaTrainingConfig(ConfigGroup):
    """Details of meta-training (an ``EpisodicClassification`` evaluator)."""

    first_order: bool = _view('first_order')
    outer_optimizer_alpha: Literal['sgd', 'adam'] = _view('outer_optimizer_alpha')
    alpha_warmup_steps: int = _view('alpha_warmup_steps')
    inner_batch_size: int | None = _view('inner_batch_size')
    inner_grad_clip: float | None = _view('inner_grad_clip')
    average_alpha_tasks: int = _view('average_alpha_tasks')


@_group
class AdaptationConfig(ConfigGroup):
    """Details of single-task search and adaptation (any other Lightning evaluator)."""

    freeze_architecture_after: int | None = _view('freeze_architecture_after')
    bn_recalibration_batches: int = _view('bn_recalibration_batches')
    prior_alpha_scale: float = _view('prior_alpha_scale')
    prior_trust_steps: int = _view('prior_trust_steps')


@_group
class ConditioningConfig(ConfigGroup):
    """The dataset-conditioned prior (MetaD2A-style encoder, generator and performance predictor)."""

    switch = 'dataset_conditioning'
    lr: float = _view('conditioning_lr')
    alpha_lr: float | None = _view('conditioning_alpha_lr')
    teacher: Literal['shadow', 'inner'] = _view('conditioning_teacher')
    centred: bool = _view('conditioning_centred')
    standardise: bool = _view('conditioning_standardise')
    per_op: bool = _view('conditioning_per_op')
    features: Literal['pixels', 'stem'] = _view('conditioning_features')
    predictor_samples: int = _view('predictor_samples')
    predictor_steps: int = _view('predictor_steps')
    predictor_centred: bool = _view('predictor_centred')


@_group
class ZeroShotConfig(ConfigGroup):
    """Zero-shot generation from a dataset-conditioned prior, inside an experiment."""

    switch = 'zero_shot'
    images: int = _view('zero_shot_images')
    pool: int = _view('zero_shot_pool')
    candidates: Literal['alpha', 'random', 'both'] = _view('zero_shot_candidates')
    database: str | None = _view('zero_shot_database')


#: BaseStrategy's grouped arguments, by argument name.
GROUPS: dict[str, type[ConfigGroup]] = {
    'supernet': SupernetConfig,
    'meta_training': MetaTrainingConfig,
    'adaptation': AdaptationConfig,
    'conditioning': ConditioningConfig,
    'zero_shot': ZeroShotConfig,
}

#: Where each grouped BaseConfig field is set: ``{flat name: (argument, group field or None for the switch)}``.
GROUPED_FIELDS: dict[str, tuple[str, str | None]] = {
    **{f.metadata['flat']: (arg, f.name) for arg, cls in GROUPS.items() for f in fields(cls)},  # type: ignore[arg-type]
    **{cls.switch: (arg, None) for arg, cls in GROUPS.items() if cls.switch is not None},
}


#: Fields a prior's stored settings never set: what one run does with a prior.
_RUN_ONLY = frozenset({'zero_shot', 'prior_alpha_scale', 'prior_trust_steps'})


def resolve_config(arguments: Mapping[str, Any], stored: Mapping[str, Any] | None = None) -> BaseConfig:
    """The ``BaseConfig`` of a strategy's explicit ``arguments`` over ``stored`` (a prior's config) or the defaults.

    ``arguments`` holds flat fields and grouped arguments (a group object, or ``True``/``False`` for the groups
    with a switch); of a group object only the fields its caller set override ``stored``. The zero-shot switch and
    ``prior_alpha_scale`` are never taken from ``stored``: they say what a run does, not how the prior was made.
    """
    values = BaseConfig.defaults()
    if stored is not None:
        values.update({k: v for k, v in stored.items() if k in values and k not in _RUN_ONLY})
    for name, value in arguments.items():
        cls = GROUPS.get(name)
        if cls is None:
            values[name] = value
            continue
        if value is None:  # the group's defaults (or the stored values)
            continue
        if isinstance(value, cls):
            flat = value.flat(given_only=True) | ({cls.switch: True} if cls.switch else {})
        elif cls.switch is not None and isinstance(value, bool):
            flat = {cls.switch: value}
        else:
            kinds = f'a {cls.__name__}' + (' or True/False' if cls.switch else '')
            raise TypeError(f'{name}= takes {kinds}, got {value!r}.')
        for key in flat:
            if key in arguments and key != name:
                raise TypeError(f'{key}= and {name}= both set {key}: pass it once, in {name}=.')
        values.update(flat)
    if stored is None and values['prior_alpha_scale'] != 1:
        raise ValueError(
            f'prior_alpha_scale={values["prior_alpha_scale"]} scales the architecture logits of a prior, but no prior '
            'was given: pass prior= a meta-trained prior file, or leave prior_alpha_scale at 1.'
        )
    return BaseConfig(**values)


def grouped_arguments(flat: Mapping[str, Any]) -> dict[str, Any]:
    """BaseStrategy's arguments for flat ``BaseConfig`` values (as tuners send them), each grouped field in its
    group object. A group with a switch is passed only when its switch is in ``flat``: ``False`` when off (its
    other fields are then unused and left out), its object when on."""
    arguments = {name: value for name, value in flat.items() if name not in GROUPED_FIELDS}
    for arg, cls in GROUPS.items():
        values = {
            group_field: flat[name]
            for name, (a, group_field) in GROUPED_FIELDS.items()
            if a == arg and group_field is not None and name in flat
        }
        if cls.switch is None:
            if values:
                arguments[arg] = cls(**values)
        elif cls.switch in flat:
            arguments[arg] = cls(**values) if flat[cls.switch] else False
    return arguments


def without_flat_keywords(kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` less the old flat spellings of grouped options (``dataset_conditioning=``, ...), each with a
    DeprecationWarning naming the new one. BaseStrategy reads their values from its remembered arguments."""
    for name in [k for k in kwargs if k in GROUPED_FIELDS]:
        arg, group_field = GROUPED_FIELDS[name]
        warnings.warn(
            f'{name}= is now {arg}='
            + ('True' if group_field is None else f'{GROUPS[arg].__name__}({group_field}=...)'),
            DeprecationWarning,
            stacklevel=4,  # BaseStrategy(...) -> its argument-remembering wrapper -> __init__ -> here
        )
    return {k: v for k, v in kwargs.items() if k not in GROUPED_FIELDS}
