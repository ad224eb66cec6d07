"""Task-parallel meta-training under Lightning DDP, on CPU with the gloo backend.

Each rank is a separate process launched the way torchrun launches one (``RANK``/``LOCAL_RANK``/
``WORLD_SIZE``/``MASTER_ADDR``/``MASTER_PORT`` in its environment, see tests/ddp_worker.py), rather than
Lightning's ``ddp_spawn``: the ranks then run exactly what a user's ``torchrun`` or SLURM job runs (the
script again, per rank), nothing has to be pickled, and a test can kill one rank. The three runs below
(1-process reference in the test process, 2-process run, 2-process run whose rank 1 dies) run together.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

WORKER = Path(__file__).resolve().parents[1] / 'ddp_worker.py'  # tests/ddp_worker.py
REPO = WORKER.parent.parent
LIMIT_S = 420  # far above a normal run (~40 s idle) plus the worker's 120 s process-group timeout: a hang fails


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def launch(
    name: str, out: Path, *args: str, rank: int, port: int, logs: Path, extra_env: dict[str, str] | None = None
) -> subprocess.Popen:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ('RANK', 'LOCAL_RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT', 'NODE_RANK', 'SLURM_JOB_ID')
        and not k.startswith('NNI_BASE_')  # a thread count meant for another run would oversubscribe the cores
    }
    env.update(PYTHONPATH=os.pathsep.join([str(REPO), env.get('PYTHONPATH', '')]), OMP_NUM_THREADS='1')
    env.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE='2', MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    env.update(extra_env or {})
    log = open(logs / f'{name}.log', 'w')
    return subprocess.Popen(
        [sys.executable, str(WORKER), str(out), *args], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO
    )


def wait_all(procs: dict[str, subprocess.Popen], logs: Path) -> dict[str, tuple[int, str]]:
    deadline = time.monotonic() + LIMIT_S
    done = {}
    for name, p in procs.items():
        try:
            p.wait(timeout=max(deadline - time.monotonic(), 1))
        except subprocess.TimeoutExpired:
            for q in procs.values():
                q.kill()
            pytest.fail(f'{name} still running after {LIMIT_S} s: a DDP run hung')
    for name, p in procs.items():
        done[name] = (p.returncode, (logs / f'{name}.log').read_text())
    return done


@pytest.fixture(scope='module')
def runs(tmp_path_factory) -> tuple[Path, dict[str, tuple[int, str]]]:
    tmp = tmp_path_factory.mktemp('ddp')
    port_a, port_b = free_port(), free_port()
    procs = {
        'ddp-r0': launch('ddp-r0', tmp / 'ddp.pt', 'reptile', rank=0, port=port_a, logs=tmp),
        'ddp-r1': launch('ddp-r1', tmp / 'ddp.pt', 'reptile', rank=1, port=port_a, logs=tmp),
        'killed-r0': launch('killed-r0', tmp / 'killed.pt', 'reptile', '1', rank=0, port=port_b, logs=tmp),
        'killed-r1': launch('killed-r1', tmp / 'killed.pt', 'reptile', '1', rank=1, port=port_b, logs=tmp),
    }
    # The one-process reference runs here, in the test process, while the ranks run.
    sys.path.insert(0, str(WORKER.parent))
    from ddp_worker import main as reference_run

    torch_threads = torch.get_num_threads()
    try:
        reference_run(str(tmp / 'single.pt'), 'reptile')
    finally:
        torch.set_num_threads(torch_threads)
    return tmp, wait_all(procs, tmp)


def test_two_processes_give_the_one_process_prior(runs):
    tmp, done = runs
    for name in ('ddp-r0', 'ddp-r1'):
        assert done[name][0] == 0, f'{name} failed:\n{done[name][1][-3000:]}'
    one = torch.load(tmp / 'single.pt', weights_only=True)
    two = torch.load(tmp / 'ddp.pt', weights_only=True)
    assert one['meta']['steps'] == two['meta']['steps'] == 2
    for label in one['alpha']:
        assert torch.allclose(one['alpha'][label], two['alpha'][label], atol=1e-4), label
    moved = 0.0
    for key, value in one['state_dict'].items():
        if value.is_floating_point():  # (num_batches_tracked counts forwards per process; it steers nothing here)
            assert torch.allclose(value, two['state_dict'][key], atol=1e-4, rtol=1e-3), key
    # The comparison must be able to fail: the prior moved away from its initialisation by far more than atol.
    for label in one['alpha']:
        moved = max(moved, float(one['alpha'][label].abs().max()))
    assert moved > 1e-2
    assert one['meta']['metrics']['query_acc_after'] == pytest.approx(two['meta']['metrics']['query_acc_after'])


def test_a_killed_rank_fails_the_run_with_a_clear_error(runs):
    _, done = runs
    code, log = done['killed-r1']
    peer = done['killed-r0'][1]
    assert code == 3, (
        f'rank 1 was to be killed (exit 3) at meta-step 1, it exited {code}:\n{log[-3000:]}\n'
        f'--- rank 0 of that run:\n{peer[-3000:]}'
    )
    code, log = done['killed-r0']
    assert code != 0, log[-3000:]
    assert 'DistributedMetaStepError' in log and 'Rank 0 of 2' in log and 'meta-step 1' in log, log[-3000:]


@pytest.mark.e2e
def test_a_resumed_two_process_run_ends_where_the_uninterrupted_one_does(tmp_path):
    """Gumbel noise (each rank its own stream per meta-step): 2 epochs straight vs 1 epoch, checkpoint, resume."""
    gumbel = {'DDP_WORKER_RELAXATION': 'gumbel'}
    straight, first = free_port(), free_port()
    procs = {
        f'{name}-r{r}': launch(
            f'{name}-r{r}',
            tmp_path / f'{name}.pt',
            'reptile',
            rank=r,
            port=port,
            logs=tmp_path,
            extra_env={**gumbel, **env},
        )
        for name, port, env in (
            ('straight', straight, {'DDP_WORKER_EPOCHS': '2'}),
            ('first', first, {'DDP_WORKER_EPOCHS': '1', 'DDP_WORKER_CKPT_DIR': str(tmp_path / 'ckpt')}),
        )
        for r in (0, 1)
    }
    for name, (code, log) in wait_all(procs, tmp_path).items():
        assert code == 0, f'{name} failed:\n{log[-3000:]}'
    resumed = free_port()
    env = {**gumbel, 'DDP_WORKER_EPOCHS': '2', 'DDP_WORKER_RESUME': str(tmp_path / 'ckpt' / 'last.ckpt')}
    procs = {
        f'resumed-r{r}': launch(
            f'resumed-r{r}', tmp_path / 'resumed.pt', 'reptile', rank=r, port=resumed, logs=tmp_path, extra_env=env
        )
        for r in (0, 1)
    }
    for name, (code, log) in wait_all(procs, tmp_path).items():
        assert code == 0, f'{name} failed:\n{log[-3000:]}'
    a = torch.load(tmp_path / 'straight.pt', weights_only=True)
    b = torch.load(tmp_path / 'resumed.pt', weights_only=True)
    assert a['meta']['steps'] == b['meta']['steps'] == 4
    for key, value in a['state_dict'].items():
        assert torch.allclose(value, b['state_dict'][key], atol=1e-6), key
    for label, value in a['alpha'].items():
        assert torch.allclose(value, b['alpha'][label], atol=1e-6), label


# ---- the pieces, in this process ---------------------------------------------------------------------------------
def test_tasks_are_split_round_robin_and_every_rank_needs_one():
    from nni_base.search.distributed import shard_tasks

    tasks = list(range(8))
    shards = [shard_tasks(tasks, r, 3) for r in range(3)]
    assert shards == [[0, 3, 6], [1, 4, 7], [2, 5]] and sorted(sum(shards, [])) == tasks
    with pytest.raises(ValueError, match='tasks_per_step >= 4'):
        shard_tasks(tasks[:3], 0, 4)


def test_all_reduce_outside_a_process_group_returns_the_tensors():
    from nni_base.search.distributed import all_reduce_sum, is_collective_error, process_group

    assert process_group() == (0, 1)
    a, b = torch.randn(2, 3), torch.arange(4, dtype=torch.float64)
    out = all_reduce_sum([a, b], where='meta-step 0')
    assert torch.equal(out[0], a) and out[0].dtype == a.dtype and torch.equal(out[1], b)
    assert is_collective_error(RuntimeError('[gloo/transport/tcp/pair.cc:561] Connection closed by peer'))
    assert not is_collective_error(RuntimeError('mat1 and mat2 shapes cannot be multiplied'))


def test_recipes_and_trial_take_devices_nodes_and_strategy():
    from pytorch_lightning.strategies import DDPStrategy

    from nni_base.cli.recipes import distributed_kwargs, parse_args
    from nni_base.cli.trial import validate_params

    args = parse_args(
        [
            'meta-train',
            '--imagenet32',
            'x',
            '--output-dir',
            'o',
            '--accelerator',
            'gpu',
            '--devices',
            '4',
            '--num-nodes',
            '2',
            '--strategy',
            'ddp',
            '--process-group-timeout',
            '30',
        ]
    )
    kwargs = distributed_kwargs(args)
    assert (kwargs['accelerator'], kwargs['devices'], kwargs['num_nodes']) == ('gpu', 4, 2)
    assert isinstance(kwargs['strategy'], DDPStrategy)
    assert distributed_kwargs(parse_args(['meta-train', '--output-dir', 'o']))['strategy'] == 'auto'
    params = validate_params({'devices': 2, 'num_nodes': 1, 'strategy': 'ddp'})
    assert (params['devices'], params['strategy']) == (2, 'ddp')
    with pytest.raises(ValueError, match="'strategy' must be one of"):
        validate_params({'strategy': 'horovod'})
