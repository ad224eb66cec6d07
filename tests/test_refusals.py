"""Every bad input a user meets, refused with a message that names the problem and the fix: one table, one row each.

A row is ``(id, do, error, message)``: ``do(tmp_path)`` does the bad thing, which must raise ``error`` with a
message matching the regex ``message``. Rows stay fast (at most a meta-step); a new refusal gets a row here, so the
list cannot regress. Below the table: that a refused write left the path as it was, and the config checker.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import socket
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn as nn
from nni.nas.evaluator import FunctionalEvaluator
from nni.nas.nn.pytorch import ModelSpace
from torch.utils.data import TensorDataset

from nni_base import (
    BaseStrategy,
    CorruptPriorError,
    MetaTrainingConfig,
    PriorMismatchError,
    SupernetConfig,
    TaskDistribution,
    load_prior,
    save_prior,
)
from nni_base.api import build_supernet
from nni_base.cli import check_config, database, recipes, trial
from nni_base.cli.retrain import __main__ as retrain_cli
from nni_base.data import digits_splits
from nni_base.data.checks import check_batch
from nni_base.io import UnusablePathError, write_json, write_text
from nni_base.prior import PRIOR_FORMAT, PRIOR_VERSION
from nni_base.space.darts import DartsTaskSpace
from tests.helpers import classification, episodic_evaluator, run, tiny_space

REPO = Path(__file__).resolve().parent.parent
X = torch.randn(20, 3, 8, 8, generator=torch.Generator().manual_seed(0))
Y = torch.arange(20) % 5


# ---- builders of bad paths and files (each under tmp_path) ------------------------------------------------------
def _fifo(tmp: Path, name: str = 'prior.pt') -> Path:
    os.mkfifo(tmp / name)
    return tmp / name


def _device(tmp: Path, name: str = 'prior.pt') -> Path:
    """A character device like /dev/null (1, 3), made under tmp_path: the real /dev is never touched."""
    try:
        os.mknod(tmp / name, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:
        pytest.skip('making a device node needs root')
    return tmp / name


def _socket(tmp: Path) -> Path:
    path = tmp / 's'
    if len(str(path)) > 100:  # AF_UNIX paths are limited to about 108 bytes
        pytest.skip('tmp_path too long for a Unix socket')
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    sock.close()  # the socket file stays
    return path


def _file(tmp: Path, name: str = 'file') -> Path:
    (tmp / name).write_text('a regular file')
    return tmp / name


def _dir(tmp: Path, name: str = 'folder') -> Path:
    (tmp / name).mkdir()
    return tmp / name


def _link(tmp: Path, target: Path) -> Path:
    (tmp / 'link').symlink_to(target)
    return tmp / 'link'


def _prior_like() -> dict[str, Any]:
    """A prior file's entries without training: for a space without choices (so it fits no real space)."""
    return {
        'format': PRIOR_FORMAT,
        'version': PRIOR_VERSION,
        'space': {'class': 'x', 'signature': {}},
        'state_dict': {'w': torch.zeros(2)},
        'alpha': {'normal': torch.zeros(3, 2)},
        'config': {},
    }


def _saved(tmp: Path, content: Any, name: str = 'prior.pt') -> Path:
    torch.save(content, tmp / name)
    return tmp / name


def _written(tmp: Path, data: bytes, name: str = 'prior.pt') -> Path:
    (tmp / name).write_bytes(data)
    return tmp / name


def _quickstart() -> Any:
    spec = importlib.util.spec_from_file_location('quickstart', REPO / 'examples' / 'quickstart.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


class ConfigProblems(Exception):
    """check_config's report as an exception, so its rows fit the table."""


def _config_problems(tmp: Path, text: str) -> None:
    (tmp / 'exp.yml').write_text(text)
    problems = check_config.check_config(tmp / 'exp.yml')
    if problems:
        raise ConfigProblems('\n'.join(problems))


class NoChoices(ModelSpace):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(x)


def _nan_meta_step(meta_algorithm: str) -> None:
    """One meta-step on tasks that draw every image of a 10-image dataset, one of which holds a NaN."""
    x = torch.randn(10, 3, 8, 8)
    x[3, 0, 2, 2] = float('nan')
    tasks = TaskDistribution(TensorDataset(x, torch.arange(10) % 5), ways=5, shots=1, queries=1)
    run(
        tiny_space(),
        episodic_evaluator(tasks, steps_per_epoch=1),
        BaseStrategy(inner_steps=1, meta_algorithm=meta_algorithm),
    )


_SPACE_FILE = f'searchSpaceFile: {REPO / "search_spaces" / "base_hparams.json"}'
_EXP = (
    (REPO / 'examples' / 'base_exp.yml')
    .read_text()
    .replace('searchSpaceFile: ../search_spaces/base_hparams.json', _SPACE_FILE)
)


def _config(old: str, new: str) -> Callable[[Path], None]:
    """The shipped experiment config with ``old`` replaced by ``new``, checked."""
    assert old in _EXP
    return lambda t: _config_problems(t, _EXP.replace(old, new))


def _batch(x: torch.Tensor, y: torch.Tensor) -> Callable[[Path], None]:
    return lambda t: check_batch((x, y), where='the first training batch', channels=3, num_classes=5)


Row = tuple[str, Callable[[Path], Any], type[BaseException], str]

REFUSALS: list[Row] = [
    # ---- writes never replace what is not a regular file (checked when the path is given, before training) ----
    (
        'save_prior_to is a FIFO',
        lambda t: BaseStrategy(save_prior_to=_fifo(t)),
        UnusablePathError,
        r'prior\.pt is a FIFO \(named pipe\), not a regular file: refusing to write the prior \(save_prior_to\) '
        r'there.*Nothing was written',
    ),
    (
        'save_prior_to is a device node',
        lambda t: BaseStrategy(save_prior_to=_device(t)),
        UnusablePathError,
        r'prior\.pt is a character device, not a regular file.*the write would replace it',
    ),
    (
        'save_prior_to is a directory',
        lambda t: BaseStrategy(save_prior_to=_dir(t)),
        UnusablePathError,
        r'folder is a directory, not a regular file.*e\.g\. .*folder/prior\.pt',
    ),
    (
        'save_prior_to is a socket',
        lambda t: BaseStrategy(save_prior_to=_socket(t)),
        UnusablePathError,
        r'/s is a socket, not a regular file',
    ),
    (
        'save_prior_to links to a FIFO',
        lambda t: BaseStrategy(save_prior_to=_link(t, _fifo(t))),
        UnusablePathError,
        r'link is a symbolic link to a FIFO \(named pipe\) \(.*prior\.pt\), not a regular file',
    ),
    (
        'save_prior_to under a file',
        lambda t: BaseStrategy(save_prior_to=_file(t) / 'prior.pt'),
        UnusablePathError,
        r'Cannot write the prior \(save_prior_to\) to .*file/prior\.pt: .*file is a regular file, not a folder, so '
        r'nothing can be created under it\. Nothing was written; choose a path under a folder\.$',
    ),
    (
        'save_prior under a file: no advice to free space',
        lambda t: save_prior(_prior_like(), _file(t) / 'sub' / 'p.pt'),
        UnusablePathError,
        r'^Cannot write the prior to .*file is a regular file, not a folder(?!.*free space)',
    ),
    (
        'write_json over a FIFO',
        lambda t: write_json(_fifo(t, 'arch.json'), {}),
        UnusablePathError,
        r'arch\.json is a FIFO \(named pipe\), not a regular file: refusing to write the file there',
    ),
    (
        'write_text over a directory',
        lambda t: write_text(_dir(t), 'x'),
        UnusablePathError,
        r'folder is a directory, not a regular file',
    ),
    (
        'demo --output-dir is a file',
        lambda t: _quickstart().parse_args(['--output-dir', str(_file(t))]),
        SystemExit,
        r'^quickstart\.py: error: Cannot use .*file as the --output-dir: it is a regular file, not a folder',
    ),
    (
        'demo --output-dir holds a FIFO prior.pt',
        lambda t: _quickstart().parse_args(['--output-dir', str(_fifo(t).parent)]),
        SystemExit,
        r'^quickstart\.py: error: .*prior\.pt is a FIFO \(named pipe\), not a regular file',
    ),
    (
        'recipes --output-dir is a FIFO',
        lambda t: recipes.parse_args(['meta-train', '--imagenet32', 'x', '--output-dir', str(_fifo(t, 'out'))]),
        SystemExit,
        r'^python -m nni_base\.cli\.recipes: error: Cannot use .*out as the --output-dir: it is a FIFO',
    ),
    (
        'retrain --output-dir is a file',
        lambda t: retrain_cli.parse_args(
            ['--recipe', 'cifar10', '--arch', 'darts-v2', '--data-root', str(t), '--output-dir', str(_file(t))]
        ),
        SystemExit,
        r'^python -m nni_base\.cli\.retrain: error: Cannot use .*file as the --output-dir',
    ),
    (
        'trial output folder under a file',
        lambda t: trial.main(['--params', '{"num_threads": 0}', '--output-dir', str(_file(t) / 'out')]),
        SystemExit,
        r'^python -m nni_base\.cli\.trial: error: Cannot write into the trial output folder .*file is a regular file, '
        r'not a folder',
    ),
    (
        'database --output is a directory',
        lambda t: database.main(['--output', str(_dir(t))]),
        SystemExit,
        r'^python -m nni_base\.cli\.database: error: .*folder is a directory, not a regular file: refusing to write '
        r'the database \(--output\) there.*e\.g\. .*folder/database\.json',
    ),
    # ---- priors: what the path is, what prior= takes, what a prior file is ----
    (
        'prior is a directory',
        lambda t: BaseStrategy(prior=_dir(t)),
        UnusablePathError,
        r'Prior .*folder is a directory, not a prior file\. Give the path of the file meta-training wrote',
    ),
    (
        'prior is a directory holding prior.pt',
        lambda t: BaseStrategy(prior=_saved(_dir(t), _prior_like()).parent),
        UnusablePathError,
        r'is a directory, not a prior file; pass .*folder/prior\.pt',
    ),
    (
        'prior is a FIFO (reading would block)',
        lambda t: load_prior(_fifo(t)),
        UnusablePathError,
        r'is a FIFO \(named pipe\), not a prior file',
    ),
    (
        'prior=5',
        lambda t: BaseStrategy(prior=5),
        TypeError,
        r'A prior is given as the path of a prior file \(a str or os\.PathLike .*got int 5.*save_prior_to',
    ),
    (
        'prior is torch.save({"a": 1})',
        lambda t: BaseStrategy(prior=_saved(t, {'a': 1})),
        CorruptPriorError,
        r"is not an nni-base prior: it holds a dict with keys \['a'\], without the 'nni-base-prior' format marker\. "
        r'A prior is the file BaseStrategy\(save_prior_to=\.\.\.\) writes while meta-training .*as prior=',
    ),
    (
        'prior is a Lightning checkpoint',
        lambda t: load_prior(_saved(t, {'state_dict': {}, 'pytorch-lightning_version': '2.5'})),
        CorruptPriorError,
        r'It is a Lightning checkpoint: pass it as BaseStrategy\(resume_from=\.\.\.\)',
    ),
    (
        'prior is a tensor',
        lambda t: load_prior(_saved(t, torch.zeros(2))),
        CorruptPriorError,
        r'it holds a Tensor, without the .*format marker.*save_prior_to',
    ),
    (
        'prior does not exist',
        lambda t: load_prior(t / 'nope.pt'),
        FileNotFoundError,
        r'nope\.pt does not exist\. Name a shipped prior .* or meta-train one first',
    ),
    (
        'prior of random bytes',
        lambda t: load_prior(_written(t, bytes(range(256)) * 8)),
        CorruptPriorError,
        r'(?i)prior .*prior\.pt.*meta-train again',
    ),
    ('prior is empty', lambda t: load_prior(_written(t, b'')), CorruptPriorError, r'prior\.pt.*meta-train again'),
    (
        'prior is truncated',
        lambda t: load_prior(_written(t, save_prior(_prior_like(), t / 'p.pt').read_bytes()[:300])),
        CorruptPriorError,
        r'Cannot read prior .*prior\.pt.*damaged \(cut off',
    ),
    (
        'prior of another space',
        lambda t: build_supernet(tiny_space(), BaseStrategy(prior=_saved(t, _prior_like()))),
        PriorMismatchError,
        r'meta-trained on another search space .*Build the space with the same arguments',
    ),
    (
        'prior with NaN is not saved',
        lambda t: save_prior({**_prior_like(), 'alpha': {'normal': torch.full((3, 2), float('nan'))}}, t / 'p.pt'),
        FloatingPointError,
        r'Refusing to save a prior with non-finite values',
    ),
    # ---- training budgets and data ----
    (
        'max_epochs=0 through NasExperiment',
        lambda t: run(tiny_space(), classification(TensorDataset(X, Y), max_epochs=0), BaseStrategy()),
        ValueError,
        r'trains with max_epochs=0: no training step would run.*e\.g\. Classification\(\.\.\., max_epochs=1\)',
    ),
    (
        'max_steps=0',
        lambda t: BaseStrategy().mutate_evaluator(classification(TensorDataset(X, Y), max_steps=0)),
        ValueError,
        r'trains with max_steps=0: no training step would run.*max_steps=-1',
    ),
    (
        'limit_train_batches=0',
        lambda t: BaseStrategy().mutate_evaluator(classification(TensorDataset(X, Y), limit_train_batches=0)),
        ValueError,
        r'trains with limit_train_batches=0: .*limit_train_batches=1\.0',
    ),
    (
        'max_epochs=0 in meta-training',
        lambda t: BaseStrategy().mutate_evaluator(
            episodic_evaluator(TaskDistribution(digits_splits()['train'], 5, 1, 1), max_epochs=0)
        ),
        ValueError,
        r'trains with max_epochs=0.*EpisodicClassification\(\.\.\., max_epochs=1\)',
    ),
    (
        'NaN in one image while meta-training (Reptile)',
        lambda t: _nan_meta_step('reptile'),
        ValueError,
        r'^1 of 5 support images of the task at meta-step 0 .*contain NaN or inf values: the data, not the learning '
        r'rates(?!.*inner_lr).*torch\.nan_to_num',
    ),
    (
        'NaN in one image while meta-training (MAML)',
        lambda t: _nan_meta_step('maml'),
        ValueError,
        r'^1 of 5 support images of the task at .*contain NaN or inf values: the data, not the learning rates',
    ),
    (
        'NaN image in a batch',
        _batch(X.clone().index_fill_(0, torch.tensor([3]), float('nan')), Y),
        ValueError,
        r'1 of 20 images contain NaN',
    ),
    ('channels-last batch', _batch(X.permute(0, 2, 3, 1), Y), ValueError, r'channels-last .*permute\(0, 3, 1, 2\)'),
    ('uint8 batch', _batch((X * 50).clamp(0, 255).to(torch.uint8), Y), ValueError, r'uint8 tensors.*\.float\(\) / 255'),
    ('grey images', _batch(X[:, :1], Y), ValueError, r"1 channel but the space's stem reads 3.*repeat"),
    (
        'label past the head',
        _batch(X, Y + 3),
        ValueError,
        r'a label is 7 but .*classifier has 5 outputs.*num_classes=8',
    ),
    ('float labels', _batch(X, Y.float()), ValueError, r'labels are float32.*\.long\(\)'),
    (
        'more ways than classes',
        lambda t: TaskDistribution(digits_splits()['test'], ways=10, shots=1, queries=1),
        ValueError,
        r'ways',
    ),
    (
        'more shots than images',
        lambda t: TaskDistribution(digits_splits()['test'], ways=5, shots=150, queries=100),
        ValueError,
        r'shots',
    ),
    # ---- spaces, evaluators, options ----
    (
        'space without choices',
        lambda t: BaseStrategy().mutate_model(NoChoices()),
        ValueError,
        r'has no choices: there is nothing to search',
    ),
    (
        'evaluator that is not Lightning',
        lambda t: BaseStrategy().mutate_evaluator(FunctionalEvaluator(lambda model: None)),
        TypeError,
        r'needs a Lightning evaluator',
    ),
    (
        'average_alpha_tasks without episodes',
        lambda t: BaseStrategy(meta_training=MetaTrainingConfig(average_alpha_tasks=2)).mutate_evaluator(
            classification(TensorDataset(X, Y))
        ),
        TypeError,
        r'average_alpha_tasks needs an EpisodicClassification',
    ),
    ('inner_steps=0', lambda t: BaseStrategy(inner_steps=0), ValueError, r'inner_steps'),
    ('outer_lr=nan', lambda t: BaseStrategy(outer_lr=float('nan')), ValueError, r'outer_lr'),
    (
        'supernet= not a SupernetConfig',
        lambda t: BaseStrategy(supernet={'sample_none': True}),
        TypeError,
        r'supernet= takes a SupernetConfig',
    ),
    (
        'samples_per_step=0',
        lambda t: SupernetConfig(samples_per_step=0),
        ValueError,
        r'SupernetConfig\.samples_per_step must be >= 1',
    ),
    (
        'width=0',
        lambda t: DartsTaskSpace(num_classes=5, width=0),
        ValueError,
        r'width must be at least 1 .*got width=0: pass a positive width such as DartsTaskSpace\(width=16\)',
    ),
    (
        'num_cells=2',
        lambda t: DartsTaskSpace(num_classes=5, num_cells=2),
        ValueError,
        r'num_cells must be at least 3 \(one cell per stage',
    ),
    # ---- the trial CLI's parameters ----
    (
        'trial inner_steps=0',
        lambda t: trial.validate_params({'inner_steps': 0}),
        ValueError,
        r"parameter 'inner_steps' must be >= 1",
    ),
    (
        'trial unknown parameter',
        lambda t: trial.validate_params({'inner_lrr': 0.1}),
        ValueError,
        r"unknown parameter\(s\) 'inner_lrr'; accepted parameters are: .*inner_lr",
    ),
    (
        'trial data_root missing',
        lambda t: trial.validate_params({'dataset': 'image_folder', 'data_root': str(t / 'no')}),
        ValueError,
        r"'data_root' is not a folder",
    ),
    (
        'trial --params not an object',
        lambda t: trial.main(['--params', '[1, 2]', '--output-dir', str(t)]),
        ValueError,
        r'--params must be a JSON object',
    ),
    # ---- nnictl experiment configs (python -m nni_base.cli.check_config) ----
    (
        'config: misspelled top-level key',
        _config('trialConcurrency', 'trialConcurency'),
        ConfigProblems,
        r"^trialConcurency: unknown key; did you mean 'trialConcurrency'\?$",
    ),
    (
        'config: misspelled trainingService key',
        _config('useActiveGpu', 'useActivGpu'),
        ConfigProblems,
        r"^trainingService\.useActivGpu: unknown key; did you mean 'useActiveGpu'\?$",
    ),
    (
        'config: misspelled platform',
        _config('platform: local', 'platform: locl'),
        ConfigProblems,
        r"^trainingService\.platform: 'locl' is not a platform NNI has; did you mean 'local'\?$",
    ),
    (
        'config: misspelled tuner key',
        _config('  name: TPE', '  nam: TPE'),
        ConfigProblems,
        r"^tuner\.nam: unknown key; did you mean 'name'\?$",
    ),
    (
        'config: search space parameter the trial does not take',
        _config(_SPACE_FILE, 'searchSpace:\n  inner_lrr: {_type: loguniform, _value: [0.01, 0.1]}'),
        ConfigProblems,
        r'^searchSpace\.inner_lrr: not a parameter of python -m nni_base\.cli\.trial; did you mean '
        r"'inner_lr'\?$",
    ),
    (
        'config: misspelled search space type',
        _config(_SPACE_FILE, 'searchSpace:\n  ways: {_type: choise, _value: [5]}'),
        ConfigProblems,
        r"^searchSpace\.ways\._type: 'choise' is not a search space type NNI has; did you mean "
        r"'choice'\?$",
    ),
    (
        'config: --params key in the trial command',
        _config(
            'trialCommand: python -m nni_base.cli.trial',
            'trialCommand: "python -m nni_base.cli.trial --params \'{\\"meta_epoch\\": 1}\'"',
        ),
        ConfigProblems,
        r'^trialCommand --params\.meta_epoch: not a parameter of python -m nni_base\.cli\.trial; did you '
        r"mean 'meta_epochs'\?$",
    ),
    (
        'config that is not YAML',
        lambda t: _config_problems(t, 'a: b: c'),
        check_config.ConfigReadError,
        r'exp\.yml is not valid YAML \(line 1\)',
    ),
]


@pytest.mark.parametrize(('do', 'error', 'message'), [row[1:] for row in REFUSALS], ids=[row[0] for row in REFUSALS])
def test_bad_input_is_refused_with_the_fix(do, error, message, tmp_path, monkeypatch):
    monkeypatch.setenv(trial.RANK_PARAMS_ENV, '')  # the trial's main sets it: restore its absence afterwards
    monkeypatch.delenv(trial.RANK_PARAMS_ENV)
    with pytest.raises(error) as info:
        do(tmp_path)
    text = str(info.value)
    assert re.search(message, text, flags=re.DOTALL | re.MULTILINE), f'{message!r} not in:\n{text}'
    if error is SystemExit:  # what a command prints: one line, not a traceback
        assert '\n' not in text and ' error: ' in text, text


def test_the_table_has_one_row_per_id():
    ids = [row[0] for row in REFUSALS]
    assert len(ids) == len(set(ids))


# ---- a refused write leaves the path as it was ----------------------------------------------------------------------
@pytest.mark.parametrize('make', [_fifo, _dir, _socket, _device], ids=['fifo', 'directory', 'socket', 'device'])
def test_a_refused_write_touches_nothing(make, tmp_path):
    path = make(tmp_path)
    before = os.lstat(path)
    with pytest.raises(UnusablePathError):
        write_json(path, {'a': 1})
    with pytest.raises(UnusablePathError):
        BaseStrategy(save_prior_to=path)
    after = os.lstat(path)
    assert (after.st_mode, after.st_ino, after.st_mtime_ns) == (before.st_mode, before.st_ino, before.st_mtime_ns)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temporary file left beside it


def test_under_a_file_nothing_is_created(tmp_path):
    blocker = _file(tmp_path)
    with pytest.raises(UnusablePathError):
        write_text(blocker / 'a' / 'b.txt', 'x')
    assert blocker.read_text() == 'a regular file' and sorted(tmp_path.iterdir()) == [blocker]


def test_a_link_to_a_regular_file_is_written_through(tmp_path):
    target = _file(tmp_path, 'target.json')
    link = _link(tmp_path, target)
    write_json(link, {'a': 1})
    assert link.is_symlink() and json.loads(target.read_text()) == {'a': 1}


def test_a_regular_file_and_a_new_path_are_still_written(tmp_path):
    assert json.loads(write_json(_file(tmp_path), [1]).read_text()) == [1]
    assert write_text(tmp_path / 'new' / 'deep' / 'x.txt', 'y').read_text() == 'y'
    BaseStrategy(save_prior_to=tmp_path / 'runs' / 'prior.pt')  # a folder that does not exist yet is fine


# ---- python -m nni_base.cli.check_config ----------------------------------------------------------------------------
def test_check_config_passes_the_shipped_config(capsys):
    assert check_config.main([str(REPO / 'examples' / 'base_exp.yml')]) == 0
    assert capsys.readouterr().out.strip().endswith('no misspelled keys')


def test_check_config_accepts_nni_spellings_and_reports_one_line_each(tmp_path, capsys):
    # NNI ignores case and underscores in keys: these are not misspellings
    spelled = _EXP.replace('trialConcurrency', 'trial_concurrency').replace('maxTrialNumber', 'MaxTrialNumber')
    (tmp_path / 'ok.yml').write_text(spelled)
    assert check_config.main([str(tmp_path / 'ok.yml')]) == 0
    capsys.readouterr()
    misspelled = _EXP.replace('trialConcurrency', 'trialConcurency').replace('useActiveGpu', 'gpu')
    (tmp_path / 'bad.yml').write_text(misspelled)
    assert check_config.main([str(tmp_path / 'bad.yml')]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith(f'{tmp_path / "bad.yml"}: ') for line in lines), lines
    assert check_config.main([str(tmp_path / 'missing.yml')]) == 2
