"""Every caller that adapts a prior to one dataset runs the one adaptation step (search/adaptation.py)."""

import nni
import pytest
import torch
from nni.nas.evaluator.pytorch import Classification
from torch.utils.data import DataLoader, TensorDataset

import nni_base.search.adaptation as adaptation
from nni_base import BaseStrategy, TaskAdapter
from nni_base.api import adaptation_accuracy, build_supernet
from nni_base.tasks import Task
from tests.helpers import run as run_and_stop  # stops the experiment, even when it raises
from tests.helpers import tiny_space

X, Y = torch.randn(20, 3, 8, 8), torch.arange(20) % 5


@pytest.fixture()
def steps(monkeypatch):
    calls = []
    original = adaptation.adaptation_step

    def spy(supernet, *args, **kwargs):
        calls.append(type(supernet).__name__)
        return original(supernet, *args, **kwargs)

    monkeypatch.setattr(adaptation, 'adaptation_step', spy)
    return calls


def test_nas_experiment_with_classification_runs_the_adaptation_step(steps):
    loader = nni.trace(DataLoader)(TensorDataset(X, Y), batch_size=10)
    evaluator = Classification(
        num_classes=5,
        train_dataloaders=loader,
        val_dataloaders=loader,
        max_epochs=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        logger=False,
        enable_checkpointing=False,
    )
    run_and_stop(tiny_space(), evaluator, BaseStrategy())
    assert steps == ['SingleTaskModule'] * 2  # one per training batch


def test_task_adapter_and_adaptation_accuracy_run_the_adaptation_step(steps):
    supernet = build_supernet(tiny_space(), BaseStrategy())
    TaskAdapter(supernet).step(X, Y)
    assert len(steps) == 1
    adaptation_accuracy(supernet, [Task(X, Y, X, Y)], steps=3)
    assert len(steps) == 4


def test_evaluation_runs_in_eval_mode_after_recalibration():
    supernet = build_supernet(tiny_space(), BaseStrategy())
    adapter = TaskAdapter(supernet)
    adapter.step(X, Y)
    modes = []
    hook = supernet.training_module.model.register_forward_pre_hook(lambda m, _i: modes.append(m.training))
    adapter.accuracy(X, Y)
    hook.remove()
    assert modes == [True, False]  # recalibration pass over the remembered batch (train), then the score (eval)


def test_a_run_from_a_fresh_folder_leaves_nothing_there(tmp_path, monkeypatch):
    import subprocess
    import sys
    from pathlib import Path

    script = """
import nni, torch
from torch.utils.data import DataLoader, TensorDataset
from nni.nas.evaluator.pytorch import Classification
from nni.nas.experiment import NasExperiment
from nni_base import BaseStrategy, DartsTaskSpace
x, y = torch.randn(20, 3, 8, 8), torch.arange(20) % 5
loader = nni.trace(DataLoader)(TensorDataset(x, y), batch_size=10)
evaluator = Classification(num_classes=5, train_dataloaders=loader, val_dataloaders=loader, max_epochs=1)
NasExperiment(DartsTaskSpace(width=4, num_cells=3, num_classes=5), evaluator, BaseStrategy()).run()
"""
    root = Path(__file__).resolve().parents[2]
    env = {'PYTHONPATH': str(root), 'PATH': '/usr/bin:/bin', 'HOME': str(tmp_path / 'home'), 'TMPDIR': str(tmp_path)}
    work = tmp_path / 'work'
    work.mkdir()
    proc = subprocess.run(
        [sys.executable, '-c', script], cwd=work, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert list(work.iterdir()) == []  # no lightning_logs/, no checkpoints in the current folder
    assert not list(tmp_path.glob('nni-base-lightning-*'))  # the temporary root is gone at exit
    assert 'training_service' not in proc.stdout + proc.stderr
