"""What a person reads: a tiny adaptation prints a few lines, nni-base's own among them; NNI's and Lightning's noise
left out by exact-message filters; old NNI experiment folders cleared only where NNI made them."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nni_base import BaseStrategy
from nni_base.cli import clean_experiments
from nni_base.runs import PREFIX, describe_sample, quiet_nni_checkpoint_warnings, quiet_nni_one_shot_warnings
from tests.helpers import digits_tasks, episodic_evaluator, run, tiny_space

REPO = Path(__file__).resolve().parent.parent
ANSI = re.compile(r'\x1b\[[0-9;]*[A-Za-z]')


@pytest.fixture(scope='module')
def prior_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp('prior') / 'prior.pt'
    train, val = digits_tasks()
    run(
        tiny_space(), episodic_evaluator(train, val, steps_per_epoch=2), BaseStrategy(inner_steps=1, save_prior_to=path)
    )
    return path


#: The README's step 2 at the Trainer's defaults (progress bar, logger, checkpoints, model summary), in a fresh
#: interpreter so that import-time warnings count; nni-base is imported before NNI's NAS modules.
ADAPT = r"""
import sys
import nni_base
import nni
from nni.nas.evaluator.pytorch import Classification
from nni.nas.experiment import NasExperiment
from torch.utils.data import DataLoader, TensorDataset
from nni_base import AdaptationConfig, BaseStrategy, DartsTaskSpace
from nni_base.data import digits_splits

test = digits_splits()['test']
data = TensorDataset(test.images, test.labels)
evaluator = Classification(num_classes=8, train_dataloaders=nni.trace(DataLoader)(data, batch_size=32, shuffle=True),
                           val_dataloaders=nni.trace(DataLoader)(data, batch_size=64), max_epochs=1,
                           limit_train_batches=4, limit_val_batches=1)
strategy = BaseStrategy(prior=sys.argv[1], adaptation=AdaptationConfig(freeze_architecture_after=2))
exp = NasExperiment(DartsTaskSpace(width=4, num_cells=3, num_classes=8), evaluator, strategy)
exp.run()
arch = exp.export_top_models(formatter='dict')[0]
"""


def _progress_bar(line: str) -> bool:
    return '\r' in line or 'it/s' in line or 's/it' in line  # tqdm: one line per update in a pipe


def test_a_tiny_adaptation_prints_at_most_12_lines_3_of_them_nni_bases(prior_path, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ('OMP_NUM_THREADS', 'NNI_BASE_THREADS')}
    done = subprocess.run(
        [sys.executable, '-c', ADAPT, str(prior_path)],
        cwd=tmp_path,
        env={**env, 'PYTHONPATH': str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    printed = [ANSI.sub('', ln) for ln in (done.stdout + done.stderr).splitlines()]
    lines = [ln for ln in printed if ln.strip() and not _progress_bar(ln)]  # a bar's last, clearing line is blank
    ours = [ln for ln in lines if re.match(rf'\[[-\d :]+\] {PREFIX}', ln)]
    shown = '\n'.join(lines)
    assert len(lines) <= 12 and len(ours) >= 3, shown
    assert 'is found to be not a nn.Module' not in shown and 'Checkpoint callback' not in shown, shown
    assert sum('rebuilt the classifier head' in ln for ln in lines) == 1, shown  # said once
    assert any('Adapting the prior' in ln for ln in ours) and any('exported cell: normal:' in ln for ln in ours)
    assert not (tmp_path / 'lightning_logs').exists()  # nothing written into the current folder


# ---- the filters ------------------------------------------------------------------------------------------------
class _Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def nni_console():
    """A handler on NNI's 'nni' logger at INFO (the conftest quiets NNI to WARNING), removed afterwards."""
    nni_logger, keep = logging.getLogger('nni'), _Keep()
    level = nni_logger.level
    nni_logger.addHandler(keep)
    nni_logger.setLevel(logging.INFO)
    yield keep
    nni_logger.removeHandler(keep)
    nni_logger.setLevel(level)


def test_nni_base_lines_go_through_nni_and_follow_its_level(nni_console):
    logging.getLogger('nni_base').info('the prior is adapted')
    assert nni_console.lines == [PREFIX + 'the prior is adapted']
    logging.getLogger('nni').setLevel(logging.WARNING)  # a user who quiets NNI quiets nni-base too
    logging.getLogger('nni_base').info('not shown')
    assert nni_console.lines == [PREFIX + 'the prior is adapted']


def test_nni_routine_lines_leave_the_console_and_the_checkpoint_folder_is_named_once(nni_console):
    quiet_nni_one_shot_warnings()
    console = next(h for h in logging.getLogger('nni').handlers if type(h) is logging.StreamHandler)

    def shown(name: str, msg: str, *args: object) -> bool:
        record = logging.LogRecord(name, logging.INFO, __file__, 1, msg, args, None)
        return all(f.filter(record) for f in console.filters)

    experiment = 'nni.nas.experiment.experiment'
    assert not shown(experiment, 'Experiment is completed.')
    assert not shown('nni.nas.experiment.config.experiment', 'Config is not provided. Will try to infer.')
    assert shown(experiment, 'Checkpoint saved to %s.', '/x/abc/checkpoint')
    assert not shown(experiment, 'Checkpoint saved to %s.', '/x/abc/checkpoint')  # again, at stop
    assert shown(experiment, 'Checkpoint saved to %s.', '/x/def/checkpoint')
    assert shown(experiment, 'Experiment is completed with an error.')  # not the exact message
    assert shown('nni.somewhere.else', 'Experiment is completed.')  # another logger's line
    logging.getLogger('nni_base').setLevel(logging.DEBUG)
    try:
        assert shown(experiment, 'Experiment is completed.')  # nni_base at DEBUG shows everything
    finally:
        logging.getLogger('nni_base').setLevel(logging.INFO)


def test_nni_checkpoint_warnings_are_dropped_only_within(caplog):
    nni_strategy = logging.getLogger('nni.nas.oneshot.pytorch.strategy')
    with caplog.at_level(logging.WARNING):
        with quiet_nni_checkpoint_warnings():
            nni_strategy.warning('Checkpoint callback is found to be None in evaluator trainer.')
            nni_strategy.warning('ckpt_path is already set in evaluator.')
        nni_strategy.warning('Checkpoint callback is found to be None in evaluator trainer.')
    assert [r.getMessage() for r in caplog.records] == [
        'ckpt_path is already set in evaluator.',
        'Checkpoint callback is found to be None in evaluator trainer.',
    ]


def test_a_darts_sample_in_one_line():
    sample = {
        'normal/op_2_0': 'sep_conv_3x3',
        'normal/input_2_0': [0],
        'normal/op_2_1': 'skip_connect',
        'normal/input_2_1': [1],
        'normal/op_3_0': 'max_pool_3x3',
        'normal/input_3_0': [2],
        'width': 16,
    }
    assert describe_sample(sample) == 'normal: sep_conv_3x3(0) skip_connect(1) | max_pool_3x3(2); width=16'
    assert len(describe_sample({f'choice{i}': 'x' * 20 for i in range(50)}, limit=100)) == 100


# ---- clearing old experiment folders ------------------------------------------------------------------------------
def _experiment(root: Path, name: str, days_old: float, *, extra: str | None = None) -> Path:
    folder = root / name
    (folder / 'checkpoint').mkdir(parents=True)
    (folder / 'log').mkdir()
    (folder / 'checkpoint' / 'config.json').write_text('{}')
    (folder / 'log' / 'experiment.log').write_text('[...] INFO (nni) Experiment stopped\n')
    if extra is not None:
        (folder / extra).write_text('mine')
    _age(folder, days_old)
    return folder


def _age(folder: Path, days_old: float) -> None:
    when = time.time() - days_old * 86400
    for path in [*folder.rglob('*'), folder]:
        os.utime(path, (when, when), follow_symlinks=False)


def test_clean_experiments_lists_by_default_and_deletes_only_what_nni_made(tmp_path, monkeypatch, capsys):
    home = tmp_path / 'nni-experiments'
    old = _experiment(home, 'aaaa1111', 10)
    mixed = _experiment(home, 'cccc3333', 10, extra='notes.txt')
    recent = _experiment(home, 'bbbb2222', 1)
    running = _experiment(home, 'eeee5555', 10)
    outside = _experiment(tmp_path / 'elsewhere', 'ffff6666', 10)
    (home / 'dddd4444').symlink_to(outside, target_is_directory=True)
    mine = home / 'my-results'
    (mine / 'log').mkdir(parents=True)
    (mine / 'log' / 'train.log').write_text('not NNI')
    _age(mine, 10)
    manifest = {
        'aaaa1111': {'id': 'aaaa1111', 'status': 'STOPPED', 'pid': None, 'logDir': str(home)},
        'eeee5555': {'id': 'eeee5555', 'status': 'RUNNING', 'pid': os.getpid(), 'logDir': str(home)},
    }
    (home / '.experiment').write_text(json.dumps(manifest))
    monkeypatch.setattr(clean_experiments, 'NNI_HOME', home)

    assert clean_experiments.main(['--dir', str(home), '--older-than', '7']) == 0
    listed = capsys.readouterr().out
    assert all(p.exists() for p in (old, mixed, recent, running, outside, mine))  # a dry run deletes nothing
    assert f'would delete {old}' in listed and f'would delete {mixed}' in listed and 'notes.txt' in listed
    assert 'bbbb2222' not in listed and 'my-results' not in listed and 'dddd4444' not in listed
    assert 'kept' in listed and 'eeee5555' in listed and 'pass --delete' in listed

    assert clean_experiments.main(['--dir', str(home), '--older-than', '7', '--delete']) == 0
    assert not old.exists()
    assert sorted(p.name for p in mixed.iterdir()) == ['notes.txt']  # NNI's files went, the user's stayed
    assert recent.exists() and running.exists() and (outside / 'log' / 'experiment.log').exists()
    assert (mine / 'log' / 'train.log').exists() and (home / 'dddd4444').is_symlink()
    assert set(json.loads((home / '.experiment').read_text())) == {'eeee5555'}


def test_clean_experiments_refuses_a_negative_age(tmp_path):
    with pytest.raises(SystemExit):
        clean_experiments.parse_args(['--dir', str(tmp_path), '--older-than', '-1'])
