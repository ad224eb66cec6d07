"""The grouped arguments :class:`~nni_base.BaseStrategy` takes (:class:`SupernetConfig`, :class:`ConditioningConfig`,
...) and how they, flat fields and a prior's stored settings resolve into one :class:`~nni_base.config.BaseConfig`.

Each group is a view onto the schema: its fields name the ``BaseConfig`` field they stand for and take default
and checks from there (:mod:`nni_base.config` stays the one declaration of every knob).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, TypeVar

from .config import (
    AlphaEstimator,
    BaseConfig,
    ConditioningFeatures,
    ConditioningTeacher,
    HeadInit,
    OuterOptimizer,
    Parameterization,
    Relaxation,
    ZeroShotCandidates,
)
from .hparams import coerce

__all__ = [
    'GROUPED_FIELDS',
    'GROUPS',
    'AdaptationConfig',
    'ConditioningConfig',
    'ConfigGroup',
    'MetaTrainingConfig',
    'SupernetConfig',
    'ZeroShotConfig',
    'grouped_arguments',
    'resolve_config',
    'without_flat_keywords',
]


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

    parameterization: Parameterization = _view('parameterization')
    relaxation: Relaxation = _view('relaxation')
    hard: bool = _view('hard')
    sparse: bool = _view('sparse')
    alpha_estimator: AlphaEstimator = _view('alpha_estimator')
    sample_none: bool = _view('sample_none')
    samples_per_step: int = _view('samples_per_step')
    pool_batchnorm: bool = _view('pool_batchnorm')
    channels_last: bool = _view('channels_last')


@_group
class MetaTrainingConfig(ConfigGroup):
    """Details of meta-training (an ``EpisodicClassification`` evaluator)."""

    #: inner steps on held-out tasks (validation, alpha averaging); None: ``inner_steps``
    adapt_steps: int | None = _view('adapt_steps')
    first_order: bool = _view('first_order')
    outer_optimizer_alpha: OuterOptimizer = _view('outer_optimizer_alpha')
    alpha_warmup_steps: int = _view('alpha_warmup_steps')
    inner_batch_size: int | None = _view('inner_batch_size')
    inner_grad_clip: float | None = _view('inner_grad_clip')
    average_alpha_tasks: int = _view('average_alpha_tasks')


@_group
class AdaptationConfig(ConfigGroup):
    """Details of single-task search and adaptation (any other Lightning evaluator)."""

    #: how a classifier rebuilt for another class count than the prior's starts: 'zero', 'class_means', 'random'
    head_init: HeadInit = _view('head_init')
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
    teacher: ConditioningTeacher = _view('conditioning_teacher')
    centred: bool = _view('conditioning_centred')
    standardise: bool = _view('conditioning_standardise')
    per_op: bool = _view('conditioning_per_op')
    features: ConditioningFeatures = _view('conditioning_features')
    predictor_samples: int = _view('predictor_samples')
    predictor_steps: int = _view('predictor_steps')
    predictor_centred: bool = _view('predictor_centred')


@_group
class ZeroShotConfig(ConfigGroup):
    """Zero-shot generation from a dataset-conditioned prior, inside an experiment."""

    switch = 'zero_shot'
    images: int = _view('zero_shot_images')
    pool: int = _view('zero_shot_pool')
    candidates: ZeroShotCandidates = _view('zero_shot_candidates')
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
    DeprecationWarning naming the new one. BaseStrategy reads their values from its keyword arguments."""
    for name in [k for k in kwargs if k in GROUPED_FIELDS]:
        arg, group_field = GROUPED_FIELDS[name]
        warnings.warn(
            f'{name}= is now {arg}='
            + ('True' if group_field is None else f'{GROUPS[arg].__name__}({group_field}=...)'),
            DeprecationWarning,
            stacklevel=3,  # BaseStrategy(...) -> its __init__ -> here
        )
    return {k: v for k, v in kwargs.items() if k not in GROUPED_FIELDS}
