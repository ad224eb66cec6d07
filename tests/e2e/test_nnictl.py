"""End to end through NNI's manager: ``nnictl create --config examples/base_exp.yml``, its REST API and web UI.

One experiment (two tiny trials) serves the success and web-UI checks; a second one, with a grid-search tuner and
one invalid parameter value, checks that a bad trial fails with a clear message while the other succeeds.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / 'examples' / 'base_exp.yml'
BIN = Path(sys.executable).parent  # the virtualenv's bin: nnictl, and the `python` the trials must run
TIMEOUT_S = 360
META_EPOCHS = 2
# Pinned tiny values: each trial takes well under a minute on 2 CPU cores.
# One torch thread per trial: two threads on a busy 2-core machine slow a tiny network down tenfold.
TINY = {
    'inner_steps': 1,
    'tasks_per_step': 1,
    'steps_per_epoch': 2,
    'meta_epochs': META_EPOCHS,
    'val_episodes': 1,
    'eval_tasks': 1,
    'width': 4,
    'num_cells': 3,
    'shots': 2,
    'queries': 2,
    'num_threads': 1,
}
FINAL_KEYS = {'default', 'accuracy_before_adaptation', 'params', 'macs', 'search_seconds', 'meta_train_seconds'}
BAD_VALUE_MESSAGE = "ValueError: parameter 'inner_steps' must be >= 1, got 0"
FINISHED = {'SUCCEEDED', 'FAILED', 'USER_CANCELED', 'SYS_CANCELED', 'EARLY_STOPPED'}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def _env(home: Path) -> dict[str, str]:
    # The manager runs trialCommand ("python -m nni_base.cli.trial") through a shell with its own environment, so the
    # virtualenv's bin must come first on the PATH that nnictl is started with. nnictl keeps its list of
    # experiments in ~/nni-experiments/.experiment: a private HOME keeps test runs out of the user's list.
    env = dict(os.environ)
    env['PATH'] = f'{BIN}{os.pathsep}{env.get("PATH", "")}'
    env['HOME'] = str(home)
    env.pop('NNI_OUTPUT_DIR', None)
    return env


def _get(port: int, path: str) -> Any:
    with urllib.request.urlopen(f'http://127.0.0.1:{port}/api/v1/nni/{path}', timeout=10) as response:
        return json.loads(response.read().decode())


def _search_space(**choices: list[Any]) -> dict[str, Any]:
    space = {name: {'_type': 'choice', '_value': [value]} for name, value in TINY.items()}
    space.update({name: {'_type': 'choice', '_value': values} for name, values in choices.items()})
    return space


class Experiment:
    """A running ``nnictl`` experiment on a free loopback port, built from the example config."""

    def __init__(
        self, workdir: Path, search_space: dict[str, Any], tuner: dict[str, Any] | None = None, name: str = 'base-e2e'
    ):
        self.workdir = workdir
        self.port = _free_port()
        self.id: str | None = None
        config = yaml.safe_load(EXAMPLE.read_text())
        (workdir / 'search_space.json').write_text(json.dumps(search_space, indent=2))
        config.update(
            {
                'experimentName': name,
                'searchSpaceFile': str(workdir / 'search_space.json'),
                'trialCodeDirectory': str(REPO),
                'maxTrialNumber': 2,
                'experimentWorkingDirectory': str(workdir / 'nni-experiments'),
            }
        )
        if tuner is not None:
            config['tuner'] = tuner
        self.config_path = workdir / 'exp.yml'
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        (workdir / 'home').mkdir(exist_ok=True)
        self.env = _env(workdir / 'home')

    def start(self) -> None:
        proc = subprocess.run(
            [str(BIN / 'nnictl'), 'create', '--config', str(self.config_path), '--port', str(self.port)],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        found = re.search(r'Experiment ID: (?:\x1b\[\d+m)?(\w+)', proc.stdout + proc.stderr)
        self.id = found.group(1) if found else None
        assert proc.returncode == 0 and self.id, f'nnictl create failed:\n{proc.stdout}\n{proc.stderr}'

    def stop(self) -> None:
        target = [self.id] if self.id else ['--port', str(self.port)]
        subprocess.run(
            [str(BIN / 'nnictl'), 'stop', *target], env=self.env, capture_output=True, text=True, timeout=120
        )

    def wait(self, trials: int, timeout: float = TIMEOUT_S) -> list[dict[str, Any]]:
        """Poll the REST API until ``trials`` trials have finished; returns the trial jobs."""
        deadline = time.monotonic() + timeout
        jobs: list[dict[str, Any]] = []
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            status = _get(self.port, 'check-status')
            assert status['status'] != 'ERROR', f'experiment error: {status}'
            jobs = _get(self.port, 'trial-jobs')
            if len(jobs) >= trials and all(job['status'] in FINISHED for job in jobs):
                return jobs
            time.sleep(3)
        raise AssertionError(
            f'trials not finished after {timeout} s: status {status}, jobs {jobs}; manager log: '
            f'{self.workdir / "nni-experiments" / str(self.id) / "log"}'
        )

    def metrics(self) -> list[dict[str, Any]]:
        return _get(self.port, 'metric-data')


@pytest.fixture(scope='module')
def experiment(tmp_path_factory) -> Iterator[tuple[Experiment, list[dict[str, Any]], float]]:
    """Two tiny trials (two inner learning rates, TPE as in the example config), run to the end."""
    exp = Experiment(tmp_path_factory.mktemp('nnictl'), _search_space(inner_lr=[0.03, 0.08]))
    start = time.monotonic()
    try:
        exp.start()
        jobs = exp.wait(trials=2)
        yield exp, jobs, time.monotonic() - start
    finally:
        exp.stop()


def _final(job: dict[str, Any]) -> dict[str, Any]:
    # finalMetricData[].data is the JSON encoding of the JSON string the trial reported
    data = json.loads(job['finalMetricData'][0]['data'])
    return json.loads(data) if isinstance(data, str) else data


def _parameter_id(job: dict[str, Any]) -> str:
    return str(json.loads(job['hyperParameters'][0])['parameter_id'])


def _trial_dir(job: dict[str, Any]) -> Path:
    # local training service: the trial's output folder ($NNI_OUTPUT_DIR) is its log folder
    return Path(re.sub(r'^file://[^/]*', '', job['logPath']))


def test_trials_succeed_with_final_metrics_and_files(experiment):
    exp, jobs, seconds = experiment
    assert len(jobs) == 2
    assert [job['status'] for job in jobs] == ['SUCCEEDED', 'SUCCEEDED'], jobs
    assert _get(exp.port, 'check-status')['status'] == 'DONE'
    for job in jobs:
        final = _final(job)
        assert set(final) == FINAL_KEYS, final
        assert 0.0 <= final['default'] <= 1.0 and final['params'] > 1000
        out = _trial_dir(job)
        assert {'arch.json', 'probs.json', 'prior.pt'} <= {p.name for p in out.iterdir()}, sorted(out.iterdir())
        sample = json.loads((out / 'arch.json').read_text())
        assert 'normal/op_2_0' in sample and 'reduce/op_2_0' in sample
        assert json.loads(job['hyperParameters'][0])['parameters']['width'] == TINY['width']
    print(f'\nnnictl experiment with 2 trials: {seconds:.0f} s')


def test_intermediate_results_arrive_once_per_meta_epoch_under_the_trials_parameter_id(experiment):
    exp, jobs, _ = experiment
    metrics = exp.metrics()
    for job in jobs:
        mine = [m for m in metrics if m['trialJobId'] == job['trialJobId']]
        periodical = [m for m in mine if m['type'] == 'PERIODICAL']
        assert len(periodical) == META_EPOCHS, mine
        assert all(0.0 <= float(json.loads(m['data'])) <= 1.0 for m in periodical)
        # NNI's in-process NAS engine swaps the parameter record; reports must keep the trial's own id
        assert {m['parameterId'] for m in mine} == {_parameter_id(job)}, mine


def _chromium() -> str:
    path = os.environ.get('CHROMIUM') or shutil.which('chromium') or '/usr/bin/chromium'
    if not Path(path).exists():
        pytest.fail(
            'Headless Chromium is needed for the web UI check: apt-get update && apt-get install -y '
            'chromium (or set CHROMIUM=/path/to/chromium)'
        )
    return path


def _browse(url: str, profile: Path, *extra: str) -> subprocess.CompletedProcess:
    flags = [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        f'--user-data-dir={profile}',
        '--virtual-time-budget=15000',
        '--window-size=1400,900',
    ]
    return subprocess.run([_chromium(), *flags, *extra, url], capture_output=True, text=True, timeout=120)


def _ui_metric(value: float) -> str:
    # how the web UI prints a final metric: toFixed(6) without trailing zeros, then " (FINAL)"
    return f'{value:.6f}'.rstrip('0').rstrip('.') + ' (FINAL)'


def test_web_ui_lists_the_trials(experiment, tmp_path):
    exp, jobs, _ = experiment
    base = f'http://127.0.0.1:{exp.port}'
    detail = _browse(f'{base}/detail', tmp_path / 'profile-detail', '--dump-dom')
    assert detail.returncode == 0, detail.stderr[-2000:]
    assert 'Trial jobs' in detail.stdout, 'the trials page did not render'
    for job in jobs:
        assert job['trialJobId'] in detail.stdout, f'trial {job["trialJobId"]} not in the rendered trial table'
        assert _ui_metric(_final(job)['default']) in detail.stdout, 'default metric column'

    overview = _browse(f'{base}/oview', tmp_path / 'profile-oview', '--dump-dom')
    assert overview.returncode == 0, overview.stderr[-2000:]
    for text in (exp.id, 'DONE', 'python -m nni_base.cli.trial', *(job['trialJobId'] for job in jobs)):
        assert text in overview.stdout, f'{text!r} not on the overview page'

    shot = tmp_path / 'nni_webui.png'
    result = _browse(f'{base}/oview', tmp_path / 'profile-shot', f'--screenshot={shot}')
    assert result.returncode == 0 and shot.stat().st_size > 10_000, result.stderr[-2000:]
    # The README's copy is made by `make screenshot` (scripts/webui_screenshot.py); a test writes only to tmp_path.


def test_bad_parameter_fails_its_trial_only(tmp_path):
    exp = Experiment(tmp_path, _search_space(inner_steps=[1, 0]), tuner={'name': 'GridSearch'}, name='base-e2e-bad')
    try:
        exp.start()
        jobs = exp.wait(trials=2)
    finally:
        exp.stop()
    by_steps = {json.loads(job['hyperParameters'][0])['parameters']['inner_steps']: job for job in jobs}
    assert set(by_steps) == {0, 1}, jobs
    assert by_steps[1]['status'] == 'SUCCEEDED' and set(_final(by_steps[1])) == FINAL_KEYS
    bad = by_steps[0]
    assert bad['status'] == 'FAILED' and not bad.get('finalMetricData')
    stderr = (_trial_dir(bad) / 'trial.stderr').read_text()
    assert BAD_VALUE_MESSAGE in stderr, stderr[-3000:]


def test_a_trial_killed_mid_run_is_failed_while_the_experiment_goes_on(tmp_path):
    # GridSearch runs the long trial (hundreds of meta-steps) first, one at a time (trialConcurrency 1); it is
    # killed with SIGKILL once it runs, and the short one must still run and succeed.
    exp = Experiment(
        tmp_path, _search_space(steps_per_epoch=[200, 2]), tuner={'name': 'GridSearch'}, name='base-e2e-kill'
    )
    try:
        exp.start()
        deadline, killed = time.monotonic() + TIMEOUT_S, None
        while killed is None and time.monotonic() < deadline:
            found = subprocess.run(['pgrep', '-f', 'nni_base.cli.trial'], capture_output=True, text=True).stdout
            pids = [int(p) for p in found.split()]
            if pids and any(job['status'] == 'RUNNING' for job in _get(exp.port, 'trial-jobs')):
                time.sleep(8)  # well into meta-training (imports take a few seconds)
                for pid in pids:
                    os.kill(pid, signal.SIGKILL)
                killed = pids
            time.sleep(1)
        assert killed, 'the first trial never ran'
        jobs = exp.wait(trials=2)
        status = _get(exp.port, 'check-status')
    finally:
        exp.stop()
    by_steps = {json.loads(job['hyperParameters'][0])['parameters']['steps_per_epoch']: job for job in jobs}
    # NNI 3.0 reports a trial whose process died of SIGKILL as USER_CANCELED (a non-zero exit would be FAILED)
    assert by_steps[200]['status'] in ('FAILED', 'USER_CANCELED') and not by_steps[200].get('finalMetricData'), (
        by_steps[200]
    )
    assert by_steps[2]['status'] == 'SUCCEEDED' and set(_final(by_steps[2])) == FINAL_KEYS
    assert status['status'] != 'ERROR', status
