"""Options the README promises for BaseStrategy: temperature schedule, adapt_steps, save_prior/load_strategy, the
alpha metrics, and resume_from refusing a checkpoint that carries code."""

from __future__ import annotations

import math
import pickle

import pytest
import torch
from pytorch_lightning.callbacks import Callback, ModelCheckpoint

from nni_base import (
    BaseStrategy,
    EpisodicClassification,
    MetaTrainingConfig,
    SupernetConfig,
    TemperatureSchedule,
    load_prior,
)
from nni_base.api import build_supernet, load_strategy
from nni_base.search import loop
from tests.helpers import digits_tasks, episodic_evaluator, run, tiny_space

STEPS = 3


# ---- temperature ---------------------------------------------------------------------------------------------------
def test_temperature_defaults_are_the_documented_ones():
    assert TemperatureSchedule() == TemperatureSchedule(5.0, 0.5, 'exponential')
    # README: "default: constant 1.0 for hard samples, 5.0 -> 0.5 exponential for relaxed ones"
    assert BaseStrategy().config.temperature == TemperatureSchedule(1.0, 1.0, 'constant')
    relaxed = BaseStrategy(supernet=SupernetConfig(hard=False)).config.temperature
    assert relaxed == TemperatureSchedule(5.0, 0.5, 'exponential')


def test_temperature_as_start_end_pair():
    schedule = BaseStrategy(temperature=(3.0, 0.3)).config.temperature
    assert schedule == TemperatureSchedule(3.0, 0.3, 'exponential')
    assert schedule(0, 11) == pytest.approx(3.0)
    assert schedule(10, 11) == pytest.approx(0.3)
    assert schedule(5, 11) == pytest.approx(math.sqrt(3.0 * 0.3))  # geometric: halfway in log space
    assert schedule(50, 11) == pytest.approx(0.3)  # stays at the end
    linear = TemperatureSchedule(3.0, 0.3, 'linear')
    assert linear(5, 11) == pytest.approx(1.65)
    assert TemperatureSchedule(2.0, 0.1, 'constant')(7, 11) == 2.0
    with pytest.raises(ValueError, match='positive'):
        BaseStrategy(temperature=(1.0, 0.0))


class _Record(Callback):
    """The temperature every training step ran at."""

    def __init__(self):
        self.taus: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.taus.append(pl_module.cells()[0].tau)


@pytest.fixture(scope='module')
def meta_run(tmp_path_factory):
    """A tiny relaxed meta-training with a (start, end) temperature, adapt_steps, and every adapt() call recorded."""
    out = tmp_path_factory.mktemp('options')
    train, test = digits_tasks(shots=2, queries=2)
    record = _Record()
    calls: list[tuple[str, int]] = []
    original = loop.adapt

    def spy(self, task, steps, state, *, where, **kwargs):
        calls.append((where, steps))
        return original(self, task, steps, state, where=where, **kwargs)

    strategy = BaseStrategy(
        inner_steps=2,
        inner_lr=0.07,
        inner_lr_alpha=0.3,
        supernet=SupernetConfig(hard=False),
        temperature=(4.0, 1.0),
        seed=0,
        meta_training=MetaTrainingConfig(adapt_steps=1, average_alpha_tasks=2),
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(loop, 'adapt', spy)
        run(tiny_space(), episodic_evaluator(train, test, steps_per_epoch=STEPS, seed=0, callbacks=[record]), strategy)
    return strategy, record.taus, calls, out


def test_temperature_follows_the_schedule_in_meta_training(meta_run):
    _, taus, _, _ = meta_run
    assert taus == pytest.approx([4.0, 2.0, 1.0])  # exponential 4 -> 1 over 3 steps


def test_adapt_steps_sets_held_out_adaptation_and_inner_steps_the_meta_steps(meta_run):
    _, _, calls, _ = meta_run
    by_kind: dict[str, set[int]] = {}
    for where, steps in calls:
        kind = 'validation' if where.startswith('validation') else 'averaging' if 'averaging' in where else 'meta'
        by_kind.setdefault(kind, set()).add(steps)
    assert by_kind == {'meta': {2}, 'validation': {1}, 'averaging': {1}}, calls


def test_adapt_steps_zero_means_no_adaptation_on_held_out_tasks():
    train, test = digits_tasks(shots=2, queries=2)
    strategy = BaseStrategy(inner_steps=1, meta_training=MetaTrainingConfig(adapt_steps=0), seed=0)
    run(tiny_space(), episodic_evaluator(train, test, steps_per_epoch=1, seed=0), strategy)
    metrics = strategy.oneshot_module.trainer.callback_metrics
    assert float(metrics['val_acc']) == float(metrics['val_acc_before'])


def test_alpha_metrics_are_the_entropy_and_max_probability_of_alpha(meta_run):
    strategy, _, _, _ = meta_run
    logged = strategy.oneshot_module.trainer.callback_metrics
    for label, alpha in strategy.oneshot_module.alphas().items():
        p = torch.softmax(alpha.detach().double(), -1)
        entropy = float(-(p * p.log()).sum(-1).mean())
        assert float(logged[f'alpha_entropy/{label}']) == pytest.approx(entropy, abs=1e-5)
        assert float(logged[f'alpha_max_prob/{label}']) == pytest.approx(float(p.max(-1).values.mean()), abs=1e-5)
        assert entropy < math.log(8) - 1e-4  # alpha moved off its near-uniform start


# ---- save_prior / building from a prior ------------------------------------------------------------------------
def test_save_prior_writes_the_current_weights_and_alpha(meta_run):
    strategy, _, _, out = meta_run
    path = strategy.save_prior(out / 'saved.pt')
    prior = load_prior(path)
    for label, alpha in strategy.oneshot_module.alphas().items():
        assert torch.equal(prior['alpha'][label], alpha.detach().cpu())
    model_state = strategy.oneshot_module.training_module.model.state_dict()
    weights = {k: v for k, v in prior['state_dict'].items() if k in model_state}
    assert len(weights) > 10
    assert all(torch.equal(v, model_state[k]) for k, v in weights.items())
    assert prior['meta']['steps'] == STEPS and prior['config']['inner_lr'] == 0.07


def test_a_priors_stored_settings_are_the_defaults_and_explicit_arguments_win(meta_run):
    strategy, _, _, out = meta_run
    path = strategy.save_prior(out / 'for_load.pt')
    loaded = BaseStrategy(prior=path)
    config = loaded.config
    assert (config.inner_steps, config.inner_lr, config.inner_lr_alpha, config.adapt_steps, config.hard) == (
        2,
        0.07,
        0.3,
        1,
        False,
    )
    assert config.temperature == TemperatureSchedule(4.0, 1.0, 'exponential')
    assert loaded.prior_path == path
    overridden = BaseStrategy(prior=path, inner_steps=5, supernet=SupernetConfig(sample_none=True)).config
    assert (overridden.inner_steps, overridden.sample_none) == (5, True)
    # inside a group, the fields not passed keep the prior's values
    assert (overridden.inner_lr, overridden.hard) == (0.07, False)
    assert BaseStrategy(prior=path, supernet=SupernetConfig(hard=True)).config.hard is True
    with pytest.warns(DeprecationWarning, match='BaseStrategy'):
        assert load_strategy(path, inner_steps=4).config.inner_steps == 4
    # The supernet it builds starts from the prior's alpha, not a fresh one.
    supernet = build_supernet(tiny_space(), loaded)
    for label, alpha in supernet.alphas().items():
        assert torch.equal(alpha.detach(), strategy.oneshot_module.alphas()[label].detach())


# ---- resume_from and a checkpoint that carries code ----------------------------------------------------------------
class _WritesFile:
    """Unpickles to a call of ``open(path, 'w')``: stands for any code a crafted checkpoint could run."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, 'w')


def test_resume_from_refuses_a_checkpoint_that_carries_code(tmp_path):
    train, _ = digits_tasks(shots=2, queries=2)

    def evaluator(folder):
        return EpisodicClassification(
            train,
            None,
            tasks_per_step=1,
            steps_per_epoch=1,
            max_epochs=1,
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[ModelCheckpoint(dirpath=folder, save_last=True)],
        )

    run(tiny_space(), evaluator(tmp_path / 'ckpt'), BaseStrategy(inner_steps=1, seed=0))
    checkpoint = tmp_path / 'ckpt' / 'last.ckpt'
    content = torch.load(checkpoint, weights_only=False)  # our own file: trusted here
    marker = tmp_path / 'code-ran'
    content['callbacks'] = {'innocent-looking': _WritesFile(marker)}
    torch.save(content, checkpoint)

    with pytest.raises(pickle.UnpicklingError, match='(?i)weights.only'):
        run(tiny_space(), evaluator(tmp_path / 'resumed'), BaseStrategy(inner_steps=1, seed=0, resume_from=checkpoint))
    assert not marker.exists(), 'resuming executed code from the checkpoint'
