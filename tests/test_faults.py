"""Faults that lose nothing: a killed meta-training run, a damaged checkpoint on resume.

A meta-training process (``tests/fault_worker.py``) is killed with SIGKILL at points drawn from a seeded
generator: right after a meta-step, and halfway through writing the prior. Afterwards the prior on disk must be
exactly the last one written completely (or absent if none was), loadable, and ``resume_from`` the last
checkpoint must end on the same prior as the uninterrupted run, tensor for tensor.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from nni_base import BaseStrategy, EpisodicClassification, load_prior
from nni_base.errors import CorruptCheckpointError
from nni_base.search.checkpoint import check_checkpoint
from tests import fault_worker
from tests.helpers import digits_tasks, run, tiny_space

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures('fixed_fit_threads')  # runs compared tensor for tensor
_points = random.Random(22)
STEP_KILLS = sorted(_points.sample(range(1, fault_worker.EPOCHS * fault_worker.STEPS_PER_EPOCH), 2))
WRITE_KILL = _points.randint(1, fault_worker.EPOCHS)


def _train(out: Path, **kwargs) -> dict[str, torch.Tensor]:
    train, _ = digits_tasks(shots=2, queries=2)
    run(
        tiny_space(),
        fault_worker.evaluator(train, out / 'ckpt'),
        BaseStrategy(save_prior_to=out / 'prior.pt', **fault_worker.strategy_kwargs(), **kwargs),
    )
    return _tensors(out / 'prior.pt')


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    prior = load_prior(path)
    return {**prior['state_dict'], **{f'alpha/{k}': v for k, v in prior['alpha'].items()}}


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory) -> dict[str, torch.Tensor]:
    return _train(tmp_path_factory.mktemp('whole'))


def _kill(out: Path, mode: str, at: int) -> None:
    # the worker computes with this process's thread count, so its first half is bit-identical to the in-process runs
    env = {**os.environ, 'PYTHONPATH': str(REPO), 'OMP_NUM_THREADS': str(torch.get_num_threads())}
    proc = subprocess.run(
        [sys.executable, str(REPO / 'tests' / 'fault_worker.py'), str(out), mode, str(at)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL and 'finished' not in proc.stdout, proc.stderr[-3000:]


def _check_prior_after_the_kill(out: Path) -> None:
    log = out / 'written.txt'
    written = log.read_text().split() if log.exists() else []
    prior = out / 'prior.pt'
    if not written:
        assert not prior.exists(), 'a prior file appeared although no write completed'
        return
    assert hashlib.sha256(prior.read_bytes()).hexdigest() == written[-1], 'prior.pt is not the last complete write'
    load_prior(prior)


def _resume(out: Path) -> dict[str, torch.Tensor]:
    last = out / 'ckpt' / 'last.ckpt'
    return _train(out, **({'resume_from': last} if last.exists() else {}))


def _assert_same(expected: dict[str, torch.Tensor], got: dict[str, torch.Tensor]) -> None:
    assert expected.keys() == got.keys()
    assert [k for k in expected if not torch.equal(expected[k], got[k])] == []


@pytest.mark.parametrize('step', STEP_KILLS)
def test_killed_after_a_meta_step_keeps_the_prior_and_resumes_to_the_uninterrupted_result(
    tmp_path, uninterrupted, step
):
    _kill(tmp_path, 'step', step)
    _check_prior_after_the_kill(tmp_path)
    _assert_same(uninterrupted, _resume(tmp_path))


def test_killed_while_writing_the_prior_keeps_the_previous_prior_and_resumes(tmp_path, uninterrupted):
    _kill(tmp_path, 'write', WRITE_KILL)
    written = (tmp_path / 'written.txt').read_text().split() if (tmp_path / 'written.txt').exists() else []
    assert len(written) == WRITE_KILL - 1  # the kill came during write WRITE_KILL
    assert list(tmp_path.glob('.prior.pt.*.tmp')), 'the half-written temporary file should be there'
    _check_prior_after_the_kill(tmp_path)
    _assert_same(uninterrupted, _resume(tmp_path))


def test_a_damaged_checkpoint_is_refused_on_resume_naming_the_file(tmp_path):
    train, _ = digits_tasks(shots=2, queries=2)
    first = tmp_path / 'first'
    one_step = EpisodicClassification(
        train,
        None,
        tasks_per_step=2,
        steps_per_epoch=1,
        max_epochs=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[ModelCheckpoint(dirpath=first, save_last=True)],
    )
    run(tiny_space(), one_step, BaseStrategy(inner_steps=1))
    last = first / 'last.ckpt'
    check_checkpoint(last)  # the intact file passes
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    with pytest.raises(
        CorruptCheckpointError,
        match=r'Cannot resume from .*last\.ckpt: the checkpoint is damaged.*'
        r'earlier checkpoint',
    ):
        run(
            tiny_space(),
            fault_worker.evaluator(train, tmp_path / 'again'),
            BaseStrategy(inner_steps=1, resume_from=last),
        )


def test_a_checkpoint_with_a_flipped_byte_fails_its_checksum(tmp_path):
    path = tmp_path / 'last.ckpt'
    torch.save({'state_dict': {'w': torch.arange(64.0)}}, path)
    data = bytearray(path.read_bytes())
    at = data.find(torch.arange(64.0).numpy().tobytes()[:16])
    assert at > 0
    data[at + 5] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptCheckpointError, match='fails its checksum'):
        check_checkpoint(path)
