"""Lightning callbacks of BASE's runs: the prior written to disk, a warning when torch threads oversubscribe the CPU."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path

import pytorch_lightning as pl
import torch

__all__ = ['PriorCheckpoint', 'ThreadCheck', 'oversubscription']


class PriorCheckpoint(pl.Callback):
    """Save the prior after every training epoch and at the end of the run.

    Each write is atomic and a prior with non-finite values is refused, so a run that diverges
    keeps the last good prior on disk. Under DDP only global rank 0 writes (every rank holds the same
    prior, see :mod:`nni_base.search.distributed`).
    """

    def __init__(self, save: Callable[[Path], object], path: str | os.PathLike):
        self.save = save  # BaseStrategy.save_prior: the strategy knows the space and the task description
        self.path = Path(path)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            self.save(self.path)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            self.save(self.path)


def oversubscription(threads: int, load: float, cores: int) -> str | None:
    """Why ``threads`` torch threads on a machine with this 1-minute ``load`` and ``cores`` will crawl, or None.

    Several multi-threaded torch processes on shared cores spin-wait on each other: the same meta-training took
    56 s alone and 343 s each as two 2-thread runs on 2 cores, while two 1-thread runs took 57 s each
    (``benchmarks/meta_training_speed.py``), so one thread per process is the fix.
    """
    if threads <= 1 or load + threads <= cores + 0.5:
        return None
    return (
        f'torch uses {threads} threads on a machine with {cores} cores already running {load:.1f} busy threads '
        '(1-minute load): multi-threaded torch processes on shared cores slow each other down up to 8x. Call '
        'torch.set_num_threads(1) (or set OMP_NUM_THREADS=1) in each process.'
    )


class ThreadCheck(pl.Callback):
    """Warn once, at the start of a CPU run, when torch's threads would oversubscribe an already busy machine."""

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if pl_module.device.type != 'cpu' or not hasattr(os, 'getloadavg'):
            return
        message = oversubscription(torch.get_num_threads(), os.getloadavg()[0], os.cpu_count() or 1)
        if message is not None:
            warnings.warn(message, RuntimeWarning, stacklevel=2)
