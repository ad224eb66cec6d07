"""A custom Lightning evaluator's hooks run under BaseStrategy, as under NNI's own one-shot strategies."""

from __future__ import annotations

import nni
import torch
from nni.nas.evaluator.pytorch import ClassificationModule, Lightning, Trainer
from torch.utils.data import DataLoader, TensorDataset

from nni_base import BaseStrategy, EpisodicModule
from tests.helpers import digits_tasks, episodic_evaluator, run, tiny_space

HOOKS = (
    'on_fit_start',
    'on_train_start',
    'on_train_epoch_start',
    'on_train_batch_start',
    'on_train_batch_end',
    'on_validation_epoch_start',
    'on_validation_epoch_end',
    'on_train_epoch_end',
    'on_train_end',
    'on_fit_end',
)


class _Records:
    """Counts the calls of every hook in HOOKS (a mixin before the evaluator's own module class)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls: dict[str, int] = {}

    def __getattribute__(self, name):
        attribute = super().__getattribute__(name)
        if name not in HOOKS:
            return attribute
        calls = super().__getattribute__('calls')

        def counted(*args, **kwargs):
            calls[name] = calls.get(name, 0) + 1
            return attribute(*args, **kwargs)

        return counted


class RecordingClassification(_Records, ClassificationModule):
    pass


class RecordingEpisodic(_Records, EpisodicModule):
    pass


def test_a_custom_evaluators_hooks_run_in_single_task_search():
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(16, 3, 16, 16), torch.randint(0, 5, (16,)))
    module = RecordingClassification(num_classes=5, learning_rate=0.01)
    evaluator = Lightning(
        module,
        Trainer(
            max_epochs=1,
            logger=False,
            enable_progress_bar=False,
            enable_checkpointing=False,
            enable_model_summary=False,
        ),
        train_dataloaders=nni.trace(DataLoader)(data, batch_size=8),
        val_dataloaders=nni.trace(DataLoader)(data, batch_size=8),
    )
    run(tiny_space(), evaluator, BaseStrategy(seed=0))
    assert {name: module.calls.get(name, 0) for name in HOOKS} == {
        **{name: 1 for name in HOOKS},
        'on_train_batch_start': 2,
        'on_train_batch_end': 2,
        # Lightning's sanity check and the epoch's validation
        'on_validation_epoch_start': 2,
        'on_validation_epoch_end': 2,
    }


def test_a_custom_evaluators_hooks_run_in_meta_training():
    train, test = digits_tasks()
    evaluator = episodic_evaluator(train, test, steps_per_epoch=2)
    module = evaluator.module = RecordingEpisodic()
    run(tiny_space(), evaluator, BaseStrategy(inner_steps=1, seed=0))
    assert {name: module.calls.get(name, 0) for name in HOOKS} == {
        **{name: 1 for name in HOOKS},
        'on_train_batch_start': 2,
        'on_train_batch_end': 2,
    }
