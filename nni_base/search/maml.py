"""MAML meta-training of BASE: few-shot BASE with the optimization embedding (paper section 6.3).

Each task's inner loop is unrolled with learn2learn's MAML over weights *and* α
(:mod:`.optimization_embedding`), and the query loss after adaptation is back-propagated through it
(second order, or first order with ``first_order=True``); Adam takes the outer step.

Example
-------
>>> strategy = BaseStrategy(meta_algorithm='maml', inner_steps=1)          # doctest: +SKIP
>>> NasExperiment(space, EpisodicClassification(train, val), strategy).run()  # doctest: +SKIP
"""

from __future__ import annotations

from typing import cast

import torch

from ..errors import MetaTrainingDiverged
from .loop import TaskResults, query_metrics
from .meta_training import MetaTrainingModule
from .optimization_embedding import ArchMAML, maml_query_loss

__all__ = ['MamlModule']


class MamlModule(MetaTrainingModule):
    """Meta-trains the prior by differentiating each task's query loss through its inner loop."""

    def configure_optimizers(self):
        return torch.optim.Adam([
            {'params': self.weight_parameters(), 'lr': self.config.outer_lr, 'name': 'weights'},
            {'params': self.arch_parameters(), 'lr': self.config.outer_lr_alpha, 'name': 'alpha'},
        ])

    def training_step(self, batch, batch_idx):
        tasks = self.check_tasks(batch)
        model = self.training_module.model
        model.train()
        maml = ArchMAML(model, self.config.inner_lr, self.config.inner_lr_alpha, self.arch_parameters(),
                        first_order=self.config.first_order)
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
                raise MetaTrainingDiverged(f'Non-finite query loss at {where}, task {k}; the shared prior was not '
                                           'updated. Lower the inner or outer step sizes.')
            # One backward per task frees its unrolled graph before the next task is built.
            self.manual_backward(loss / len(tasks))
            results.losses.append(float(loss.detach()))
            results.after.append(float(acc))
        params = self.weight_parameters() + self.arch_parameters()
        if not all(p.grad is None or bool(torch.isfinite(p.grad).all()) for p in params):
            optimizer.zero_grad()
            raise MetaTrainingDiverged(f'Non-finite meta-gradient at {where}; the shared prior was not updated.')
        optimizer.step()
        return self.log_meta_step(results)
