"""One hyper-parameter schema: BaseStrategy's signature, the trial's validation and the nnictl search space
all come from BaseConfig's declarations."""

from __future__ import annotations

import inspect
import json
from dataclasses import fields
from pathlib import Path

import pytest

from nni_base import BaseStrategy
from nni_base.cli.trial import BASE_PARAMS, BASE_TRIAL_DEFAULTS, DEFAULT_PARAMS, search_space, validate_params
from nni_base.search.config import BaseConfig

ROOT = Path(__file__).resolve().parents[2]


def test_strategy_signature_is_the_config_schema():
    signature = inspect.signature(BaseStrategy.__init__).parameters
    for f in fields(BaseConfig):
        assert f.name in signature, f'BaseStrategy lacks the BaseConfig field {f.name}'
        assert signature[f.name].default == f.default, f.name


def test_strategy_hands_every_argument_to_the_config():
    strategy = BaseStrategy(inner_steps=7, sample_none=True, inner_batch_size=3, alpha_estimator='straight_through')
    assert (strategy.config.inner_steps, strategy.config.sample_none, strategy.config.inner_batch_size,
            strategy.config.alpha_estimator) == (7, True, 3, 'straight_through')


def test_shipped_search_space_file_is_generated_from_the_schema():
    shipped = json.loads((ROOT / 'search_spaces' / 'base_hparams.json').read_text())
    assert shipped == search_space(), 'regenerate with: python -m nni_base.cli.trial --search-space'


def test_trial_defaults_come_from_the_schema():
    for name in BASE_PARAMS:
        expected = BASE_TRIAL_DEFAULTS.get(name, BaseConfig.__dataclass_fields__[name].default)
        assert DEFAULT_PARAMS[name] == expected, name


@pytest.mark.parametrize(('name', 'bad'), [('samples_per_step', 0), ('inner_batch_size', 0), ('alpha_warmup_steps', -1),
                                           ('meta_algorithm', 'imaml'), ('hard', 'yes'), ('inner_lr', float('inf'))])
def test_config_checks_come_from_the_declarations(name, bad):
    with pytest.raises(ValueError, match=name):
        BaseConfig(**{name: bad})


def test_trial_validation_uses_the_same_checks_and_accepts_tuner_floats():
    assert validate_params({'inner_steps': 3.0})['inner_steps'] == 3
    with pytest.raises(ValueError, match="parameter 'inner_steps' must be >= 1"):
        validate_params({'inner_steps': 0})
