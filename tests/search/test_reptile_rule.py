"""One Reptile meta-step follows its update equation exactly, and every query is measured in train mode.

The step is recorded through the real Lightning path (NasExperiment, one meta-step of two tasks): the shared
tensors before the step and each task's adapted tensors. Then, with ``g = shared - mean(adapted)``:

* weights: ``shared - outer_lr * g`` (SGD; ``outer_lr = 1`` lands exactly on the mean);
* α with ``outer_optimizer_alpha='sgd'``: ``shared - outer_lr_alpha * g``;
* α with Adam (the default): Adam's first step, ``shared - outer_lr_alpha * g / (|g| + eps)``;
* BatchNorm statistics: the task mean itself.
"""

from __future__ import annotations

import pytest
import torch

from nni_base import BaseStrategy, MetaTrainingConfig
from nni_base.search import loop
from nni_base.search import maml as maml_module
from nni_base.search.meta_update import ModelState
from nni_base.search.reptile import ReptileModule
from tests.helpers import digits_tasks, episodic_evaluator, run, tiny_space


def _record_one_meta_step(monkeypatch, **strategy_kwargs):
    record: dict = {'adapted': []}
    step, adapted = ReptileModule.training_step, ReptileModule.task_adapted

    def training_step(self, batch, batch_idx):
        record['before'] = ModelState(self.training_module.model).snapshot()
        return step(self, batch, batch_idx)

    def task_adapted(self, state):
        tensors = adapted(self, state)
        record['adapted'].append([t.detach().clone() for t in tensors])
        return tensors

    monkeypatch.setattr(ReptileModule, 'training_step', training_step)
    monkeypatch.setattr(ReptileModule, 'task_adapted', task_adapted)
    train, _ = digits_tasks(shots=2, queries=2)
    strategy = BaseStrategy(inner_steps=2, seed=0, **strategy_kwargs)
    run(tiny_space(), episodic_evaluator(train, steps_per_epoch=1), strategy)
    module = strategy.oneshot_module
    assert module.trainer.global_step == 1 and len(record['adapted']) == 2  # one meta-step, two tasks
    state = ModelState(module.training_module.model)
    arch = {id(p) for p in module.arch_parameters()}
    kinds = ['alpha' if id(p) in arch else 'weight' for p in state.params] + ['buffer'] * len(state.buffers)
    after = [t.detach().clone() for t in state.tensors]
    mean = [sum(ts) / len(ts) for ts in zip(*record['adapted'])]
    return kinds, record['before'], mean, after


def _check(kinds, before, mean, after, expected_of) -> None:
    moved = {'alpha': 0, 'weight': 0, 'buffer': 0}
    for kind, b, m, a in zip(kinds, before, mean, after):
        expected = expected_of(kind, b, m)
        assert torch.allclose(a, expected, atol=1e-6, rtol=1e-5), f'{kind}: off its update equation'
        moved[kind] += int(not torch.equal(m, b))
    assert all(moved.values()), f'the tasks did not move every kind of tensor: {moved}'


def test_reptile_step_at_outer_lr_1_lands_on_the_mean_of_the_adapted_tensors(monkeypatch):
    kinds, before, mean, after = _record_one_meta_step(
        monkeypatch, outer_lr=1.0, outer_lr_alpha=1.0, meta_training=MetaTrainingConfig(outer_optimizer_alpha='sgd')
    )
    _check(kinds, before, mean, after, lambda kind, b, m: m)


def test_reptile_step_moves_weights_and_alpha_by_their_own_step_sizes(monkeypatch):
    kinds, before, mean, after = _record_one_meta_step(
        monkeypatch, outer_lr=0.5, outer_lr_alpha=0.25, meta_training=MetaTrainingConfig(outer_optimizer_alpha='sgd')
    )
    lr = {'weight': 0.5, 'alpha': 0.25}
    _check(kinds, before, mean, after, lambda kind, b, m: m if kind == 'buffer' else b - lr[kind] * (b - m))


def test_reptile_adam_step_on_alpha_is_adams_first_step(monkeypatch):
    kinds, before, mean, after = _record_one_meta_step(monkeypatch, outer_lr=0.5, outer_lr_alpha=0.15)

    def expected(kind, b, m):
        if kind == 'buffer':
            return m
        g = b - m
        if kind == 'weight':
            return b - 0.5 * g
        return b - 0.15 * g / (g.abs() + 1e-8)  # bias-corrected m and v of step 1 are g and g**2

    _check(kinds, before, mean, after, expected)


@pytest.mark.parametrize('meta_algorithm', ['reptile', 'maml'])
def test_every_query_measurement_runs_in_train_mode(monkeypatch, meta_algorithm):
    """Accuracy before and after adaptation, in training and in validation: batch statistics, never running ones.

    Lightning puts the model in eval mode for validation; a measurement taken before anything switches it back
    would score the first held-out task with BatchNorm's running statistics.
    """
    seen: list[tuple[str, bool]] = []
    real = loop.query_metrics

    def recording(module, task):
        model = module.training_module.model
        norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        assert norms, 'the space has no BatchNorm: the test would check nothing'
        where = 'validation' if module.trainer.validating or module.trainer.sanity_checking else 'training'
        seen.append((where, model.training and all(m.training for m in norms)))
        return real(module, task)

    monkeypatch.setattr(loop, 'query_metrics', recording)
    monkeypatch.setattr(maml_module, 'query_metrics', recording)
    train, val = digits_tasks(shots=2, queries=2)
    run(
        tiny_space(),
        episodic_evaluator(train, val, steps_per_epoch=1),
        BaseStrategy(inner_steps=1, meta_algorithm=meta_algorithm),
    )
    places = {where for where, _ in seen}
    assert places == {'training', 'validation'}, seen
    assert [where for where, train_mode in seen if not train_mode] == [], seen
