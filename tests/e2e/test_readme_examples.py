"""The README's promises as a user meets them: ``make demo``, the shipped nnictl config and its search space."""

from __future__ import annotations

import importlib.util
import itertools
import json
import math
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
README = (REPO / 'README.md').read_text()
NNICTL_GUIDE = (REPO / 'docs' / 'user-guide' / 'nnictl.md').read_text()

# The demo at the smallest size that still runs every stage (meta-training, three searches, retraining, plots).
DEMO_SIZE = [
    '--width',
    '4',
    '--num-cells',
    '3',
    '--meta-epochs',
    '1',
    '--steps-per-epoch',
    '2',
    '--tasks-per-step',
    '1',
    '--inner-steps',
    '1',
    '--shots',
    '5',
    '--queries',
    '5',
    '--images-per-class',
    '20',
    '--search-epochs',
    '1',
    '--retrain-epochs',
    '1',
    '--random-cells',
    '2',
]
DEMO_METHODS = (
    'BASE from the prior',
    'BASE from the shipped prior',
    'BASE without a prior',
    "NNI's GumbelDARTS",
    'random cells (median of 2)',
)


def _make_recipe(target: str) -> list[str]:
    """The command ``make <target>`` runs, from the Makefile itself (``$(VENV)/bin/python`` -> this interpreter)."""
    lines = (REPO / 'Makefile').read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(rf'{re.escape(target)}:', line))
    recipe = lines[start + 1].strip()
    assert recipe.startswith('$(VENV)/bin/python '), recipe
    return shlex.split(recipe)[1:]


def _readme_output_files() -> list[str]:
    """The files the README says the demo writes: the backticked names after 'Results land in'."""
    sentence = README.split('Results land in', 1)[1].split('\n\n', 1)[0]
    names = re.findall(r'`([^`]+)`', sentence)
    assert names[0] == 'runs/quickstart/', names
    return [name.rstrip('/') for name in names[1:]]


@pytest.fixture(scope='module')
def demo(tmp_path_factory):
    """``make demo``'s command at a small size, in a fresh process, from the repository root."""
    args = _make_recipe('demo')
    assert args[:3] == ['examples/quickstart.py', '--output-dir', 'runs/quickstart'], args
    out = tmp_path_factory.mktemp('demo') / 'quickstart'
    command = [sys.executable, args[0], '--output-dir', str(out), '--threads', '1', *DEMO_SIZE]
    env = {**os.environ, 'PYTHONWARNINGS': 'ignore'}
    proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, proc.stdout


@pytest.mark.e2e
def test_demo_writes_every_file_the_readme_lists(demo):
    out, _ = demo
    promised = _readme_output_files()
    assert {
        'prior.pt',
        'arch.json',
        'probs.json',
        'genotype.txt',
        'cells.png',
        'prior.png',
        'meta_curves.png',
        'summary.json',
        'logs',
    } <= set(promised), promised
    for name in promised:
        path = out / name
        assert path.exists(), f'the README promises {name} in the demo output; it is missing'
        if path.suffix == '.png':
            assert path.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n', name
    assert {p.name for p in (out / 'logs').iterdir()} == {
        'meta',
        'base_from_the_prior',
        'base_from_the_shipped_prior',
        'base_without_a_prior',
        'nnis_gumbeldarts',
    }
    assert (out / 'logs' / 'meta' / 'version_0' / 'metrics.csv').stat().st_size > 0

    from nni.nas.hub.pytorch import DARTS

    from nni_base import load_prior
    from nni_base.space.genotype import format_genotype, sample_to_genotype

    sample = json.loads((out / 'arch.json').read_text())
    DARTS(width=4, num_cells=3).freeze(sample)  # a standard NNI DARTS sample
    assert (out / 'genotype.txt').read_text().strip() == format_genotype(sample_to_genotype(sample))
    probs = json.loads((out / 'probs.json').read_text())
    assert all(abs(sum(p.values()) - 1) < 1e-5 for p in probs.values()) and len(probs) == 2 * 14
    prior = load_prior(out / 'prior.pt')
    assert prior['meta']['steps'] == 2 and set(prior['alpha']) == {'normal', 'reduce'}


@pytest.mark.e2e
def test_demo_prints_the_figures_the_readme_shows_and_saves_them(demo):
    out, stdout = demo
    summary = json.loads((out / 'summary.json').read_text())
    # The same table as the README's demo output, with the numbers of this run: every method, its search seconds
    # and the retrained test accuracy of its exported cell.
    assert (
        'Held-out texture classes (5 classes: 60 search-train, 20 search-validation, 20 test images), 1 search '
        'epochs through NasExperiment + Classification' in stdout
    )
    assert tuple(summary['methods']) == DEMO_METHODS
    for name in DEMO_METHODS:
        row = re.search(rf'^  {re.escape(name)} +(\d+) +(\d\.\d{{3}})$', stdout, re.MULTILINE)
        assert row, f'the demo table has no row for {name}'
        seconds, accuracy = int(row.group(1)), float(row.group(2))
        assert accuracy == round(summary['methods'][name]['retrained_test_accuracy'], 3)
        assert seconds == round(summary['methods'][name]['search_seconds'])
    concentration = re.search(
        r'alpha concentration \(mean max probability per edge, uniform 0\.125\): prior '
        r'normal (\d\.\d\d), reduce (\d\.\d\d)',
        stdout,
    )
    for label, printed in zip(('normal', 'reduce'), concentration.groups()):
        value = summary['prior_alpha_mean_max_prob'][label]
        assert float(printed) == round(value, 2) and 0.125 <= value <= 1.0
    assert summary['meta_train_seconds'] > 0


def test_demo_defaults_are_the_readme_run():
    """The size flags used above leave the defaults of ``make demo`` as the README describes them."""
    spec = importlib.util.spec_from_file_location('quickstart', REPO / 'examples' / 'quickstart.py')
    quickstart = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(quickstart)
    args = quickstart.parse_args(_make_recipe('demo')[1:])
    assert (args.family, args.ways, args.images_per_class, args.search_epochs, args.retrain_epochs, args.seed) == (
        'texture',
        5,
        60,
        6,
        6,
        0,
    )
    assert (
        'Held-out texture classes (5 classes: 180 search-train, 60 search-validation, 60 test images), 6 search '
        'epochs' in README
    )


# ---- the nnictl config as shipped ---------------------------------------------------------------------------------
CONFIG = REPO / 'examples' / 'base_exp.yml'


def test_readme_runs_nnictl_with_the_shipped_config_from_the_repository_root():
    assert 'nnictl create --config examples/base_exp.yml --port 8080' in README
    assert (REPO / 'examples' / 'base_exp.yml').is_file()  # the README's relative path, from the repository root


def test_shipped_nnictl_config_paths_resolve(tmp_path, monkeypatch):
    """NNI's own loader (what ``nnictl create`` calls) resolves every path; none may depend on the shell's folder."""
    from nni.experiment.config import ExperimentConfig

    raw = yaml.safe_load(CONFIG.read_text())
    monkeypatch.chdir(tmp_path)  # paths are relative to the config file, not to where nnictl runs
    config = ExperimentConfig.load(str(REPO / 'examples' / 'base_exp.yml'))
    canonical = config.canonical_copy()  # validates, resolves paths against the file's folder, reads the space
    assert Path(canonical.trial_code_directory) == REPO
    assert Path(canonical.search_space_file) == REPO / 'search_spaces' / 'base_hparams.json'
    assert canonical.search_space == json.loads((REPO / 'search_spaces' / 'base_hparams.json').read_text())
    # The trial command imports nni_base from the trial code directory.
    command = shlex.split(raw['trialCommand'])
    assert command[1:3] == ['-m', 'nni_base.cli.trial'] and command[0] == 'python'
    assert (Path(canonical.trial_code_directory) / 'nni_base' / 'cli' / 'trial.py').is_file()
    assert raw['trainingService']['platform'] == 'local' and raw['trialGpuNumber'] == 0
    # Every path-valued key of the shipped file resolves to something that exists.
    for key in ('searchSpaceFile', 'trialCodeDirectory'):
        assert (CONFIG.parent / raw[key]).resolve().exists(), key


# ---- the hyper-parameter file against the trial's validation ---------------------------------------------------
def _candidates(spec: dict) -> list:
    kind, values = spec['_type'], spec['_value']
    if kind == 'choice':
        return list(values)
    if kind in ('uniform', 'loguniform'):
        low, high = values
        assert low < high and (kind == 'uniform' or low > 0), spec
        middle = (low + high) / 2 if kind == 'uniform' else math.sqrt(low * high)
        return [low, middle, high]
    raise AssertionError(f'unexpected search space type {kind!r}: add it to this test')


def test_every_tuner_value_in_the_search_space_passes_the_trials_validation():
    from nni_base.cli.trial import DEFAULT_PARAMS, validate_params

    space = json.loads((REPO / 'search_spaces' / 'base_hparams.json').read_text())
    names = re.search(r'`search_spaces/base_hparams.json` tunes (.*?)\.', NNICTL_GUIDE.replace('\n', ' ')).group(1)
    assert set(re.findall(r'`(\w+)`', names)) == set(space), "the nnictl guide's list of tuned parameters"
    assert set(space) <= set(DEFAULT_PARAMS)
    grid = [_candidates(spec) for spec in space.values()]
    combinations = 0
    for values in itertools.product(*grid):  # the extremes and middle of every range, in every combination
        params = dict(zip(space, values))
        validated = validate_params(params)
        assert all(validated[k] == pytest.approx(v) for k, v in params.items())
        combinations += 1
    assert combinations > 1000
