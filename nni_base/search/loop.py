"""The task loop every BASE algorithm shares: snapshot → adapt to a task → query → restore.

Meta-training (Reptile), validation on held-out tasks, task-averaged α (paper section 5.2) and the
few-line API all run the same loop; only what they keep from each adapted state differs, which they
pass as ``on_adapted``. The inner loop (:func:`adapt`) is BASE's: SGD on weights and α, a fresh
Gumbel sample per step.

Example
-------
>>> results = adapt_each(supernet, tasks, steps=5, where='held-out')   # doctest: +SKIP
>>> results.mean_after                                                 # doctest: +SKIP
0.61
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from ..space.gumbel_cell import derived_architecture
from ..tasks import Task
from .adaptation import non_finite_task_loss
from .meta_update import ModelState, inner_sgd_step
from .supernet import SearchSupernet

__all__ = ['AlphaAdam', 'TaskResults', 'adapt', 'adapt_each', 'query_metrics']


@dataclass
class TaskResults:
    """Query accuracy before and after adaptation, and query loss after, per task."""

    before: list[float] = field(default_factory=list)
    after: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)

    @property
    def mean_before(self) -> float:
        return sum(self.before) / len(self.before)

    @property
    def mean_after(self) -> float:
        return sum(self.after) / len(self.after)

    @property
    def mean_loss(self) -> float:
        return sum(self.losses) / len(self.losses)


class AlphaAdam:
    """A fresh Adam state for α over one task's inner loop (betas (0.5, 0.999), as single-task search's).

    Why: one inner step's α gradient is ~3e-3 per logit, so SGD at ``inner_lr_alpha`` moves a task's α by ~0.003
    logit in 5 steps (edge means, measured) — too little to say which operations *this* task prefers. Adam's step
    is logit-sized along the gradient's sign, so the adapted α is a per-task answer (dataset conditioning regresses
    onto it).
    """

    def __init__(self, lr: float, betas: tuple[float, float] = (0.5, 0.999), eps: float = 1e-8):
        if not (math.isfinite(lr) and lr > 0):
            raise ValueError(f'The inner Adam step on alpha must be a finite number > 0, got {lr!r}.')
        self.lr, self.betas, self.eps = lr, betas, eps
        self.moments: dict[int, tuple[torch.Tensor, torch.Tensor, int]] = {}
        self.moved: dict[int, torch.Tensor] = {}

    @torch.no_grad()
    def update(self, p: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """Adam's step for gradient ``g`` of ``p`` (not applied); ``moved[id(p)]`` sums the steps."""
        m, v, t = self.moments.get(id(p), (torch.zeros_like(p), torch.zeros_like(p), 0))
        b1, b2 = self.betas
        m.mul_(b1).add_(g, alpha=1 - b1)
        v.mul_(b2).addcmul_(g, g, value=1 - b2)
        t += 1
        self.moments[id(p)] = (m, v, t)
        denom = (v / (1 - b2**t)).sqrt_().add_(self.eps)
        step = m / denom * (-self.lr / (1 - b1**t))
        self.moved[id(p)] = self.moved[id(p)] + step if id(p) in self.moved else step
        return step

    @torch.no_grad()
    def step(self, p: torch.Tensor, g: torch.Tensor) -> None:
        p.add_(self.update(p, g))

    def direction(self, p: torch.Tensor) -> torch.Tensor:
        """The sum of the steps taken (or, in shadow use, that would have been taken) for ``p``."""
        return self.moved.get(id(p), torch.zeros_like(p))


def adapt(
    module: SearchSupernet,
    task: Task,
    steps: int,
    state: ModelState,
    *,
    where: str,
    train_alpha: bool = True,
    alpha_adam_lr: float | None = None,
    alpha_shadow: AlphaAdam | None = None,
) -> float:
    """Run ``steps`` SGD steps on the task's support set in place; returns the last support loss.

    Each step draws ``inner_batch_size`` support images (all of them by default) and averages the loss
    over ``samples_per_step`` Gumbel samples. ``train_alpha=False`` keeps α fixed (weight warm-up).
    ``alpha_adam_lr`` moves α with a fresh per-task Adam (:class:`AlphaAdam`) instead of SGD at ``inner_lr_alpha``;
    ``alpha_shadow`` sees every α gradient without moving α (its :meth:`AlphaAdam.direction`: where Adam would
    have taken α), so the task's α follows the usual SGD step while a logit-sized direction is recorded.
    """
    config = module.config
    params = state.params
    arch = {id(p) for p in module.arch_parameters()}
    alpha_trained = train_alpha and not config.freeze_alpha
    alpha_lr = config.inner_lr_alpha if alpha_trained else 0.0
    adam = AlphaAdam(alpha_adam_lr) if alpha_trained and alpha_adam_lr is not None else None
    if adam is not None:
        alpha_lr = 0.0  # the SGD step below leaves α to Adam
    lrs = [alpha_lr if id(p) in arch else config.inner_lr for p in params]
    model = module.training_module.model
    if not model.training:
        model.train()
    n, batch = len(task.support_y), config.inner_batch_size
    # Support losses stay on the device: checking each one would synchronise with it every step. A non-finite
    # loss is reported after the loop (its NaNs only reach this task's copy, which the caller restores).
    losses: list[torch.Tensor] = []
    for _ in range(steps):
        if batch is not None and batch < n:
            idx = torch.randperm(n, device=task.support_y.device)[:batch]
            x, y = task.support_x[idx], task.support_y[idx]
        else:
            x, y = task.support_x, task.support_y
        loss: torch.Tensor | None = None
        for _ in range(config.samples_per_step):
            module.resample()
            term = module.model_loss(x, y)[0] / config.samples_per_step
            loss = term if loss is None else loss + term
        assert loss is not None  # samples_per_step >= 1 (checked by the config)
        losses.append(loss.detach())
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        if config.inner_grad_clip:
            # Each step trains another sampled sub-network; clipping keeps one bad sample from
            # throwing the shared weights far off. (A scale of exactly 1 leaves a gradient as it is.)
            norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads if g is not None]))
            scale = (config.inner_grad_clip / (norm + 1e-12)).clamp(max=1.0)
            grads = tuple(g * scale if g is not None else None for g in grads)
        inner_sgd_step(params, grads, lrs.__getitem__)
        if adam is not None or (alpha_shadow is not None and alpha_trained):
            for p, g in zip(params, grads):
                if g is not None and id(p) in arch:
                    if adam is not None:
                        adam.step(p, g)
                    if alpha_shadow is not None:
                        alpha_shadow.update(p, g)
    if not losses:
        return float('nan')
    values = torch.stack(losses).float().tolist()  # one synchronisation per task
    for step, value in enumerate(values):
        if not math.isfinite(value):
            raise non_finite_task_loss(
                where,
                task,
                f'Non-finite support loss ({value}) at {where}, inner step {step}. The shared prior was '
                'not updated; lower inner_lr / inner_lr_alpha or the outer step sizes.',
            )
    return values[-1]


@torch.no_grad()
def query_metrics(module: SearchSupernet, task: Task) -> tuple[float, float]:
    """Query loss and accuracy of the derived architecture (batch statistics, as in the inner loop).

    BatchNorm running statistics are restored afterwards: query data never reaches the prior.
    """
    buffers = module.model_state().buffers
    saved = [b.clone() for b in buffers]
    with derived_architecture(module.architecture_modules()):
        loss, acc = module.model_loss(task.query_x, task.query_y)
    if buffers:  # a space without BatchNorm has none
        torch._foreach_copy_(buffers, saved)
    return float(loss), float(acc)


def adapt_each(
    module: SearchSupernet,
    tasks: Sequence[Task],
    steps: int,
    *,
    where: str,
    train_alpha: bool = True,
    measure: bool = True,
    on_adapted: Callable[[ModelState], None] | None = None,
    prepare: Callable[[int, Task], None] | None = None,
    alpha_adam_lr: float | None = None,
    alpha_shadow: Callable[[], AlphaAdam | None] | None = None,
) -> TaskResults:
    """Adapt the shared supernet to each task in turn, restoring it after each.

    ``measure`` records query accuracy before and after (and the query loss, which must be finite);
    ``prepare(k, task)`` may set the task's starting point in place before adaptation (a dataset-conditioned
    α, :mod:`.conditioning`; restored with the rest after the task); ``on_adapted(state)`` sees each task's
    adapted tensors before they are restored; ``alpha_adam_lr``: see :func:`adapt`; ``alpha_shadow()`` (called after
    ``prepare``) gives the task's shadow Adam, see :func:`adapt`.
    """
    state = module.model_state()
    shared = state.snapshot()
    results = TaskResults()
    module.training_module.model.train()  # every query measurement, "before" too, with batch statistics
    try:
        with torch.enable_grad():
            for k, task in enumerate(tasks):
                task = task.to(module.device, non_blocking=True)  # pinned by the loader when asked
                if prepare is not None:
                    prepare(k, task)
                if measure:
                    results.before.append(query_metrics(module, task)[1])
                adapt(
                    module,
                    task,
                    steps,
                    state,
                    where=f'{where}, task {k}',
                    train_alpha=train_alpha,
                    alpha_adam_lr=alpha_adam_lr,
                    alpha_shadow=alpha_shadow() if alpha_shadow is not None else None,
                )
                if measure:
                    loss, acc = query_metrics(module, task)
                    if not math.isfinite(loss):
                        raise non_finite_task_loss(
                            f'{where}, task {k}',
                            task,
                            f'Non-finite query loss at {where}, task {k}; the shared prior '
                            'was not updated. Lower the inner or outer step sizes.',
                        )
                    results.losses.append(loss)
                    results.after.append(acc)
                if on_adapted is not None:
                    on_adapted(state)
                state.restore(shared)
    finally:
        state.restore(shared)  # a diverged task leaves the shared values as they were
    return results
