"""BASE's adaptation to one dataset, written once: the step, the freeze rule, BatchNorm recalibration.

Where it sits: after meta-training, before export. Every caller that adapts a prior (or searches from
scratch) on one dataset runs :func:`adaptation_step` — ``BaseStrategy`` with NNI's ``Classification``
(:class:`~nni_base.search.single_task.SingleTaskModule`), :class:`TaskAdapter` (the same step outside a
trainer), :func:`nni_base.api.adaptation_accuracy`, the nnictl trial, the demo and the benchmarks. A step:

1. the first ``freeze_architecture_after`` steps draw a fresh Gumbel sample and train its weights and α
   (Adam at ``arc_learning_rate`` on α); later steps train the derived (most probable) cell's weights only;
2. a non-finite loss stops the run, naming non-finite images when there are any;
3. before any evaluation the derived cell's BatchNorm statistics are recomputed from the latest training
   batches (:func:`recalibrate_batchnorm`), then it is scored in eval mode, as the user will run it.

Meta-training's inner loop (:func:`nni_base.search.loop.adapt`: SGD on weights and α, batch statistics) is
its own procedure; what measures it says so in its name (:func:`nni_base.api.inner_loop_accuracy`).

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
>>> 0.0 <= adapter.accuracy(x, y) <= 1.0
True
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable, Iterable

import torch
import torch.nn as nn

from ..config import DEFAULT_ARC_LEARNING_RATE, BaseConfig
from ..errors import MetaTrainingDiverged
from ..space.gumbel_cell import derived_architecture
from ..tasks import Task
from .head import initialise_head
from .supernet import SearchSupernet

__all__ = [
    'BATCH_NORMS',
    'TaskAdapter',
    'adaptation_step',
    'architecture_frozen',
    'architecture_optimizer',
    'non_finite_loss',
    'non_finite_task_loss',
    'recalibrate_batchnorm',
]

_logger = logging.getLogger('nni_base')

#: The BatchNorm layers whose running statistics :func:`recalibrate_batchnorm` recomputes.
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def architecture_optimizer(alphas: list[torch.nn.Parameter], lr: float | None = None) -> torch.optim.Optimizer:
    """Alpha's optimizer in adaptation and single-task search: Adam at ``lr`` (None: the default step)."""
    return torch.optim.Adam(alphas, lr=DEFAULT_ARC_LEARNING_RATE if lr is None else lr, betas=(0.5, 0.999))


def architecture_frozen(config: BaseConfig, step: int) -> bool:
    """Whether adaptation step ``step`` (from 0) trains the derived architecture only."""
    after = config.freeze_architecture_after
    return after is not None and step >= after


def non_finite_loss(where: str, x: torch.Tensor | None, fix: str) -> Exception:
    """The error for a non-finite loss: the data's fault when the images are not finite, else ``fix``."""
    bad = _non_finite_images(x)
    if isinstance(x, torch.Tensor) and bad:
        return ValueError(
            f'{bad} of {len(x)} images of the batch at {where} contain NaN or inf values: the data, '
            'not the learning rates, made the loss non-finite. Clean them before training (e.g. '
            'drop those images, or torch.nan_to_num).'
        )
    return MetaTrainingDiverged(f'Non-finite loss at {where}; {fix}')


def non_finite_task_loss(where: str, task: Task, diverged: str) -> Exception:
    """The error for a non-finite loss on a meta-training task: the data's fault when the task's support or query
    images are not finite (BatchNorm spreads one image's NaN over the whole batch), else ``MetaTrainingDiverged``
    with the message ``diverged`` (which names the step sizes to lower)."""
    for name, x in (('support', task.support_x), ('query', task.query_x)):
        bad = _non_finite_images(x)
        if bad:
            return ValueError(
                f'{bad} of {len(x)} {name} images of the task at {where} contain NaN or inf values: the data, not '
                'the learning rates, made the loss non-finite; the shared prior was not updated. Clean the dataset '
                'before meta-training (drop those images, or torch.nan_to_num).'
            )
    return MetaTrainingDiverged(diverged)


def _non_finite_images(x: torch.Tensor | None) -> int:
    """How many images of the batch ``x`` hold a NaN or inf (0 for anything that is not a float tensor)."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.ndim == 0 or bool(torch.isfinite(x).all()):
        return 0
    return int((~torch.isfinite(x)).reshape(len(x), -1).any(1).sum())


def adaptation_step(
    supernet: SearchSupernet,
    loss_of_batch: Callable[[], torch.Tensor],
    *,
    frozen: bool,
    arch_optimizer: torch.optim.Optimizer,
    backward_and_step: Callable[[torch.Tensor], None],
    where: str,
    inputs: torch.Tensor | None = None,
    fix: str = 'lower the learning rates.',
    freeze_alpha: bool | None = None,
    alpha_gradient: Callable[[], None] | None = None,
) -> torch.Tensor:
    """One adaptation step: sample (or derive) the architecture, loss, weight step, α step; returns the loss.

    ``loss_of_batch()`` runs the forward pass and returns the loss; ``backward_and_step(loss)`` back-propagates
    and steps the weights (Lightning's manual optimisation, or a plain optimizer). ``freeze_alpha`` (default: the
    supernet config's) keeps α where it is. ``alpha_gradient()`` adds to α's gradient before its step (a budget's
    term, :mod:`nni_base.hardware.penalty`).
    """
    arch_optimizer.zero_grad()
    if frozen:
        with derived_architecture(supernet.architecture_modules()):
            loss = loss_of_batch()
    else:
        supernet.resample()
        loss = loss_of_batch()
    if not bool(torch.isfinite(loss)):
        raise non_finite_loss(where, inputs, fix)
    backward_and_step(loss)
    if not frozen and not (supernet.config.freeze_alpha if freeze_alpha is None else freeze_alpha):
        if alpha_gradient is not None:
            alpha_gradient()
        arch_optimizer.step()
    return loss


@torch.no_grad()
def recalibrate_batchnorm(supernet: SearchSupernet, inputs: Iterable[torch.Tensor]) -> None:
    """Recompute the running BatchNorm statistics of the derived architecture from ``inputs``.

    While searching, an operation's statistics were last updated whenever it was last sampled, with other
    sub-networks around it. Each BatchNorm the derived network runs gets the exact mean of these batches'
    statistics (momentum ``None``); layers it does not run keep theirs.
    """
    inputs = list(inputs)
    if not inputs:
        return
    model = supernet.training_module
    norms = [m for m in model.modules() if isinstance(m, BATCH_NORMS) and m.track_running_stats]
    saved = [(m.momentum, {k: v.clone() for k, v in m.state_dict().items()}) for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    was_training = model.training
    model.train()
    with torch.random.fork_rng(devices=[]), derived_architecture(supernet.architecture_modules()):
        for x in inputs:
            model(x)
    model.train(was_training)
    for m, (momentum, state) in zip(norms, saved):
        m.momentum = momentum
        if int(m.num_batches_tracked) == 0:  # not part of the derived network
            m.load_state_dict(state)


class TaskAdapter:
    """BASE's adaptation of ``supernet`` (a loaded prior or a fresh supernet) to one dataset, step by step.

    Parameters
    ----------
    supernet
        From :func:`nni_base.api.build_supernet`.
    search_steps
        Steps that search (sampled sub-networks, weights and alpha); later steps train the derived
        architecture's weights only. Defaults to the config's ``freeze_architecture_after``; ``None`` there
        too means every step searches.
    optimizer
        The weights' optimizer: ``'sgd'`` (default) at the config's ``inner_lr``, the inner loop the prior
        was meta-trained with, or ``'adam'`` (3e-3). Alpha moves with Adam (betas (0.5, 0.999)) at the
        config's ``arc_learning_rate``, as through NNI.
    weight_lr, arc_lr
        Step sizes of the weights and of alpha, overriding the defaults above.
    freeze_alpha
        Keep alpha at the prior's values (the paper's frozen-alpha ablation, Fig. 4).
    """

    def __init__(
        self,
        supernet: SearchSupernet,
        *,
        search_steps: int | None = None,
        optimizer: str = 'sgd',
        weight_lr: float | None = None,
        arc_lr: float | None = None,
        freeze_alpha: bool = False,
    ):
        if search_steps is None:
            search_steps = supernet.config.freeze_architecture_after
        if search_steps is not None and (
            isinstance(search_steps, bool) or not isinstance(search_steps, int) or search_steps < 0
        ):
            raise ValueError(f'search_steps must be None or an int >= 0, got {search_steps!r}.')
        for name, value in (('weight_lr', weight_lr), ('arc_lr', arc_lr)):
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f'{name} must be a finite number > 0, got {value!r}.')
        if optimizer not in ('sgd', 'adam'):
            raise ValueError(f"optimizer must be 'sgd' or 'adam', got {optimizer!r}.")
        self.supernet = supernet
        self.config = BaseConfig(
            **{
                **supernet.config.to_dict(),
                'freeze_architecture_after': search_steps,
                'freeze_alpha': bool(freeze_alpha) or supernet.config.freeze_alpha,
            }
        )
        self.steps_taken = 0
        self.recent_inputs: deque[torch.Tensor] = deque(maxlen=supernet.config.bn_recalibration_batches)
        config = supernet.config
        params = supernet.weight_parameters()
        if optimizer == 'sgd':
            self.weight_optimizer: torch.optim.Optimizer = torch.optim.SGD(
                params, lr=weight_lr if weight_lr is not None else config.inner_lr
            )
        else:
            self.weight_optimizer = torch.optim.Adam(params, lr=weight_lr if weight_lr is not None else 3e-3)
        self.arch_optimizer = architecture_optimizer(
            supernet.arch_parameters(), arc_lr if arc_lr is not None else config.arc_learning_rate
        )

    @property
    def search_steps(self) -> int | None:
        return self.config.freeze_architecture_after

    @property
    def frozen(self) -> bool:
        """Whether the next step trains the derived architecture only."""
        return architecture_frozen(self.config, self.steps_taken)

    def initialise_head(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Initialise a rebuilt classifier head (a dataset with another class count) from labelled images."""
        supernet = self.supernet
        if supernet.rebuilt_heads:
            _logger.info(initialise_head(supernet, supernet.rebuilt_heads, x, y, supernet.config.head_init))
            supernet.rebuilt_heads = []

    def step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """One adaptation step on the batch ``(x, y)``; returns its loss."""
        supernet = self.supernet
        self.initialise_head(x, y)  # a no-op unless the head was rebuilt and is still uninitialised
        supernet.training_module.model.train()
        self.weight_optimizer.zero_grad()

        def backward_and_step(loss: torch.Tensor) -> None:
            loss.backward()
            self.weight_optimizer.step()

        step = self.steps_taken
        loss = adaptation_step(
            supernet,
            lambda: supernet.model_loss(x, y)[0],
            frozen=self.frozen,
            arch_optimizer=self.arch_optimizer,
            backward_and_step=backward_and_step,
            where=f'adaptation step {step}',
            inputs=x,
            fix='lower weight_lr or arc_lr.',
            freeze_alpha=self.config.freeze_alpha,
        )
        if self.recent_inputs.maxlen:
            self.recent_inputs.append(x.detach())
        self.steps_taken += 1
        return float(loss.detach())

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
        """(loss, accuracy) of the derived architecture on ``(x, y)``, as through NNI's validation.

        BatchNorm statistics are recalibrated from the latest training batches, then the model runs in eval mode.
        """
        supernet = self.supernet
        recalibrate_batchnorm(supernet, self.recent_inputs)
        model = supernet.training_module.model
        was_training = model.training
        model.eval()
        try:
            with derived_architecture(supernet.architecture_modules()):
                loss, acc = supernet.model_loss(x, y)
        finally:
            model.train(was_training)
        return float(loss), float(acc)

    def accuracy(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """Accuracy of the derived architecture on ``(x, y)`` (see :meth:`evaluate`)."""
        return self.evaluate(x, y)[1]
