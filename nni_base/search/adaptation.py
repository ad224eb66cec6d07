"""Adapting a supernet to one small task outside a Lightning trainer: search, then train the chosen cell.

:class:`TaskAdapter` is the step-by-step form of single-task adaptation (what ``BaseStrategy(prior=...)``
does with NNI's ``Classification`` evaluator): the first ``search_steps`` steps train the weights and
alpha of Gumbel-sampled sub-networks (:meth:`~nni_base.search.base.BaseSearchModule.resample`), the
remaining steps train only the weights of the derived architecture (``freeze_architecture_after``).
Why the second phase: every search step trains another sampled sub-network, so with a flat
distribution over operations no single network gets fitted; once the cell is fixed, each step
trains the same network. The benchmark (``benchmarks/run.py``) times these steps against NNI's
DARTS and GumbelDARTS.

Examples
--------
>>> from nni_base import BaseStrategy, DartsTaskSpace
>>> from nni_base.api import build_supernet
>>> supernet = build_supernet(DartsTaskSpace(width=4, num_cells=3, num_classes=3), BaseStrategy())
>>> adapter = TaskAdapter(supernet, search_steps=1)
>>> x, y = torch.randn(6, 3, 8, 8), torch.tensor([0, 1, 2, 0, 1, 2])
>>> loss = adapter.step(x, y)          # a search step (sampled sub-network, weights and alpha)
>>> loss = adapter.step(x, y)          # a step on the derived cell (weights only)
>>> adapter.steps_taken, adapter.frozen
(2, True)
"""

from __future__ import annotations

import math

import torch

from ..errors import MetaTrainingDiverged
from ..space.gumbel_cell import derived_architecture
from ..tasks import Task
from .base import BaseSearchModule
from .single_task import architecture_optimizer

__all__ = ['TaskAdapter']


class TaskAdapter:
    """Adapt ``supernet`` (a loaded prior or a fresh supernet) to one task in place.

    Parameters
    ----------
    supernet
        From :func:`nni_base.api.build_supernet`.
    search_steps
        Steps that search (sampled sub-networks, weights and alpha); later steps train the derived
        architecture's weights only. Defaults to the supernet config's ``freeze_architecture_after``;
        ``None`` there too means every step searches.
    optimizer
        The weights' optimizer: ``'sgd'`` (default) at the config's ``inner_lr``, the inner loop the prior was
        meta-trained with, or ``'adam'`` (3e-3, NNI ``Classification``'s habit). Alpha always moves as in
        ``BaseStrategy``'s single-task search: Adam (betas (0.5, 0.999)) at the config's ``arc_learning_rate``
        (:data:`~nni_base.search.single_task.DEFAULT_ARC_LEARNING_RATE`, logit-sized: smaller steps leave alpha
        where it started).
    weight_lr, arc_lr
        Step sizes of the weights and of alpha, overriding the defaults above.
    freeze_alpha
        Keep alpha at the prior's values while the sampled sub-networks train (the paper's frozen-alpha
        ablation, Fig. 4).
    """

    def __init__(self, supernet: BaseSearchModule, *, search_steps: int | None = None,
                 optimizer: str = 'sgd', weight_lr: float | None = None, arc_lr: float | None = None,
                 freeze_alpha: bool = False):
        if search_steps is None:
            search_steps = supernet.config.freeze_architecture_after
        if search_steps is not None and (isinstance(search_steps, bool) or not isinstance(search_steps, int)
                                         or search_steps < 0):
            raise ValueError(f'search_steps must be None or an int >= 0, got {search_steps!r}.')
        for name, value in (('weight_lr', weight_lr), ('arc_lr', arc_lr)):
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f'{name} must be a finite number > 0, got {value!r}.')
        if optimizer not in ('sgd', 'adam'):
            raise ValueError(f"optimizer must be 'sgd' or 'adam', got {optimizer!r}.")
        self.supernet = supernet
        self.search_steps = search_steps
        self.freeze_alpha = bool(freeze_alpha)
        self.steps_taken = 0
        config = supernet.config
        if optimizer == 'sgd':
            self.weight_optimizer: torch.optim.Optimizer = torch.optim.SGD(
                supernet.weight_parameters(), lr=weight_lr if weight_lr is not None else config.inner_lr)
        else:
            self.weight_optimizer = torch.optim.Adam(supernet.weight_parameters(),
                                                     lr=weight_lr if weight_lr is not None else 3e-3)
        # Alpha moves as BaseStrategy moves it in single-task search (SingleTaskModule).
        self.arch_optimizer = architecture_optimizer(supernet.arch_parameters(),
                                                     arc_lr if arc_lr is not None else config.arc_learning_rate)

    @property
    def frozen(self) -> bool:
        """Whether the next step trains the derived architecture only."""
        return self.search_steps is not None and self.steps_taken >= self.search_steps

    def step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """One training step on the batch ``(x, y)``; returns its loss."""
        supernet = self.supernet
        supernet.training_module.model.train()
        frozen = self.frozen
        self.weight_optimizer.zero_grad()
        self.arch_optimizer.zero_grad()
        if frozen:
            with derived_architecture(supernet.architecture_modules()):
                loss, _ = supernet.model_loss(x, y)
        else:
            supernet.resample()
            loss, _ = supernet.model_loss(x, y)
        if not bool(torch.isfinite(loss)):
            raise MetaTrainingDiverged(f'Non-finite loss at adaptation step {self.steps_taken}; lower weight_lr '
                                       'or arc_lr.')
        loss.backward()
        self.weight_optimizer.step()
        if not frozen and not self.freeze_alpha:
            self.arch_optimizer.step()
        self.steps_taken += 1
        return float(loss.detach())

    @torch.no_grad()
    def accuracy(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """Accuracy of the derived architecture on ``(x, y)`` (batch statistics, as in the inner loop)."""
        return self.supernet.query_metrics(Task(x, y, x, y))[1]
