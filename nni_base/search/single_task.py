"""Single-task search and adaptation: BASE on one dataset through any Lightning evaluator.

With NNI's ``Classification`` (or any non-episodic evaluator) weights and α take a joint gradient
step per batch on a fresh Gumbel sample: started from a prior this is BASE's adaptation to a new
dataset, from scratch a plain Gumbel-softmax search. With ``freeze_architecture_after=N`` the
architecture is fixed to the derived cell after N steps and only its weights train. Before each
validation the derived cell's BatchNorm statistics are recomputed from the latest training batches
(``bn_recalibration_batches``), because while searching they were updated by other sub-networks.

Example
-------
>>> strategy = BaseStrategy(prior='prior.pt', freeze_architecture_after=24)   # doctest: +SKIP
>>> NasExperiment(space, Classification(train_dataloaders=..., val_dataloaders=...), strategy).run()  # doctest: +SKIP
"""

from __future__ import annotations

from collections import deque

import torch
from torch import nn

from ..errors import MetaTrainingDiverged
from ..space.gumbel_cell import derived_architecture
from .base import BaseSearchModule
from .config import DEFAULT_ARC_LEARNING_RATE

__all__ = ['SingleTaskModule', 'DEFAULT_ARC_LEARNING_RATE', 'BATCH_NORMS', 'architecture_optimizer']

#: The BatchNorm layers whose running statistics :meth:`SingleTaskModule.recalibrate_batchnorm` recomputes.
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def architecture_optimizer(alphas: list[torch.nn.Parameter], lr: float | None = None) -> torch.optim.Optimizer:
    """Alpha's optimizer in single-task search and adaptation: Adam at ``lr`` (None: the default step)."""
    return torch.optim.Adam(alphas, lr=DEFAULT_ARC_LEARNING_RATE if lr is None else lr, betas=(0.5, 0.999))


class SingleTaskModule(BaseSearchModule):
    """Searches (or adapts a prior) on the evaluator's one dataset."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # inputs of this epoch's latest training batches, for the BatchNorm recalibration before validation
        self.recent_inputs: deque[torch.Tensor] = deque(maxlen=self.config.bn_recalibration_batches)

    def configure_architecture_optimizers(self):
        if not self.arch_parameters():
            raise ValueError('The model space has no architecture logits; BaseStrategy found nothing to optimise.')
        return architecture_optimizer(self.arch_parameters(), self.config.arc_learning_rate)

    def architecture_frozen(self, step: int) -> bool:
        """Whether step ``step`` trains the derived architecture only (``freeze_architecture_after``)."""
        after = self.config.freeze_architecture_after
        return after is not None and step >= after

    def training_step(self, batch, batch_idx):
        arch_optim = self.architecture_optimizers()
        frozen = self.architecture_frozen(self.step_position()[0])
        arch_optim.zero_grad()  # type: ignore[union-attr]
        if frozen:
            # The architecture is chosen: train the weights of the derived cells only, as the user gets them.
            with derived_architecture(self.architecture_modules()):
                out = self.training_module.training_step(batch, batch_idx)
        else:
            self.resample()
            out = self.training_module.training_step(batch, batch_idx)
        loss = out['loss'] if isinstance(out, dict) else out
        self.remember_inputs(batch)
        if not bool(torch.isfinite(loss)):
            raise MetaTrainingDiverged(f'Non-finite training loss at step {self.trainer.global_step}; lower the '
                                       'learning rates.')
        self.advance_optimization(loss, batch_idx)  # backward + weight step; alpha grads come with it
        if not frozen and not self.config.freeze_alpha:
            arch_optim.step()  # type: ignore[union-attr]
        self.advance_lr_schedulers(batch_idx)
        self.log('architecture_frozen', float(frozen), on_step=True, on_epoch=False)
        self.log('temperature', self.temperature, on_step=True, on_epoch=False)
        self.log_architecture()
        return out

    def validation_step(self, batch, batch_idx):
        return self.training_module.validation_step(batch, batch_idx)

    def remember_inputs(self, batch) -> None:
        """Keep the batch's input tensor (``batch`` or ``batch[0]``) for :meth:`recalibrate_batchnorm`."""
        x = batch[0] if isinstance(batch, (list, tuple)) and batch else batch
        if self.recent_inputs.maxlen and isinstance(x, torch.Tensor):
            self.recent_inputs.append(x.detach())

    def on_train_epoch_start(self):
        # Only this epoch's batches: a run resumed at an epoch boundary then recalibrates exactly as an
        # uninterrupted one.
        self.recent_inputs.clear()
        return super().on_train_epoch_start()

    def on_validation_epoch_start(self):
        out = super().on_validation_epoch_start()
        self.recalibrate_batchnorm()
        return out

    @torch.no_grad()
    def recalibrate_batchnorm(self) -> None:
        """Recompute the running BatchNorm statistics of the derived architecture from the remembered batches.

        Each BatchNorm layer the derived network runs gets the exact mean of those batches' statistics
        (momentum ``None``); layers it does not run (operations the cell did not pick) keep theirs.
        """
        if not self.recent_inputs:
            return
        norms = [m for m in self.training_module.modules() if isinstance(m, BATCH_NORMS)
                 and m.track_running_stats]
        saved = [(m.momentum, {k: v.clone() for k, v in m.state_dict().items()}) for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None
        was_training = self.training_module.training
        self.training_module.train()
        with torch.random.fork_rng(devices=[]), derived_architecture(self.architecture_modules()):
            for x in self.recent_inputs:
                self.training_module(x)
        self.training_module.train(was_training)
        for m, (momentum, state) in zip(norms, saved):
            m.momentum = momentum
            if int(m.num_batches_tracked) == 0:  # not part of the derived network
                m.load_state_dict(state)
