"""The unrolled inner loop of few-shot BASE: learn2learn's MAML over weights *and* alpha.

For few-shot tasks the paper (section 6.3) drops the finite-difference (Reptile) approximation and
differentiates through the inner steps themselves: the "optimization embedding". Each task clones
the shared supernet with learn2learn's :class:`~learn2learn.algorithms.MAML`, takes ``inner_steps``
gradient steps on its support set (a fresh Gumbel sample per step, alpha adapted alongside the
weights), and the query loss of the adapted clone is back-propagated to the shared values, through
the inner steps (second order) or around them (``first_order=True``).

:class:`WeightAlphaMAML` is learn2learn's ``MAML`` with one step size for weights and another for alpha;
:func:`maml_query_loss` runs one task.

Examples
--------
>>> maml = WeightAlphaMAML(supernet, lr=0.05, lr_alpha=0.5, arch_parameters=alphas)  # doctest: +SKIP
>>> loss, acc = maml_query_loss(maml, task, inner_steps=5, loss_fn=loss_fn)    # doctest: +SKIP
>>> loss.backward()   # gradients reach alpha through the 5 inner steps          # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
import torch.nn as nn
from torch import Tensor

from ..space.sampled_cell import SampledCell
from ..tasks import Task, l2l
from .adaptation import non_finite_task_loss

__all__ = ['WeightAlphaMAML', 'maml_query_loss', 'resample_cells']

LossFn = Callable[[nn.Module, Tensor, Tensor], tuple[Tensor, Tensor]]


def resample_cells(model: nn.Module) -> None:
    """Draw one architecture sample for every cell type of ``model`` (a supernet or a MAML clone of it)."""
    memo: dict = {}
    for module in model.modules():
        if isinstance(module, SampledCell):
            module.resample(memo)


class WeightAlphaMAML(l2l.algorithms.MAML):
    """learn2learn's MAML with separate inner step sizes for weights and architecture logits.

    Parameters
    ----------
    model
        The supernet (its alpha must be parameters of it, as in :class:`~nni_base.space.sampled_cell.SampledCell`).
    lr, lr_alpha
        Inner step size of the weights and of alpha.
    arch_parameters
        The alpha tensors of ``model``; everything else is a weight.
    first_order
        Drop the second-order terms (do not differentiate through the inner gradients).
    """

    def __init__(
        self,
        model: nn.Module,
        lr: float,
        lr_alpha: float,
        arch_parameters: Iterable[Tensor] = (),
        first_order: bool = False,
        _is_arch: list[bool] | None = None,
    ):
        # Unsampled operations get no gradient, so unused parameters are expected.
        super().__init__(model, lr=lr, first_order=first_order, allow_unused=True)
        self.lr_alpha = lr_alpha
        if _is_arch is None:
            arch = {id(p) for p in arch_parameters}
            _is_arch = [id(p) in arch for p in model.parameters()]
        # Parameter order is the same in every clone, so a mask by position identifies alpha there too.
        self._is_arch = _is_arch

    def clone(
        self, first_order: bool | None = None, allow_unused: bool | None = None, allow_nograd: bool | None = None
    ) -> WeightAlphaMAML:
        """A differentiable copy of the wrapped model (gradients flow back to the original)."""
        first_order = self.first_order if first_order is None else first_order
        return WeightAlphaMAML(
            l2l.clone_module(self.module), self.lr, self.lr_alpha, first_order=first_order, _is_arch=self._is_arch
        )

    def adapt(
        self,
        loss: Tensor,
        first_order: bool | None = None,
        allow_unused: bool | None = None,
        allow_nograd: bool | None = None,
    ) -> None:
        """One inner gradient step on ``loss``, kept in the autograd graph unless first order."""
        first_order = self.first_order if first_order is None else first_order
        params = list(self.module.parameters())
        grads = torch.autograd.grad(
            loss, params, create_graph=not first_order, retain_graph=not first_order, allow_unused=True
        )
        for p, g, is_arch in zip(params, grads, self._is_arch):
            if g is not None:
                p.update = -(self.lr_alpha if is_arch else self.lr) * g
        self.module = l2l.utils.update_module(self.module)


def maml_query_loss(
    maml: WeightAlphaMAML, task: Task, inner_steps: int, loss_fn: LossFn, where: str = 'a task'
) -> tuple[Tensor, Tensor]:
    """Adapt a clone of ``maml`` to the task's support set and return its query loss and accuracy.

    Every inner step and the query pass draw a fresh Gumbel sample from the clone's (adapted) alpha.
    The returned loss is connected to the shared parameters of ``maml``: backward gives the
    meta-gradient.

    Raises
    ------
    MetaTrainingDiverged
        If a support loss is not finite (nothing has been updated yet).
    ValueError
        If it is because the task's images hold NaN or inf.
    """
    learner = maml.clone()
    for step in range(inner_steps):
        resample_cells(learner)
        loss, _ = loss_fn(learner, task.support_x, task.support_y)
        if not math.isfinite(float(loss.detach())):
            raise non_finite_task_loss(
                where,
                task,
                f'Non-finite support loss ({float(loss.detach())}) at {where}, inner step {step}. The shared prior '
                'was not updated; lower inner_lr / inner_lr_alpha or the outer step sizes.',
            )
        learner.adapt(loss)
    resample_cells(learner)
    return loss_fn(learner, task.query_x, task.query_y)
