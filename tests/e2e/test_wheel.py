"""A wheel works outside the checkout: what ships as package data (recipes, the database, the shipped prior) is
inside it.

The wheel is built from this checkout, installed into a fresh virtualenv that borrows this one's installed
packages (torch, NNI, ...; a ``.pth`` line, so nothing is downloaded) but not its editable nni_base, and run from a
folder with no source tree beside it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

CHECKS = """
import sys
from pathlib import Path

import nni_base
assert not Path(nni_base.__file__).resolve().is_relative_to(Path(sys.argv[1])), nni_base.__file__

from nni_base.cli.retrain.recipe import load_recipe
from nni_base.database.ground_truth import load_database
assert load_recipe('cifar10').dataset == 'cifar10'
assert load_database().complete

import nni
from nni.nas.evaluator.pytorch import Classification
from nni.nas.experiment import NasExperiment
from torch.utils.data import DataLoader, TensorDataset
from nni_base import BaseStrategy
from nni_base.prior import load_prior, prior_space
from nni_base.data import digits_splits

assert load_prior('default')['meta']['provenance']  # the shipped prior is in the wheel, loadable by name
test = digits_splits(image_size=16)['test']
data = TensorDataset(test.images, test.labels)
quiet = dict(logger=False, enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False)
evaluator = Classification(num_classes=8, train_dataloaders=nni.trace(DataLoader)(data, batch_size=16, shuffle=True),
                           val_dataloaders=nni.trace(DataLoader)(data, batch_size=64), max_epochs=1,
                           limit_train_batches=2, limit_val_batches=1, **quiet)
exp = NasExperiment(prior_space('default', num_classes=8), evaluator, BaseStrategy(prior='default'))
exp.run()
print('exported', len(exp.export_top_models(formatter='dict')[0]), 'choices')
"""


@pytest.mark.e2e
def test_a_wheel_installed_outside_the_checkout_has_its_data_and_runs(tmp_path):
    wheels = tmp_path / 'wheels'
    pip = [sys.executable, '-m', 'pip', '--disable-pip-version-check', '-q']
    # Built from a copy: an in-tree build leaves build/lib behind, and setuptools packs a later wheel from it,
    # modules deleted since included.
    source = tmp_path / 'source'
    shutil.copytree(ROOT / 'nni_base', source / 'nni_base', ignore=shutil.ignore_patterns('__pycache__'))
    for name in ('pyproject.toml', 'README.md'):
        shutil.copy2(ROOT / name, source / name)
    subprocess.run([*pip, 'wheel', '--no-deps', '--no-build-isolation', '-w', str(wheels), str(source)], check=True)
    (wheel,) = wheels.glob('nni_base-*.whl')
    with zipfile.ZipFile(wheel) as archive:
        shipped = {n for n in archive.namelist() if n.startswith('nni_base/') and n.endswith('.py')}
    assert shipped == {str(p.relative_to(ROOT)) for p in (ROOT / 'nni_base').rglob('*.py')}
    env = tmp_path / 'venv'
    subprocess.run([sys.executable, '-m', 'venv', '--without-pip', str(env)], check=True)
    python = env / 'bin' / 'python'
    site = Path(
        subprocess.run(
            [python, '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    # this virtualenv's packages, added as a plain path: its editable-install hook (a .pth there) is not run
    (site / 'borrowed.pth').write_text(sysconfig.get_paths()['purelib'] + '\n')
    subprocess.run([*pip, 'install', '--no-deps', '--no-index', '--target', str(site), str(wheel)], check=True)
    run = tmp_path / 'elsewhere'
    run.mkdir()
    clean = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'VIRTUAL_ENV')}
    clean['OMP_NUM_THREADS'] = clean.get('OMP_NUM_THREADS', '2')
    out = subprocess.run(
        [python, '-c', CHECKS, str(ROOT)], cwd=run, env=clean, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    exported = re.search(r'exported (\d+) choices', out.stdout)
    assert exported and int(exported.group(1)) > 0, out.stdout[-2000:]
    trial = subprocess.run(
        [python, '-m', 'nni_base.cli.trial', '--help'], cwd=run, env=clean, capture_output=True, text=True
    )
    assert trial.returncode == 0 and 'usage' in trial.stdout, trial.stderr[-2000:]
