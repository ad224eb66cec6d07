"""The inner loop and the Reptile-style outer update of BASE (Algorithm 1, practical version).

Every task starts from the shared (weights, alpha), takes ``inner_steps`` SGD steps on its support
data with a fresh Gumbel sample per step, and the shared values then move toward the mean of the
task-adapted values. The move is expressed as a gradient, ``shared - mean(adapted)``, so any torch
optimizer (plain SGD gives ``shared += lr * (mean - shared)``) applies it with its own step size per
parameter group: one for weights, one for alpha.

Tensors are snapshot and restored in place (``torch._foreach_*``) instead of deep-copying modules,
which keeps the per-task overhead at two memory copies.

Examples
--------
>>> model = torch.nn.Linear(2, 1)
>>> state = ModelState(model)
>>> shared = state.snapshot()
>>> mean = MeanAccumulator(state.tensors)
>>> with torch.no_grad():
...     _ = model.weight.add_(1.0)
>>> mean.add(state.tensors); state.restore(shared)
>>> set_reptile_gradients(state.params, mean.mean()[:len(state.params)])
>>> bool(torch.allclose(model.weight.grad, -torch.ones(1, 2)))
True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn as nn

__all__ = ['ModelState', 'MeanAccumulator', 'OuterOptimizer', 'inner_sgd_step', 'set_reptile_gradients']


class ModelState:
    """The trainable parameters and the floating-point buffers (BatchNorm statistics) of a module."""

    def __init__(self, module: nn.Module):
        self.params: list[nn.Parameter] = [p for p in module.parameters() if p.requires_grad]
        # Buffers are kept as (owner, name): moving a module to another device or dtype replaces its buffer
        # tensors (a Parameter keeps its identity), so they are read when used.
        slots: list[tuple[nn.Module, str]] = []
        seen: set[int] = set()
        for owner in module.modules():
            for name, b in owner.named_buffers(recurse=False):
                if b.is_floating_point() and id(b) not in seen:
                    seen.add(id(b))
                    slots.append((owner, name))
        self.buffer_slots = slots

    @property
    def buffers(self) -> list[torch.Tensor]:
        return [getattr(owner, name) for owner, name in self.buffer_slots]

    @property
    def tensors(self) -> list[torch.Tensor]:
        return [p.data for p in self.params] + self.buffers

    def snapshot(self) -> list[torch.Tensor]:
        return [t.detach().clone() for t in self.tensors]

    @torch.no_grad()
    def restore(self, saved: Sequence[torch.Tensor]) -> None:
        torch._foreach_copy_(self.tensors, list(saved))


class MeanAccumulator:
    """Running mean of lists of tensors (the task-adapted states)."""

    def __init__(self, like: Sequence[torch.Tensor]):
        self.total = [torch.zeros_like(t) for t in like]
        self.count = 0

    @torch.no_grad()
    def add(self, tensors: Sequence[torch.Tensor]) -> None:
        torch._foreach_add_(self.total, list(tensors))
        self.count += 1

    def mean(self) -> list[torch.Tensor]:
        if self.count == 0:
            raise RuntimeError('No task was accumulated.')
        return torch._foreach_div(self.total, float(self.count))


@torch.no_grad()
def inner_sgd_step(
    params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor | None], lr_of: Callable[[int], float]
) -> None:
    """One in-place SGD step; parameters with no gradient (unsampled operations) stay put."""
    groups: dict[float, tuple[list[torch.Tensor], list[torch.Tensor]]] = {}
    for i, (p, g) in enumerate(zip(params, grads)):
        if g is not None:
            ps, gs = groups.setdefault(lr_of(i), ([], []))
            ps.append(p)
            gs.append(g)
    for lr, (ps, gs) in groups.items():  # one fused update per step size (p - lr * g, as p.add_ computes it)
        if lr:
            torch._foreach_add_(ps, gs, alpha=-lr)


@torch.no_grad()
def set_reptile_gradients(shared: Sequence[nn.Parameter], adapted_mean: Sequence[torch.Tensor]) -> None:
    """Store ``shared - mean(adapted)`` as the gradient of each shared parameter."""
    for p, m in zip(shared, adapted_mean):
        p.grad = p.detach() - m


class OuterOptimizer(torch.optim.Optimizer):
    """Reptile's outer step: plain SGD for groups with ``adaptive=False``, Adam for groups with ``adaptive=True``.

    One optimizer (not one per group) so that Lightning counts one step per meta-step and checkpoints
    both states together. Weights take the SGD step toward the task mean (1.0: all the way); alpha's
    per-task directions are small and noisy, so Adam steps along their sign-consistent part.
    """

    def __init__(self, groups: list[dict], betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        super().__init__(groups, {'lr': 1.0, 'adaptive': False, 'betas': betas, 'eps': eps})

    @torch.no_grad()
    def step(self, closure=None):  # noqa: D102 - torch's Optimizer.step
        for group in self.param_groups:
            for p in group['params']:
                if p.grad is None:
                    continue
                if not group['adaptive']:
                    p.add_(p.grad, alpha=-group['lr'])
                    continue
                state = self.state[p]
                if not state:
                    state['step'] = torch.zeros(())
                    state['exp_avg'] = torch.zeros_like(p)
                    state['exp_avg_sq'] = torch.zeros_like(p)
                beta1, beta2 = group['betas']
                state['step'] += 1
                state['exp_avg'].mul_(beta1).add_(p.grad, alpha=1 - beta1)
                state['exp_avg_sq'].mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
                t = float(state['step'])
                denom = (state['exp_avg_sq'] / (1 - beta2**t)).sqrt_().add_(group['eps'])
                p.addcdiv_(state['exp_avg'], denom, value=-group['lr'] / (1 - beta1**t))
        return None
