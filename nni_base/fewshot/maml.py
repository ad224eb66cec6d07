"""Final training and evaluation of a fixed few-shot learner with learn2learn's MAML, as a Lightning module.

After few-shot BASE has found cells, the paper trains the full network built from them with
second-order MAML on the same episodes and reports the mean accuracy over held-out test episodes
with a 95% confidence interval (Table 4). :class:`FixedNetworkMAML` does both for any ``nn.Module``:
``training_step`` is one meta-step over a batch of tasks, ``validation_step`` / ``test_step`` adapt
to each held-out task and score its query set.

BatchNorm uses the statistics of the current batch in every phase (the model stays in train mode),
as MAML does: running statistics would mix classes across tasks.

Examples
--------
>>> module = FixedNetworkMAML(Conv4(ways=5, channels=3, hidden=32, image_size=84), inner_steps=5)  # doctest: +SKIP
>>> pl.Trainer(max_epochs=10, inference_mode=False).fit(module, train_loader)                 # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ..search.adaptation import non_finite_task_loss
from ..tasks import Task, l2l
from ..tasks.metrics import accuracy as accuracy_of
from ..tasks.metrics import mean_ci

__all__ = ['FixedNetworkMAML', 'update_task_digest']


def update_task_digest(digest: Any, task: Task) -> None:
    """Feed one task's support and query tensors (values, shapes and dtypes) into a ``hashlib`` object.

    Two runs that saw the same episodes in the same order end with the same digest, whatever model scored them.
    """
    for tensor in (task.support_x, task.support_y, task.query_x, task.query_y):
        array = tensor.detach().cpu().contiguous().numpy()
        digest.update(f'{array.dtype}{array.shape}'.encode())
        digest.update(array.tobytes())


def _logits(model: nn.Module, x: Tensor) -> Tensor:
    out = model(x)
    return out[0] if isinstance(out, tuple) else out  # retrain-mode DARTS adds auxiliary logits


class FixedNetworkMAML(pl.LightningModule):
    """Meta-train a fixed network with MAML and score it on held-out episodes.

    Batches are lists of :class:`~nni_base.Task` (see :func:`nni_base.evaluator.meta_train_loader`
    and :func:`nni_base.tasks.episode_loader`).

    Parameters
    ----------
    model
        The learner, e.g. a frozen DARTS network from exported cells or :class:`~nni_base.fewshot.Conv4`.
    inner_lr
        Step size of the inner SGD steps.
    inner_steps
        Inner steps per task in meta-training.
    adapt_steps
        Inner steps on held-out tasks (validation and test); defaults to ``inner_steps``.
    meta_lr
        Adam step size of the outer update.
    first_order
        First-order MAML in meta-training (default: second order, as in the paper).
    """

    def __init__(
        self,
        model: nn.Module,
        inner_lr: float = 0.05,
        inner_steps: int = 5,
        adapt_steps: int | None = None,
        meta_lr: float = 1e-3,
        first_order: bool = False,
    ):
        super().__init__()
        if inner_steps < 1:
            raise ValueError(f'inner_steps must be at least 1, got {inner_steps}.')
        if adapt_steps is not None and adapt_steps < 0:
            raise ValueError(f'adapt_steps must be >= 0, got {adapt_steps}.')
        self.maml = l2l.algorithms.MAML(model, lr=inner_lr, first_order=first_order, allow_unused=True)
        self.inner_steps = inner_steps
        self.adapt_steps = inner_steps if adapt_steps is None else adapt_steps
        self.meta_lr = meta_lr
        self.automatic_optimization = False  # one backward per task keeps one unrolled graph alive at a time
        self.test_accuracies: list[float] = []
        self.test_episodes_digest = ''  # SHA-256 of the last test run's episodes, in order (see task_digest)
        self._test_hash = hashlib.sha256()

    @property
    def model(self) -> nn.Module:
        return self.maml.module

    def forward(self, x: Tensor) -> Tensor:
        return _logits(self.model, x)

    def configure_optimizers(self):
        return torch.optim.Adam(self.model.parameters(), lr=self.meta_lr)

    def adapted_query(self, task: Task, steps: int, first_order: bool | None = None) -> tuple[Tensor, Tensor]:
        """Query loss and accuracy after ``steps`` inner steps on the support set (graph kept to the shared model)."""
        self.model.train()
        learner = self.maml.clone(first_order=first_order)
        for step in range(steps):
            loss = F.cross_entropy(_logits(learner, task.support_x), task.support_y)
            if not math.isfinite(float(loss.detach())):
                raise non_finite_task_loss(
                    f'inner step {step}', task, f'Non-finite support loss at inner step {step}; lower inner_lr.'
                )
            learner.adapt(loss)
        logits = _logits(learner, task.query_x)
        accuracy = accuracy_of(logits, task.query_y)
        return F.cross_entropy(logits, task.query_y), accuracy

    def training_step(self, batch: list[Task], batch_idx: int) -> Tensor:
        optimizer = self.optimizers()
        optimizer.zero_grad()
        losses, accs = [], []
        for task in batch:
            loss, acc = self.adapted_query(task.to(self.device), self.inner_steps)
            if not bool(torch.isfinite(loss)):
                optimizer.zero_grad()
                raise non_finite_task_loss(
                    f'meta-step {self.global_step}',
                    task,
                    f'Non-finite query loss at meta-step {self.global_step}; lower the learning rates.',
                )
            self.manual_backward(loss / len(batch))
            losses.append(float(loss.detach()))
            accs.append(float(acc))
        optimizer.step()
        metrics = {'train_loss': sum(losses) / len(losses), 'train_acc': sum(accs) / len(accs)}
        self.log_dict(metrics, prog_bar=True, on_step=True, on_epoch=True, batch_size=len(batch))
        return torch.tensor(metrics['train_loss'])

    def _heldout_accuracies(self, batch: list[Task]) -> list[float]:
        accs = []
        with torch.enable_grad():  # adaptation needs gradients even while Lightning evaluates
            for task in batch:
                # Held-out adaptation only needs the adapted values, not a meta-gradient: first order is exact here.
                _, acc = self.adapted_query(task.to(self.device), self.adapt_steps, first_order=True)
                accs.append(float(acc))
        return accs

    def validation_step(self, batch: list[Task], batch_idx: int) -> None:
        accs = self._heldout_accuracies(batch)
        self.log('val_acc', sum(accs) / len(accs), on_epoch=True, prog_bar=True, batch_size=len(accs))

    def on_test_epoch_start(self) -> None:
        self.test_accuracies = []
        self._test_hash = hashlib.sha256()

    def test_step(self, batch: list[Task], batch_idx: int) -> None:
        for task in batch:
            update_task_digest(self._test_hash, task)
        self.test_accuracies.extend(self._heldout_accuracies(batch))

    def on_test_epoch_end(self) -> None:
        self.test_episodes_digest = self._test_hash.hexdigest()
        mean, ci95 = mean_ci(self.test_accuracies)
        self.log_dict({'test_acc': mean, 'test_acc_ci95': ci95, 'test_episodes': float(len(self.test_accuracies))})
