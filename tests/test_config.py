"""One hyper-parameter schema: BaseStrategy's signature, the trial's validation and the nnictl search space
all come from BaseConfig's declarations."""

from __future__ import annotations

import inspect
import json
from dataclasses import fields
from pathlib import Path

import pytest

from nni_base import BaseStrategy, ConditioningConfig, MetaTrainingConfig, SupernetConfig
from nni_base.cli.trial import BASE_PARAMS, BASE_TRIAL_DEFAULTS, DEFAULT_PARAMS, search_space, validate_params
from nni_base.config import BaseConfig
from nni_base.config_groups import GROUPS, grouped_arguments, resolve_config
from nni_base.hparams import Default

ROOT = Path(__file__).resolve().parents[1]


def test_strategy_signature_and_groups_cover_the_config_schema_once():
    signature = inspect.signature(BaseStrategy.__init__).parameters
    core = [f.name for f in fields(BaseConfig) if f.name in signature and f.name not in GROUPS]
    grouped = [f.metadata['flat'] for cls in GROUPS.values() for f in fields(cls)]
    switches = [cls.switch for cls in GROUPS.values() if cls.switch]
    assert sorted(core + grouped + switches) == sorted(f.name for f in fields(BaseConfig))
    assert len(core + grouped + switches) == len(set(core + grouped + switches))
    for name in core:  # a marked default: the strategy tells "not passed" from the same value passed
        assert isinstance(signature[name].default, Default), name
        assert signature[name].default.value == BaseConfig.__dataclass_fields__[name].default, name
    for cls in GROUPS.values():  # the grouped views take their defaults from the schema
        for f in fields(cls):
            assert f.default == BaseConfig.__dataclass_fields__[f.metadata['flat']].default, (cls, f.name)
    assert len(signature) <= 21


def test_with_a_prior_a_passed_default_value_overrides_it_and_an_omitted_argument_does_not(tmp_path):
    import torch

    from nni_base.api import build_supernet
    from nni_base.prior import build_prior, save_prior
    from tests.helpers import tiny_space

    made = BaseStrategy(inner_steps=3, conditioning=False)
    net = build_supernet(tiny_space(), made)
    torch.manual_seed(0)
    path = save_prior(
        build_prior(net.training_module.model, net.alphas(), config=made.config.to_dict()), tmp_path / 'p.pt'
    )
    default = BaseConfig.__dataclass_fields__['inner_steps'].default
    assert default != 3
    assert BaseStrategy(prior=path).config.inner_steps == 3
    assert BaseStrategy(prior=path, inner_steps=default).config.inner_steps == default


def test_strategy_hands_every_argument_to_the_config():
    strategy = BaseStrategy(
        inner_steps=7,
        supernet=SupernetConfig(sample_none=True, alpha_estimator='straight_through'),
        meta_training=MetaTrainingConfig(inner_batch_size=3),
        conditioning=ConditioningConfig(lr=0.02, features='stem'),
    )
    c = strategy.config
    assert (c.inner_steps, c.sample_none, c.inner_batch_size, c.alpha_estimator) == (7, True, 3, 'straight_through')
    assert (c.dataset_conditioning, c.conditioning_lr, c.conditioning_features) == (True, 0.02, 'stem')
    assert SupernetConfig.from_config(c).sample_none and ConditioningConfig.from_config(c).lr == 0.02


def test_old_flat_spellings_warn_and_still_set_the_field():
    with pytest.warns(DeprecationWarning, match=r'sample_none= is now supernet=SupernetConfig\(sample_none=...\)'):
        assert BaseStrategy(sample_none=True).config.sample_none
    with pytest.warns(DeprecationWarning, match='dataset_conditioning= is now conditioning=True'):
        assert BaseStrategy(dataset_conditioning=True).config.dataset_conditioning
    with pytest.raises(TypeError, match='pass it once'), pytest.warns(DeprecationWarning):
        BaseStrategy(sample_none=True, supernet=SupernetConfig(sample_none=False))


def test_grouped_objects_check_their_values_and_their_type():
    with pytest.raises(ValueError, match='SupernetConfig.samples_per_step must be >= 1'):
        SupernetConfig(samples_per_step=0)
    with pytest.raises(TypeError, match='supernet= takes a SupernetConfig'):
        BaseStrategy(supernet=ConditioningConfig())
    assert BaseStrategy(zero_shot=False, conditioning=False).config.dataset_conditioning is False


def test_grouped_arguments_of_flat_tuner_values():
    arguments = grouped_arguments(
        {'inner_steps': 3, 'first_order': True, 'dataset_conditioning': False, 'zero_shot_pool': 2}
    )
    assert arguments == {'inner_steps': 3, 'meta_training': MetaTrainingConfig(first_order=True), 'conditioning': False}
    assert resolve_config(grouped_arguments({'dataset_conditioning': True, 'predictor_steps': 3})).predictor_steps == 3


def test_shipped_search_space_file_is_generated_from_the_schema():
    shipped = json.loads((ROOT / 'search_spaces' / 'base_hparams.json').read_text())
    assert shipped == search_space(), 'regenerate with: python -m nni_base.cli.trial --search-space'


def test_trial_defaults_come_from_the_schema():
    for name in BASE_PARAMS:
        expected = BASE_TRIAL_DEFAULTS.get(name, BaseConfig.__dataclass_fields__[name].default)
        assert DEFAULT_PARAMS[name] == expected, name


@pytest.mark.parametrize(
    ('name', 'bad'),
    [
        ('samples_per_step', 0),
        ('inner_batch_size', 0),
        ('alpha_warmup_steps', -1),
        ('meta_algorithm', 'imaml'),
        ('hard', 'yes'),
        ('inner_lr', float('inf')),
    ],
)
def test_config_checks_come_from_the_declarations(name, bad):
    with pytest.raises(ValueError, match=name):
        BaseConfig(**{name: bad})


def test_trial_validation_uses_the_same_checks_and_accepts_tuner_floats():
    assert validate_params({'inner_steps': 3.0})['inner_steps'] == 3
    with pytest.raises(ValueError, match="parameter 'inner_steps' must be >= 1"):
        validate_params({'inner_steps': 0})


def test_every_choice_list_is_declared_once_as_a_literal_alias():
    import typing

    import nni_base.config as config_module

    hints = typing.get_type_hints(BaseConfig)
    for f in fields(BaseConfig):
        if f.metadata['kind'] != 'choice':
            continue
        alias = getattr(config_module, f.type)  # the field's type is the alias's name, not a Literal spelt again
        assert typing.get_args(alias) == f.metadata['choices'] == typing.get_args(hints[f.name]), f.name
    for group in GROUPS.values():
        group_hints = typing.get_type_hints(group)
        for g in fields(group):
            flat = g.metadata['flat']
            if BaseConfig.__dataclass_fields__[flat].metadata['kind'] == 'choice':
                assert group_hints[g.name] == hints[flat], (group.__name__, g.name)
