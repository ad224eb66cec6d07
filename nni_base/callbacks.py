"""Lightning callbacks that write BASE's results to disk."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytorch_lightning as pl

if TYPE_CHECKING:
    from .strategy import BaseStrategy

__all__ = ['PriorCheckpoint']


class PriorCheckpoint(pl.Callback):
    """Save the prior after every training epoch and at the end of the run.

    Each write is atomic and a prior with non-finite values is refused, so a run that diverges
    keeps the last good prior on disk.
    """

    def __init__(self, strategy: BaseStrategy, path: str | os.PathLike):
        self.strategy = strategy
        self.path = Path(path)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.strategy.save_prior(self.path)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.strategy.save_prior(self.path)
