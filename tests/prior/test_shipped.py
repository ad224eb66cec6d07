"""Shipped priors: a name resolves to the package's file (a real file of that name wins), unknown names and a
missing shipped file are refused naming the fix, and the shipped prior adapts to a 3- and a 37-class dataset."""

from __future__ import annotations

import logging
from pathlib import Path

import nni
import pytest
import torch
from nni.nas.evaluator.pytorch import Classification
from nni.nas.experiment import NasExperiment
from torch.utils.data import DataLoader, TensorDataset

from nni_base import BaseStrategy
from nni_base.database.spec import DATABASE_SPECS
from nni_base.prior import SHIPPED_PRIORS, load_prior, prior_space, resolve_prior_path, shipped_prior_path
from nni_base.prior import shipped as shipped_module
from nni_base.resources import resource_path

SHIPPED = shipped_prior_path('default')
needs_shipped = pytest.mark.skipif(not SHIPPED.is_file(), reason='the shipped prior is not built in this checkout')


def test_a_name_resolves_to_the_package_file_and_a_path_never_does(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_prior_path('default') == resource_path('priors', 'default.pt')
    assert resolve_prior_path('runs/default') == Path('runs/default')
    (tmp_path / 'default').write_bytes(b'')  # a file called like a shipped prior, where the user works: it wins
    assert resolve_prior_path('default') == Path('default')


def test_an_unknown_name_is_refused_naming_the_shipped_priors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"defualt does not exist and is not a shipped prior \('default'\)"):
        load_prior('defualt')
    with pytest.raises(FileNotFoundError, match=r'does not exist\. Name a shipped prior') as refused:
        load_prior('runs/prior.pt')
    assert 'not a shipped prior' not in str(refused.value)  # a path is not read as a misspelled name


def test_a_missing_shipped_file_names_the_command_that_builds_it(tmp_path, monkeypatch):
    monkeypatch.setattr(shipped_module, 'resource_path', lambda *parts: tmp_path.joinpath(*parts))
    with pytest.raises(FileNotFoundError, match=r'python -m nni_base\.cli\.shipped_prior --name default'):
        load_prior('default')
    with pytest.raises(KeyError, match='not a shipped prior'):
        shipped_prior_path('mine')


def test_every_shipped_name_is_a_name():
    assert all(shipped_module.is_prior_name(name) for name in SHIPPED_PRIORS)


@needs_shipped
def test_the_shipped_prior_says_how_it_was_made_and_was_meta_trained_on_every_v2_family():
    prior = load_prior('default')
    made = prior['meta']['provenance']
    assert made['families'] == list(DATABASE_SPECS[2].families)
    assert made['command'].startswith('python -m nni_base.cli.shipped_prior')
    assert made['meta_steps'] == prior['meta']['steps'] > 0 and made['seconds'] > 0
    assert {'seed', 'tasks_per_step', 'machine', 'date', 'threads'} <= set(made)


@needs_shipped
@pytest.mark.parametrize('classes', [3, 37])
def test_the_shipped_prior_adapts_by_name_to_any_class_count(classes, caplog):
    g = torch.Generator().manual_seed(classes)
    x, y = torch.rand(2 * classes, 3, 16, 16, generator=g), torch.arange(2 * classes) % classes
    loader = nni.trace(DataLoader)(TensorDataset(x, y), batch_size=16)
    evaluator = Classification(
        num_classes=classes,
        train_dataloaders=loader,
        val_dataloaders=loader,
        max_epochs=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        logger=False,
        enable_checkpointing=False,
    )
    strategy = BaseStrategy(prior='default')
    assert strategy.prior_path == SHIPPED
    with caplog.at_level(logging.INFO, logger='nni_base'):
        exp = NasExperiment(prior_space('default', num_classes=classes), evaluator, strategy)
        try:
            exp.run()
            sample = exp.export_top_models(formatter='dict')[0]
        finally:
            exp.stop()
    assert strategy.rebuilt_heads == ['classifier']
    assert prior_space('default', num_classes=classes).freeze(sample)(x[:2]).shape == (2, classes)


@needs_shipped
def test_the_docs_card_is_generated_from_the_shipped_file():
    from nni_base.cli.shipped_prior import card_path, provenance_card

    assert card_path(SHIPPED).read_text() == provenance_card(load_prior('default')['meta']['provenance'])
