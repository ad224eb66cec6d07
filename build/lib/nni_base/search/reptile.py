"""Reptile meta-training of BASE (paper Algorithm 1, the practical version).

Each of the K tasks of a meta-step adapts a copy of the shared (weights, α) with the inner loop
(:func:`.loop.adapt`: SGD, a fresh Gumbel sample per step); the outer optimizer then moves the
shared values toward the mean of the adapted ones (:mod:`.meta_update`). BatchNorm statistics take
the task mean directly; query data never reaches them.

Under DDP each rank adapts its share of the K tasks and the *sums* of the adapted tensors (and the task
counts) are all-reduced (:mod:`.distributed`), so every rank computes the same mean of all K and takes
the same outer step.

Example
-------
>>> strategy = BaseStrategy(meta_algorithm='reptile', inner_steps=5)   # the default  # doctest: +SKIP
>>> NasExperiment(space, EpisodicClassification(train, val), strategy).run()          # doctest: +SKIP
"""

from __future__ import annotations

from typing import cast

import torch

from ..errors import MetaTrainingDiverged
from ..tasks import Task
from .distributed import all_reduce_sum, process_group
from .loop import AlphaAdam, adapt_each
from .meta_training import MetaTrainingModule
from .meta_update import MeanAccumulator, ModelState, OuterOptimizer, set_reptile_gradients

__all__ = ['ReptileModule']


class ReptileModule(MetaTrainingModule):
    """Meta-trains the prior with Reptile's finite-difference outer step."""

    def configure_optimizers(self):
        groups = [
            {'params': self.weight_parameters(), 'lr': self.config.outer_lr, 'name': 'weights'},
            {'params': self.arch_parameters(), 'lr': self.config.outer_lr_alpha, 'name': 'alpha'},
        ]
        if self.config.outer_optimizer_alpha == 'adam':
            # SGD moves the weights toward the task mean; alpha's per-task direction is small and noisy (one
            # sampled op per edge and step), so Adam steps along its consistent sign instead.
            groups[1]['adaptive'] = True
            return OuterOptimizer(groups)
        return torch.optim.SGD(groups, lr=self.config.outer_lr)

    def training_step(self, batch, batch_idx):
        tasks = self.local_tasks(self.check_tasks(batch))
        state = self.model_state()
        adapted = MeanAccumulator(state.tensors)
        train_alpha = not self.alpha_warming_up() and not self.config.freeze_alpha
        where = self.where(batch_idx)

        def on_adapted(s: ModelState) -> None:
            adapted.add(self.task_adapted(s))

        results = adapt_each(
            self,
            tasks,
            self.config.inner_steps,
            where=where,
            train_alpha=train_alpha,
            on_adapted=on_adapted,
            prepare=self.prepare_task,
            alpha_adam_lr=self.inner_alpha_adam_lr(),
            alpha_shadow=self.inner_alpha_shadow,
        )

        num_tasks = None
        if process_group()[1] > 1:  # sum the adapted tensors and the metrics over ranks, then divide by all tasks
            *totals, sums = all_reduce_sum(adapted.total + [self.metric_sums(results)], where=where)
            num_tasks = int(sums[3])
            mean = torch._foreach_div(totals, float(num_tasks))
            results = self.results_from_sums(sums)
        else:
            mean = adapted.mean()
        if not all(bool(torch.isfinite(t).all()) for t in mean):
            raise MetaTrainingDiverged(f'Non-finite adapted parameters at {where}; the shared prior was not updated.')
        optimizer = cast(torch.optim.Optimizer, self.optimizers())
        optimizer.zero_grad()
        n_params = len(state.params)
        set_reptile_gradients(state.params, mean[:n_params])
        if not train_alpha:  # warm-up: no alpha step (Adam would still move it on a zero gradient's momentum)
            for p in self.arch_parameters():
                p.grad = None
        optimizer.step()
        if state.buffers:  # BatchNorm statistics: take the task mean directly
            with torch.no_grad():
                torch._foreach_copy_(state.buffers, mean[n_params:])
        self.end_meta_step(train_alpha)
        return self.log_meta_step(results, num_tasks)

    # ---- hooks of the dataset-conditioned subclass (search/conditioning/module.py); no-ops here -------
    def inner_alpha_adam_lr(self) -> float | None:
        """Adam step of α in the inner loop (:class:`.loop.AlphaAdam`); ``None``: SGD at ``inner_lr_alpha``."""
        return None

    def inner_alpha_shadow(self) -> AlphaAdam | None:
        """A shadow Adam that records the task's α gradients (:func:`.loop.adapt`); none here."""
        return None

    def prepare_task(self, index: int, task: Task) -> None:
        """Set task ``index``'s starting point in place before its inner loop (the shared values here)."""

    def task_adapted(self, state: ModelState) -> list[torch.Tensor]:
        """The adapted tensors whose task mean the shared values move toward (all of ``state`` here)."""
        return state.tensors

    def end_meta_step(self, train_alpha: bool) -> None:
        """Called after the outer step of every meta-step."""
