"""Small shared builders for the tests (tiny sizes, fixed seeds)."""

from __future__ import annotations

import logging
import warnings

import nni
from nni.nas.evaluator.pytorch import Classification
from nni.nas.experiment import NasExperiment
from torch.utils.data import DataLoader

from nni_base import BaseStrategy, DartsTaskSpace, EpisodicClassification, TaskDistribution
from nni_base.data import digits_splits

WAYS = 5


def tiny_space(num_classes: int = WAYS) -> DartsTaskSpace:
    return DartsTaskSpace(width=4, num_cells=3, num_classes=num_classes)


def digits_tasks(shots: int = 5, queries: int = 5):
    splits = digits_splits()
    return (
        TaskDistribution(splits['train'], WAYS, shots, queries, name='digits-train'),
        TaskDistribution(splits['test'], WAYS, shots, queries, name='digits-test'),
    )


def episodic_evaluator(train, val=None, *, steps_per_epoch: int = 3, max_epochs: int = 1, **kwargs):
    return EpisodicClassification(
        train,
        val,
        tasks_per_step=2,
        steps_per_epoch=steps_per_epoch,
        val_episodes=2,
        max_epochs=max_epochs,
        logger=False,
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        **kwargs,
    )


#: Trainer options that keep a test's output quiet and its folder free of logs and checkpoints.
QUIET = {'logger': False, 'enable_progress_bar': False, 'enable_checkpointing': False, 'enable_model_summary': False}


def classification(train, val=None, *, num_classes: int = WAYS, batch_size: int = 10, **kwargs) -> Classification:
    """NNI's Classification over datasets (``val`` defaults to ``train``), quiet, in order (no shuffling)."""
    return Classification(
        num_classes=num_classes,
        train_dataloaders=nni.trace(DataLoader)(train, batch_size=batch_size),
        val_dataloaders=nni.trace(DataLoader)(train if val is None else val, batch_size=25),
        **{**QUIET, **kwargs},
    )


def run(space, evaluator, strategy: BaseStrategy) -> NasExperiment:
    exp = NasExperiment(space, evaluator, strategy)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        logging.getLogger('nni').setLevel(logging.ERROR)
        try:
            exp.run()
        finally:
            exp.stop()  # now, not from NNI's exit hook, which logs to streams pytest has closed
    return exp


def assert_same_forward_and_alpha_grads(sparse, dense, x) -> None:
    """Sparse and dense supernets (same weights) give the same output and alpha gradients for one hard sample."""
    import torch

    outputs, grads = [], []
    for net in (sparse, dense):
        net.training_module.model.train()
        torch.manual_seed(1)  # same Gumbel noise, so the same hard sample
        net.resample()
        out = net.training_module.model(x)
        out.square().sum().backward()
        outputs.append(out.detach())
        grads.append({label: a.grad.clone() for label, a in net.alphas().items()})
    assert torch.allclose(outputs[0], outputs[1], atol=1e-5)
    for label in ('normal', 'reduce'):
        assert grads[0][label].abs().sum() > 0, f'no gradient reached {label} alpha'
        assert torch.allclose(grads[0][label], grads[1][label], atol=1e-4, rtol=1e-3)


def claim_seed() -> int:
    """Seed of the claim tests (prior vs. scratch, trained vs. untrained): 0 in CI; set NNI_BASE_TEST_SEED to check
    that a claim holds for other seeds too."""
    import os

    return int(os.environ.get('NNI_BASE_TEST_SEED', '0'))


def paired_ci95(treatment, control) -> tuple[float, float, float]:
    """Mean per-task difference ``treatment - control`` and its two-sided 95% t interval ``(mean, low, high)``."""
    import math

    from scipy import stats

    diffs = [a - b for a, b in zip(treatment, control, strict=True)]
    n = len(diffs)
    assert n >= 2, 'a paired interval needs at least two tasks'
    mean = sum(diffs) / n
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
    half = float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
    return mean, mean - half, mean + half
