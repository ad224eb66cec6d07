"""Torch's threads in nni-base's fits: one on a busy CPU unless the user chose, put back when the fit ends."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nni_base.callbacks import THREADS_VARIABLE, busy_cores_beside, fit_threads

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    'device, current, environ, expected',
    [
        ('cpu', 4, {}, 1),  # torch's count as at import, on a busy machine: nni-base's choice
        ('cpu', 1, {}, None),  # already one
        ('cuda', 4, {}, None),  # the rule is for CPU fits
        ('cpu', 4, {'OMP_NUM_THREADS': '4'}, None),  # the user said
        ('cpu', 3, {}, None),  # torch.set_num_threads(3) after the import: the user said
        ('cpu', 4, {THREADS_VARIABLE: '2'}, 2),
        ('cuda', 4, {THREADS_VARIABLE: '2'}, 2),
        ('cpu', 2, {THREADS_VARIABLE: '2', 'OMP_NUM_THREADS': '1'}, None),  # the variable wins, and is met
    ],
)
def test_the_rule(device, current, environ, expected):
    assert fit_threads(device, current, environ, default=4, load=64.0) == expected


def test_an_idle_machine_keeps_torch_s_count():
    cores = os.cpu_count() or 1  # torch's own default: one thread per core
    assert fit_threads('cpu', cores, {}, default=cores, load=0.0) is None


def test_busy_cores_beside_are_the_machine_s_busy_share_less_this_process():
    stats = iter([(100, 1000), (100 + 150, 1000 + 200)])  # 150 of 200 jiffies busy: 0.75 of the machine
    own = iter([5.0, 5.05])  # this process: 0.05 CPU seconds in the interval
    cores = os.cpu_count() or 1
    measured = busy_cores_beside(0.05, read=lambda: next(stats), own_seconds=lambda: next(own))
    # wall time is at least the 0.05 s slept, so this process counts at most 1 core
    assert 0.75 * cores - 1.0 - 1e-9 <= measured <= 0.75 * cores
    assert busy_cores_beside(0.0, read=lambda: None) is None  # no /proc/stat: the caller falls back


@pytest.mark.skipif(not Path('/proc/stat').is_file(), reason='reads /proc/stat')
def test_a_busy_process_beside_is_seen():
    busy = subprocess.Popen([sys.executable, '-c', 'while True: pass'])
    try:
        import time

        time.sleep(0.3)
        assert busy_cores_beside(0.3) > 0.5
    finally:
        busy.kill()
        busy.wait()


@pytest.mark.parametrize('value', ['0', 'two', '-1'])
def test_a_bad_variable_names_the_fix(value):
    with pytest.raises(ValueError, match=rf'{THREADS_VARIABLE}=.*positive thread count'):
        fit_threads('cpu', 2, {THREADS_VARIABLE: value}, default=2)


#: A fresh interpreter (the count at nni-base's import is what the rule compares with): torch at 3 threads before
#: the import, then a BaseStrategy search and plain fits with nni-base's callback under each way of choosing.
SCRIPT = r"""
import json, logging, os, warnings
warnings.simplefilter('ignore')
import torch
torch.set_num_threads(3)
import nni_base
import nni_base.callbacks
nni_base.callbacks.other_load = lambda: 64.0  # a busy machine, whatever this one is doing
import pytorch_lightning as pl
from torch.utils.data import DataLoader, TensorDataset
from nni_base import BaseStrategy
from nni_base.callbacks import ThreadCheck
from tests.helpers import QUIET, classification, run, tiny_space

class Seen(pl.Callback):
    def __init__(self):
        self.threads = set()
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.threads.add(torch.get_num_threads())

class Tiny(pl.LightningModule):
    def __init__(self, fail=False):
        super().__init__()
        self.layer, self.fail = torch.nn.Linear(2, 1), fail
    def training_step(self, batch, batch_idx):
        if self.fail:
            raise RuntimeError('boom')
        return self.layer(batch[0]).sum()
    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

def fit(fail=False):
    seen = Seen()
    trainer = pl.Trainer(max_steps=2, callbacks=[ThreadCheck(), seen], accelerator='cpu', **QUIET)
    data = DataLoader(TensorDataset(torch.randn(4, 2)), batch_size=2)
    try:
        trainer.fit(Tiny(fail), data)
    except RuntimeError:
        pass
    return {'during': sorted(seen.threads), 'after': torch.get_num_threads()}

result = {}
seen = Seen()
data = TensorDataset(torch.randn(20, 3, 8, 8), torch.arange(20) % 5)
run(tiny_space(), classification(data, max_epochs=1, limit_train_batches=2, callbacks=[seen]), BaseStrategy())
result['strategy'] = {'during': sorted(seen.threads), 'after': torch.get_num_threads()}
result['default'] = fit()
result['raises'] = fit(fail=True)
torch.set_num_threads(2)
result['set_num_threads'] = fit()
torch.set_num_threads(3)
os.environ['OMP_NUM_THREADS'] = '3'
result['omp'] = fit()
del os.environ['OMP_NUM_THREADS']
os.environ['NNI_BASE_THREADS'] = '2'
result['variable'] = fit()
print('RESULT ' + json.dumps(result))
"""


def test_fits_run_on_one_thread_unless_the_user_chose_and_the_count_comes_back():
    env = {k: v for k, v in os.environ.items() if k not in ('OMP_NUM_THREADS', THREADS_VARIABLE)}
    done = subprocess.run(
        [sys.executable, '-c', SCRIPT],
        cwd=REPO,
        env={**env, 'PYTHONPATH': str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith('RESULT ')), None)
    assert done.returncode == 0 and line is not None, done.stderr[-3000:]
    result = json.loads(line[len('RESULT ') :])
    assert result['strategy'] == {'during': [1], 'after': 3}  # BaseStrategy's own fit
    assert result['default'] == {'during': [1], 'after': 3}
    assert result['raises']['after'] == 3  # put back when the fit fails too
    assert result['set_num_threads'] == {'during': [2], 'after': 2}
    assert result['omp'] == {'during': [3], 'after': 3}
    assert result['variable'] == {'during': [2], 'after': 3}
