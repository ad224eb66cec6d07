"""What the two meta-training algorithms share: task batches, validation by adaptation, metrics.

A meta-training batch is the list of K :class:`~nni_base.Task` of one meta-step (an
:class:`~nni_base.EpisodicClassification` evaluator makes them). Validation adapts the prior to
held-out tasks with the inner loop and reports query accuracy before and after (``val_acc``).
Subclasses: :class:`~.reptile.ReptileModule` (paper Algorithm 1) and :class:`~.maml.MamlModule`
(few-shot BASE, section 6.3). Under Lightning DDP each rank adapts its share of the batch
(:meth:`MetaTrainingModule.local_tasks`) and the outer direction is summed across ranks
(:mod:`.distributed`).
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from ..tasks import Task
from .base import BaseSearchModule
from .distributed import process_group, shard_tasks
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
            raise TypeError(
                'Meta-training batches must be lists of nni_base.Task; build the evaluator with '
                'nni_base.EpisodicClassification.'
            )
        return batch

    @staticmethod
    def local_tasks(tasks: list[Task]) -> list[Task]:
        """This process's tasks of the meta-step: all of them, or ``tasks[rank::world_size]`` under DDP."""
        rank, world_size = process_group()
        return tasks if world_size == 1 else shard_tasks(tasks, rank, world_size)

    @staticmethod
    def metric_sums(results: TaskResults) -> torch.Tensor:
        """``[sum loss, sum acc before, sum acc after, task count]``, the part of a meta-step all-reduced for logs."""
        return torch.tensor(
            [sum(results.losses), sum(results.before), sum(results.after), len(results.losses)], dtype=torch.float64
        )

    @staticmethod
    def results_from_sums(sums: torch.Tensor) -> TaskResults:
        """The all-ranks means of :meth:`metric_sums` (one entry per list), for :meth:`log_meta_step`."""
        loss, before, after, count = (float(v) for v in sums)
        return TaskResults(before=[before / count], after=[after / count], losses=[loss / count])

    def on_fit_start(self):
        # float16 autocast needs a loss scale; Lightning's scaler only sees manual_backward, and the inner loop takes
        # its steps with torch.autograd.grad, so its small gradients would underflow unseen
        try:
            plugin = self.trainer.precision_plugin
        except RuntimeError:  # not attached to a trainer (a module driven by hand)
            plugin = None
        if getattr(plugin, 'scaler', None) is not None:
            raise ValueError(
                "Meta-training does not run under precision='16-mixed' (float16 needs a gradient scale the inner "
                "loop does not take): use precision='bf16-mixed' (same speed on GPUs with bfloat16, no scaling), "
                "or '32-true'. Single-task search and adaptation run under '16-mixed' with Lightning's scaler."
            )
        return super().on_fit_start()

    def on_train_batch_start(self, batch, batch_idx):
        """Under DDP: give this rank its own Gumbel-noise stream for the meta-step (see :meth:`on_train_batch_end`).

        Every rank seeds torch alike, so without this tasks r and r + 1 (on two ranks) would be adapted with the
        same sequence of sampled sub-networks. The step's seed is drawn from the stream all ranks share, plus
        the rank; the shared stream is put back after the step, so it stays identical on every rank and in
        checkpoints.
        """
        out = super().on_train_batch_start(batch, batch_idx)
        rank, world_size = process_group()
        if world_size > 1:
            seed = int(torch.randint(2**62, (1,)))
            cuda = [self.device.index or 0] if self.device.type == 'cuda' else []
            self.rank_rng = contextlib.ExitStack()
            self.rank_rng.enter_context(torch.random.fork_rng(devices=cuda))  # CPU and this rank's GPU stream
            torch.manual_seed(seed + rank)
        return out

    def on_train_batch_end(self, outputs, batch, batch_idx):
        rank_rng = getattr(self, 'rank_rng', None)
        if rank_rng is not None:  # back to the stream every rank shares
            rank_rng.close()
            self.rank_rng = None
        return super().on_train_batch_end(outputs, batch, batch_idx)

    def alpha_warming_up(self) -> bool:
        """Whether meta-training is still in the weight warm-up (α fixed for ``alpha_warmup_steps`` meta-steps)."""
        return self.trainer.global_step < self.config.alpha_warmup_steps

    def log_meta_step(self, results: TaskResults, num_tasks: int | None = None) -> torch.Tensor:
        """Log a meta-step's means; ``num_tasks`` (default: the results' length) weighs them in epoch means."""
        metrics = {
            'outer_loss': results.mean_loss,
            'query_acc_before': results.mean_before,
            'query_acc_after': results.mean_after,
            'temperature': self.temperature,
        }
        self.last_metrics = metrics
        self.log_dict(metrics, prog_bar=True, on_step=True, on_epoch=True, batch_size=num_tasks or len(results.losses))
        self.log_architecture()
        return torch.tensor(metrics['outer_loss'])

    def query_mode(self) -> None:
        """Put the supernet in train mode (batch statistics) before held-out tasks are measured.

        Lightning runs validation in eval mode; the inner loop switches to train mode only once it adapts, so
        without this the first task's accuracy before adaptation would use the running BatchNorm statistics while
        every other query measurement uses batch statistics.
        """
        self.training_module.model.train()

    def validation_step(self, batch, batch_idx):
        self.query_mode()
        results = adapt_each(
            self, self.check_tasks(batch), self.config.adaptation_steps, where=f'validation episode {batch_idx}'
        )
        n = len(results.after)
        # Every rank adapts the same held-out tasks (with its own Gumbel noise); sync_dist averages them.
        self.log('val_acc_before', results.mean_before, on_epoch=True, prog_bar=True, batch_size=n, sync_dist=True)
        self.log('val_acc', results.mean_after, on_epoch=True, prog_bar=True, batch_size=n, sync_dist=True)
