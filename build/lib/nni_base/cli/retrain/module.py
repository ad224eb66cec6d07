"""The LightningModule that retrains a fixed DARTS network (auxiliary loss, drop-path ramp, SGD + cosine)."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn as nn
import torch.nn.functional as F
from torchmetrics.functional.classification import multiclass_accuracy

from ...data.augment import SeededShuffleSampler, derive_seed
from ...space.darts import DartsTaskSpace
from ...tasks.metrics import accuracy as accuracy_of
from .recipe import RetrainRecipe

__all__ = ['RetrainModule']


class RetrainModule(pl.LightningModule):
    """Trains a fixed DARTS network: auxiliary loss, drop-path ramp, SGD + cosine schedule.

    Parameters
    ----------
    network
        From :func:`build_network`.
    recipe
        Optimiser, schedule and loss settings.
    seed
        Seeds the drop-path masks per (epoch, batch), so a resumed run repeats an uninterrupted one.
    sampler
        The training sampler, told the epoch here too (Lightning only reaches the outer sampler when it
        wraps ours for distributed training).
    """

    def __init__(
        self, network: DartsTaskSpace, recipe: RetrainRecipe, seed: int = 0, sampler: SeededShuffleSampler | None = None
    ):
        super().__init__()
        self.network = network
        self.recipe = recipe
        self.seed = int(seed)
        self.sampler = sampler
        self.train_criterion = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.network(x)
        return out[0] if isinstance(out, tuple) else out

    def drop_path_prob(self, epoch: int) -> float:
        """Linear ramp from 0 at the first epoch to the recipe's value at the end (DARTS)."""
        return self.recipe.drop_path_prob * epoch / self.recipe.epochs

    def on_train_epoch_start(self) -> None:
        epoch = self.current_epoch
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)
        self.network.set_drop_path_prob(self.drop_path_prob(epoch))  # NNI DARTS (NDS) method
        self.log('drop_path_prob', self.drop_path_prob(epoch), on_step=False, on_epoch=True)

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        # Drop-path masks come from the global RNG, which Lightning and the data loaders also draw from (a
        # different number of times in a resumed run); a per-batch seed makes the masks independent of that.
        torch.manual_seed(derive_seed(self.seed, self.current_epoch, batch_idx, self.global_rank))

    def training_step(self, batch, batch_idx):
        x, y = batch
        out = self.network(x)
        logits, aux = out if isinstance(out, tuple) else (out, None)
        loss = self.train_criterion(logits, y)
        if aux is not None:
            loss = loss + self.recipe.aux_weight * self.train_criterion(aux, y)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f'non-finite training loss at epoch {self.current_epoch}, batch {batch_idx}: '
                'lower learning_rate in the recipe'
            )
        acc = accuracy_of(logits, y)
        self.log_dict(
            {'train_loss': loss, 'train_acc': acc},
            prog_bar=True,
            on_step=True,
            on_epoch=True,
            batch_size=len(y),
            sync_dist=False,
        )
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        k = min(5, logits.shape[-1])
        # val_acc counts topk's first index, not argmax: the two break exact ties differently, and the logged
        # numbers stay what they were.
        top1 = logits.topk(k, dim=-1).indices[:, 0]
        options = dict(num_classes=logits.shape[-1], average='micro', validate_args=False)
        metrics = {
            'val_loss': F.cross_entropy(logits, y),
            'val_acc': multiclass_accuracy(top1, y, **options),
            f'val_top{k}': multiclass_accuracy(logits, y, top_k=k, **options),
        }
        self.log_dict(metrics, prog_bar=True, on_epoch=True, batch_size=len(y), sync_dist=True)

    def configure_optimizers(self):
        r = self.recipe
        optimizer = torch.optim.SGD(
            self.network.parameters(), lr=r.learning_rate, momentum=r.momentum, weight_decay=r.weight_decay
        )
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=r.epochs, eta_min=r.min_learning_rate)
        return {'optimizer': optimizer, 'lr_scheduler': {'scheduler': scheduler, 'interval': 'epoch'}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Provenance in plain types, so weights_only loading accepts it.
        checkpoint['nni_base'] = {'recipe': self.recipe.to_dict(), 'seed': self.seed}
