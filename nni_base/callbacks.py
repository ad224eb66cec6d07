"""Lightning callbacks that write BASE's results to disk."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytorch_lightning as pl

__all__ = ['PriorCheckpoint']


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
