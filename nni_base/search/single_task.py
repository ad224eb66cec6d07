"""Single-task search and adaptation: BASE on one dataset through any Lightning evaluator.

With NNI's ``Classification`` (or any non-episodic evaluator) weights and α take a joint gradient
step per batch on a fresh Gumbel sample: started from a prior this is BASE's adaptation to a new
dataset, from scratch a plain Gumbel-softmax search. With ``freeze_architecture_after=N`` the
architecture is fixed to the derived cell after N steps and only its weights train.

Example
-------
>>> strategy = BaseStrategy(prior='prior.pt', freeze_architecture_after=24)   # doctest: +SKIP
>>> NasExperiment(space, Classification(train_dataloaders=..., val_dataloaders=...), strategy).run()  # doctest: +SKIP
"""

from __future__ import annotations

import torch

from ..errors import MetaTrainingDiverged
from ..space.gumbel_cell import derived_architecture
from .base import BaseSearchModule

__all__ = ['SingleTaskModule', 'DEFAULT_ARC_LEARNING_RATE', 'architecture_optimizer']

#: Adam's step on alpha in single-task search and adaptation (``arc_learning_rate``). One step's alpha gradient
#: is ~3e-3 per logit (batch-mean loss, BatchNorm'd ops), so SGD at ``inner_lr_alpha`` or Adam at 3e-3 moves alpha
#: < 0.1 logit in 100 steps: alpha stays uniform, every step trains another random sub-network and the derived
#: cell ends near chance. Like the meta-level alpha steps that do move alpha (Reptile's Adam 0.15, MAML's 0.1)
#: the step must be logit-sized: 0.3 concentrates alpha within ~50-100 steps (issue #11: 16 px texture / digits,
#: 100 steps, derived-cell validation accuracy 0.49 / 0.15 -> 0.88 / 0.74).
DEFAULT_ARC_LEARNING_RATE = 0.3


def architecture_optimizer(alphas: list[torch.nn.Parameter], lr: float | None = None) -> torch.optim.Optimizer:
    """Alpha's optimizer in single-task search and adaptation: Adam at ``lr`` (None: the default step)."""
    return torch.optim.Adam(alphas, lr=DEFAULT_ARC_LEARNING_RATE if lr is None else lr, betas=(0.5, 0.999))


class SingleTaskModule(BaseSearchModule):
    """Searches (or adapts a prior) on the evaluator's one dataset."""

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
