"""Single-task search (NNI's ``Classification`` evaluator) under Lightning DDP, on CPU with gloo.

The ranks are separate processes launched as torchrun launches them (tests/ddp_single_task_worker.py), like
tests/search/test_ddp.py:

- ``exact``: the supernet without BatchNorm, on 2 processes while the one-process reference runs in the test
  process. Each rank computes its half of every global batch and DDP's reducer averages the gradients of weights
  and alpha, so the 2-process run must end with the weights and alpha of the one-process run over the same
  global batches (up to float rounding). With BatchNorm this cannot hold: a rank normalises with its half
  batch's statistics, one process with the whole batch's (SyncBatchNorm, which would share them, needs GPUs).
- ``batchnorm`` (e2e: two more processes): the default space and options (BatchNorm in every operation,
  normalised pooling, BatchNorm recalibration before validation, a sanity validation): both ranks must finish
  and hold the same weights, alpha, BatchNorm statistics and export.

A run that hangs fails after ``LIMIT_S`` (the process group's own timeout is 20 s).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

WORKER = Path(__file__).resolve().parents[1] / 'ddp_single_task_worker.py'
REPO = WORKER.parent.parent
LIMIT_S = 120


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def launch(out: Path, setting: str, rank: int, port: int) -> subprocess.Popen:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ('RANK', 'LOCAL_RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT', 'NODE_RANK', 'SLURM_JOB_ID')
    }
    env.update(PYTHONPATH=os.pathsep.join([str(REPO), env.get('PYTHONPATH', '')]), OMP_NUM_THREADS='1')
    env.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE='2', MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    log = open(out.parent / f'{setting}-r{rank}.log', 'w')
    return subprocess.Popen(
        [sys.executable, str(WORKER), str(out), setting], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO
    )


def wait_ranks(tmp: Path, procs: dict[str, subprocess.Popen]) -> None:
    deadline = time.monotonic() + LIMIT_S
    for name, p in procs.items():
        try:
            p.wait(timeout=max(deadline - time.monotonic(), 1))
        except subprocess.TimeoutExpired:
            for q in procs.values():
                q.kill()
            pytest.fail(f'{name} still running after {LIMIT_S} s: a DDP run hung')
    for name, p in procs.items():
        assert p.returncode == 0, f'{name} failed:\n{(tmp / f"{name}.log").read_text()[-3000:]}'


def two_ranks(tmp: Path, setting: str) -> dict[str, subprocess.Popen]:
    port = free_port()
    return {f'{setting}-r{r}': launch(tmp / setting, setting, r, port) for r in (0, 1)}


@pytest.fixture(scope='module')
def exact_runs(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp('ddp_single_task')
    procs = two_ranks(tmp, 'exact')
    sys.path.insert(0, str(WORKER.parent))
    from ddp_single_task_worker import main as reference_run

    threads = torch.get_num_threads()
    try:
        reference_run(str(tmp / 'single'), 'exact')  # one process, here, while the ranks run
    finally:
        torch.set_num_threads(threads)
    wait_ranks(tmp, procs)
    return tmp


def load(path: Path) -> dict:
    return torch.load(path, weights_only=True)


def assert_ranks_identical(a: dict, b: dict) -> None:
    assert a['export'] == b['export']
    for label, value in a['alpha'].items():
        assert torch.equal(value, b['alpha'][label]), label
    for key, value in a['state_dict'].items():
        assert torch.equal(value, b['state_dict'][key]), key


def test_two_processes_give_the_one_process_weights_and_alpha(exact_runs):
    tmp = exact_runs
    one, r0, r1 = load(tmp / 'single.r0.pt'), load(tmp / 'exact.r0.pt'), load(tmp / 'exact.r1.pt')
    assert (one['world_size'], r0['world_size']) == (1, 2)
    # Lightning's global_step counts optimizer steps: 4 weight steps, alpha's on the 2 before the freeze.
    assert one['steps'] == r0['steps'] == 6
    assert_ranks_identical(r0, r1)
    assert r0['export'] == one['export']
    # Float rounding only: two half-batch means averaged vs one mean (measured < 1e-6, alpha's Adam steps included).
    atol = 1e-5
    for label, value in one['alpha'].items():
        assert torch.allclose(value, r0['alpha'][label], atol=atol, rtol=0), label
    assert one['state_dict'].keys() == r0['state_dict'].keys()
    for key, value in one['state_dict'].items():
        assert torch.allclose(value, r0['state_dict'][key], atol=atol, rtol=0), key
    # The comparison can fail: alpha and the weights moved by far more than atol (alpha by Adam's 0.3-logit steps).
    assert max(float(a.abs().max()) for a in one['alpha'].values()) > 0.1
    moved = max(
        float((v - one['initial'][k]).abs().max())
        for k, v in one['state_dict'].items()
        if v.is_floating_point() and '_arch_alpha' not in k
    )
    assert moved > 100 * atol


@pytest.mark.e2e
def test_ranks_with_batchnorm_end_identical(tmp_path):
    wait_ranks(tmp_path, two_ranks(tmp_path, 'batchnorm'))
    r0, r1 = load(tmp_path / 'batchnorm.r0.pt'), load(tmp_path / 'batchnorm.r1.pt')
    assert r0['steps'] == 6
    assert_ranks_identical(r0, r1)  # buffers too: the recalibrated statistics are averaged over the ranks
    assert any('running_mean' in key for key in r0['state_dict'])


@pytest.mark.e2e
def test_plain_ddp_is_refused_naming_the_fix(tmp_path):
    procs = two_ranks(tmp_path, 'plain_ddp')
    for name, p in procs.items():
        try:
            p.wait(timeout=LIMIT_S)
        except subprocess.TimeoutExpired:
            for q in procs.values():
                q.kill()
            pytest.fail(f'{name} still running after {LIMIT_S} s: a refused DDP run hung')
        log = (tmp_path / f'{name}.log').read_text()
        assert p.returncode != 0 and "strategy='ddp_find_unused_parameters_true'" in log, log[-3000:]


def test_ddp_without_unused_parameter_detection_is_refused_naming_the_fix():
    from nni_base.search.single_task import check_ddp_model

    check_ddp_model(SimpleNamespace(find_unused_parameters=True, static_graph=False))
    check_ddp_model(torch.nn.Linear(2, 2))  # no DDP wrapper (one process)
    with pytest.raises(ValueError, match="strategy='ddp_find_unused_parameters_true'"):
        check_ddp_model(SimpleNamespace(find_unused_parameters=False, static_graph=False))
    with pytest.raises(ValueError, match='static_graph'):
        check_ddp_model(SimpleNamespace(find_unused_parameters=True, static_graph=True))
