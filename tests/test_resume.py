"""Meta-training interrupted at an epoch boundary and resumed ends exactly where the uninterrupted run ends."""

from __future__ import annotations

import pytest
import torch
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from torch.utils.data import RandomSampler

from nni_base import BaseStrategy, EpisodicClassification
from nni_base.evaluator import EpochSeededSampler
from tests.helpers import digits_tasks, run, tiny_space

pytestmark = pytest.mark.usefixtures('fixed_fit_threads')  # runs compared tensor for tensor


class _StopAfterFirstEpoch(Callback):
    """Stands in for a killed job: the run ends after epoch 0 with its checkpoint written, budget unchanged."""

    def on_train_epoch_end(self, trainer, pl_module):
        trainer.should_stop = True


def _evaluator(train, checkpoints, *extra):
    return EpisodicClassification(
        train,
        None,
        tasks_per_step=2,
        steps_per_epoch=2,
        max_epochs=2,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[ModelCheckpoint(dirpath=checkpoints, save_last=True), *extra],
    )


def _final_state(strategy: BaseStrategy) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in strategy.oneshot_module.state_dict().items()}


@pytest.mark.parametrize('meta_algorithm', ['reptile', 'maml'])
def test_resumed_meta_training_matches_the_uninterrupted_run(tmp_path, meta_algorithm):
    train, _ = digits_tasks(shots=2, queries=2)
    kwargs = dict(inner_steps=1, seed=3, meta_algorithm=meta_algorithm)

    whole = BaseStrategy(**kwargs)
    run(tiny_space(), _evaluator(train, tmp_path / 'whole'), whole)

    first = BaseStrategy(**kwargs)
    run(tiny_space(), _evaluator(train, tmp_path / 'split', _StopAfterFirstEpoch()), first)
    assert first.oneshot_module.trainer.current_epoch == 1  # stopped after one of two epochs
    resumed = BaseStrategy(resume_from=tmp_path / 'split' / 'last.ckpt', **kwargs)
    run(tiny_space(), _evaluator(train, tmp_path / 'resumed'), resumed)

    assert resumed.oneshot_module.trainer.global_step == whole.oneshot_module.trainer.global_step == 4
    expected, got = _final_state(whole), _final_state(resumed)
    assert expected.keys() == got.keys()
    assert [k for k in expected if not torch.equal(expected[k], got[k])] == []
    assert not torch.equal(
        _final_state(first)['training_module._model.stem.0.weight'], expected['training_module._model.stem.0.weight']
    )  # the second epoch did change things


def test_resume_from_a_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"resume_from='.*last\.ckpt' is not a file"):
        BaseStrategy(resume_from=tmp_path / 'last.ckpt')


def test_epoch_seeded_sampler_depends_on_seed_and_epoch_only():
    sampler = EpochSeededSampler(5, seed=1)
    epoch0 = list(sampler)
    sampler.set_epoch(1)
    epoch1 = list(sampler)
    again = EpochSeededSampler(5, seed=1)
    again.set_epoch(1)
    assert list(again) == epoch1 != epoch0  # a fresh sampler (a restarted job) draws the same epoch-1 steps
    assert list(EpochSeededSampler(5, seed=2)) != epoch0
    assert len(sampler) == 5


def test_epoch_seeded_sampler_continues_one_random_sampler_stream():
    # Same episodes as torch's RandomSampler iterated epoch after epoch, so uninterrupted runs are unchanged.
    reference = RandomSampler(
        range(2**31 - 1), replacement=True, num_samples=40, generator=torch.Generator().manual_seed(7)
    )
    expected = [list(reference) for _ in range(3)]
    sampler = EpochSeededSampler(40, seed=7)
    got = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        got.append(list(sampler))
    assert got == expected
