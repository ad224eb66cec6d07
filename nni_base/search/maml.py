"""MAML meta-training of BASE: few-shot BASE with the optimization embedding (paper section 6.3).

Each task's inner loop is unrolled with learn2learn's MAML over weights *and* α
(:mod:`.optimization_embedding`), and the query loss after adaptation is back-propagated through it
(second order, or first order with ``first_order=True``); Adam takes the outer step.

Under DDP each rank differentiates its share of the K tasks with ``torch.autograd.grad`` (so DDP's
reducer, which hooks ``.backward()``, stays out of it) and the gradient sums are all-reduced and divided
by K (:mod:`.distributed`): every rank takes the same Adam step.

Example
-------
>>> strategy = BaseStrategy(meta_algorithm='maml', inner_steps=1)          # doctest: +SKIP
>>> NasExperiment(space, EpisodicClassification(train, val), strategy).run()  # doctest: +SKIP
"""

from __future__ import annotations

from typing import cast

import torch

from ..errors import MetaTrainingDiverged
from .adaptation import non_finite_task_loss
from .distributed import all_reduce_sum, process_group
from .loop import TaskResults, query_metrics
from .meta_training import MetaTrainingModule
from .optimization_embedding import WeightAlphaMAML, maml_query_loss

__all__ = ['MamlModule']


class MamlModule(MetaTrainingModule):
    """Meta-trains the prior by differentiating each task's query loss through its inner loop."""

    def configure_optimizers(self):
        return torch.optim.Adam(
            [
                {'params': self.weight_parameters(), 'lr': self.config.outer_lr, 'name': 'weights'},
                {'params': self.arch_parameters(), 'lr': self.config.outer_lr_alpha, 'name': 'alpha'},
            ]
        )

    def training_step(self, batch, batch_idx):
        all_tasks = self.check_tasks(batch)
        tasks = self.local_tasks(all_tasks)
        distributed = process_group()[1] > 1
        params = self.weight_parameters() + self.arch_parameters()
        model = self.training_module.model
        model.train()
        maml = WeightAlphaMAML(
            model,
            self.config.inner_lr,
            self.config.inner_lr_alpha,
            self.arch_parameters(),
            first_order=self.config.first_order,
        )
        optimizer = cast(torch.optim.Optimizer, self.optimizers())
        optimizer.zero_grad()
        where = self.where(batch_idx)
        results = TaskResults()
        for k, task in enumerate(tasks):
            task = task.to(self.device)
            results.before.append(query_metrics(self, task)[1])
            loss, acc = maml_query_loss(maml, task, self.config.inner_steps, self.loss_of, where=f'{where}, task {k}')
            if not bool(torch.isfinite(loss)):
                optimizer.zero_grad()
                raise non_finite_task_loss(
                    f'{where}, task {k}',
                    task,
                    f'Non-finite query loss at {where}, task {k}; the shared prior was not '
                    'updated. Lower the inner or outer step sizes.',
                )
            # One backward per task frees its unrolled graph before the next task is built.
            if distributed:
                self.accumulate_gradients(params, loss / len(all_tasks))
            else:
                self.manual_backward(loss / len(tasks))
            results.losses.append(float(loss.detach()))
            results.after.append(float(acc))
        num_tasks = None
        if distributed:
            results = self.all_reduce_gradients(params, results, where)
            num_tasks = len(all_tasks)
        if not all(p.grad is None or bool(torch.isfinite(p.grad).all()) for p in params):
            optimizer.zero_grad()
            raise MetaTrainingDiverged(f'Non-finite meta-gradient at {where}; the shared prior was not updated.')
        optimizer.step()
        return self.log_meta_step(results, num_tasks)

    @staticmethod
    def accumulate_gradients(params: list[torch.nn.Parameter], loss: torch.Tensor) -> None:
        """Add ``d loss / d params`` to ``.grad`` without ``.backward()`` (which DDP's reducer would intercept)."""
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        for p, g in zip(params, grads):
            if g is not None:
                p.grad = g.detach() if p.grad is None else p.grad + g.detach()

    def all_reduce_gradients(self, params: list[torch.nn.Parameter], results: TaskResults, where: str) -> TaskResults:
        """Sum the meta-gradients (each already divided by K) and the metrics over ranks; returns global metrics."""
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        has_grad = torch.tensor([p.grad is not None for p in params], dtype=torch.float32)
        *summed, reached, sums = all_reduce_sum(grads + [has_grad, self.metric_sums(results)], where=where)
        for p, g, r in zip(params, summed, reached.tolist()):
            p.grad = g if r > 0 else None  # as in one process: a parameter no task reached takes no Adam step
        return self.results_from_sums(sums)
