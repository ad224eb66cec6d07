"""What the two meta-training algorithms share: task batches, validation by adaptation, metrics.

A meta-training batch is the list of K :class:`~nni_base.Task` of one meta-step (an
:class:`~nni_base.EpisodicClassification` evaluator makes them). Validation adapts the prior to
held-out tasks with the inner loop and reports query accuracy before and after (``val_acc``).
Subclasses: :class:`~.reptile.ReptileModule` (paper Algorithm 1) and :class:`~.maml.MamlModule`
(few-shot BASE, section 6.3).
"""

from __future__ import annotations

from typing import Any

import torch

from ..tasks import Task
from .base import BaseSearchModule
from .loop import TaskResults, adapt_each

__all__ = ['MetaTrainingModule']


class MetaTrainingModule(BaseSearchModule):
    """Base of the meta-training modules: one meta-step per batch of tasks."""

    def where(self, batch_idx: int) -> str:
        """Where in the run we are, for error messages."""
        return f'meta-step {self.trainer.global_step} (epoch {self.trainer.current_epoch}, batch {batch_idx})'

    @staticmethod
    def check_tasks(batch: Any) -> list[Task]:
        if not (isinstance(batch, list) and batch and isinstance(batch[0], Task)):
            raise TypeError('Meta-training batches must be lists of nni_base.Task; build the evaluator with '
                            'nni_base.EpisodicClassification.')
        return batch

    def alpha_warming_up(self) -> bool:
        """Whether meta-training is still in the weight warm-up (α fixed for ``alpha_warmup_steps`` meta-steps)."""
        return self.trainer.global_step < self.config.alpha_warmup_steps

    def log_meta_step(self, results: TaskResults) -> torch.Tensor:
        metrics = {
            'outer_loss': results.mean_loss,
            'query_acc_before': results.mean_before,
            'query_acc_after': results.mean_after,
            'temperature': self.temperature,
        }
        self.last_metrics = metrics
        self.log_dict(metrics, prog_bar=True, on_step=True, on_epoch=True, batch_size=len(results.losses))
        self.log_architecture()
        return torch.tensor(metrics['outer_loss'])

    def validation_step(self, batch, batch_idx):
        results = adapt_each(self, self.check_tasks(batch), self.config.adaptation_steps,
                             where=f'validation episode {batch_idx}')
        n = len(results.after)
        self.log('val_acc_before', results.mean_before, on_epoch=True, prog_bar=True, batch_size=n)
        self.log('val_acc', results.mean_after, on_epoch=True, prog_bar=True, batch_size=n)
