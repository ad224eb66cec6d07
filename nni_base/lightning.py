"""The search loop of BASE as a Lightning module.

:class:`BaseLightningModule` wraps the evaluator's Lightning module the way NNI's one-shot modules
do (``BaseOneShotLightningModule``) and runs one of two loops in ``training_step``:

* **meta-training** (an :class:`~nni_base.EpisodicClassification` evaluator): each batch is the list
  of K tasks of one meta-step. Every task adapts a copy of the shared (weights, alpha) for
  ``inner_steps`` SGD steps on its support set, drawing a new Gumbel sample per step; the query set
  measures the adapted model; the outer optimizer then moves the shared values toward the mean of
  the adapted ones (:mod:`nni_base.meta_update`). With ``meta_algorithm='maml'`` (few-shot BASE)
  the inner loop is instead unrolled with learn2learn's MAML and the query loss after adaptation is
  back-propagated through it (:mod:`nni_base.optimization_embedding`).
* **single-task search / adaptation** (any other Lightning evaluator, e.g. NNI's
  ``Classification``): weights and alpha take a joint gradient step per batch on a fresh Gumbel
  sample. Started from a prior this is BASE's adaptation to a new dataset; from scratch it is a
  plain Gumbel-softmax search.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass
from typing import Any, Literal, cast

import torch
import torch.nn as nn
from nni.nas.evaluator.pytorch import LightningModule
from nni.nas.oneshot.pytorch.base_lightning import BaseOneShotLightningModule

from .errors import MetaTrainingDiverged
from .evaluator import EpisodicModule
from .meta_update import MeanAccumulator, ModelState, OuterOptimizer, inner_sgd_step, set_reptile_gradients
from .optimization_embedding import ArchMAML, maml_query_loss
from .supermodule import GumbelMixedCell, alpha_entropy, alpha_max_prob, derived_architecture
from .tasks import Task
from .temperature import TemperatureSchedule

__all__ = ['BaseConfig', 'BaseLightningModule']


@dataclass
class BaseConfig:
    """Hyper-parameters of BASE (see :class:`~nni_base.BaseStrategy` for their meaning)."""

    inner_steps: int = 5
    inner_lr: float = 0.05
    inner_lr_alpha: float = 0.5
    outer_lr: float | None = None
    outer_lr_alpha: float | None = None
    adapt_steps: int | None = None
    arc_learning_rate: float | None = None
    temperature: TemperatureSchedule | None = None
    hard: bool = True
    sparse: bool = True
    average_alpha_tasks: int = 0
    inner_grad_clip: float | None = None
    meta_algorithm: Literal['reptile', 'maml'] = 'reptile'
    first_order: bool = False
    relaxation: Literal['gumbel', 'softmax'] = 'gumbel'
    freeze_architecture_after: int | None = None
    sample_none: bool = False
    samples_per_step: int = 1
    outer_optimizer_alpha: Literal['sgd', 'adam'] = 'adam'
    alpha_warmup_steps: int = 0
    inner_batch_size: int | None = None
    parameterization: Literal['darts', 'slot'] = 'darts'
    freeze_alpha: bool = False
    alpha_estimator: Literal['paired', 'straight_through'] = 'paired'
    pool_batchnorm: bool = True

    def __post_init__(self):
        if self.meta_algorithm not in ('reptile', 'maml'):
            raise ValueError(f"meta_algorithm must be 'reptile' or 'maml', got {self.meta_algorithm!r}.")
        if self.relaxation not in ('gumbel', 'softmax'):
            raise ValueError(f"relaxation must be 'gumbel' or 'softmax', got {self.relaxation!r}.")
        # Reptile moves the prior toward the mean adapted values (1.0: all the way); MAML's outer
        # optimizer is Adam on the query loss, which wants a small step.
        maml = self.meta_algorithm == 'maml'
        if self.alpha_estimator not in ('paired', 'straight_through'):
            raise ValueError(f"alpha_estimator must be 'paired' or 'straight_through', got {self.alpha_estimator!r}.")
        if self.parameterization not in ('darts', 'slot'):
            raise ValueError(f"parameterization must be 'darts' or 'slot', got {self.parameterization!r}.")
        if self.outer_optimizer_alpha not in ('sgd', 'adam'):
            raise ValueError(f"outer_optimizer_alpha must be 'sgd' or 'adam', got {self.outer_optimizer_alpha!r}.")
        if self.outer_lr is None:
            self.outer_lr = 1e-3 if maml else 1.0
        if self.outer_lr_alpha is None:
            # Reptile + Adam: the step is the *sign-consistent* part of the task directions, in logits.
            # MAML + Adam: at the weights' 3e-3 α moved < 0.1 logit in 30 meta-steps (max p 0.13 on the
            # peaks family); at 0.1 the reduction cells' α found max pooling (0.41-0.43, seeds 0-1).
            self.outer_lr_alpha = 0.1 if maml else (0.15 if self.outer_optimizer_alpha == 'adam' else 1.0)
        if self.relaxation == 'softmax':
            self.hard = self.sparse = False  # a softmax mixture computes every operation
        if self.temperature is None:
            # Under hard samples argmax(alpha + g) does not depend on tau, so annealing would only shrink
            # alpha's early gradients: keep tau constant there; anneal only relaxed samples.
            hard_gumbel = self.hard and self.relaxation == 'gumbel'
            self.temperature = TemperatureSchedule(1.0, 1.0, 'constant') if hard_gumbel else TemperatureSchedule()
        elif isinstance(self.temperature, dict):  # from a prior file
            self.temperature = TemperatureSchedule(**self.temperature)
        for name in ('samples_per_step',):
            if isinstance(getattr(self, name), bool) or int(getattr(self, name)) < 1:
                raise ValueError(f'{name} must be an int >= 1, got {getattr(self, name)!r}.')
        if self.alpha_warmup_steps < 0:
            raise ValueError(f'alpha_warmup_steps must be >= 0, got {self.alpha_warmup_steps}.')
        if self.inner_batch_size is not None and self.inner_batch_size < 1:
            raise ValueError(f'inner_batch_size must be None (whole support set) or >= 1, got {self.inner_batch_size}.')
        if self.inner_steps < 1:
            raise ValueError(f'inner_steps must be at least 1, got {self.inner_steps}.')
        for name in ('inner_lr', 'inner_lr_alpha', 'outer_lr', 'outer_lr_alpha', 'arc_learning_rate'):
            value = getattr(self, name)
            if value is None and name == 'arc_learning_rate':
                continue
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f'{name} must be a finite number >= 0, got {value!r}.')
        if self.adapt_steps is not None and self.adapt_steps < 0:
            raise ValueError(f'adapt_steps must be >= 0, got {self.adapt_steps}.')
        if self.freeze_architecture_after is not None and (
                isinstance(self.freeze_architecture_after, bool) or not isinstance(self.freeze_architecture_after, int)
                or self.freeze_architecture_after < 0):
            raise ValueError('freeze_architecture_after must be None or an int >= 0 (the number of search steps '
                             f'before the architecture is fixed), got {self.freeze_architecture_after!r}.')
        if self.average_alpha_tasks < 0:
            raise ValueError(f'average_alpha_tasks must be >= 0, got {self.average_alpha_tasks}.')
        if not self.hard and self.sparse:
            self.sparse = False  # relaxed samples weight every operation: nothing to skip

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d['temperature'] = asdict(cast(TemperatureSchedule, self.temperature))
        return d


class BaseLightningModule(BaseOneShotLightningModule):
    """Search logic of :class:`~nni_base.BaseStrategy` (meta-training, adaptation, single-task search).

    Parameters
    ----------
    training_module
        The evaluator's Lightning module (loss and metrics).
    config
        BASE hyper-parameters.
    """

    def __init__(self, training_module: LightningModule, config: BaseConfig):
        super().__init__(training_module)
        self.config = config
        self.meta = isinstance(training_module, EpisodicModule)
        self.last_metrics: dict[str, float] = {}
        self.averaged_alpha: dict[str, torch.Tensor] | None = None
        for cell in self.cells():
            cell.sample_none = config.sample_none
            cell.estimator = config.alpha_estimator
            cell.pool_batchnorm = config.pool_batchnorm

    # ---- supernet helpers ----------------------------------------------------------------------
    def cells(self) -> list[GumbelMixedCell]:
        return [m for m in self.modules() if isinstance(m, GumbelMixedCell)]

    def alphas(self) -> dict[str, nn.Parameter]:
        """One logit tensor per cell type, by label."""
        return {cell.label: cell.alpha for cell in self.cells()}

    def arch_parameters(self) -> list[nn.Parameter]:
        return list(self.alphas().values())

    def weight_parameters(self) -> list[nn.Parameter]:
        arch = {id(p) for p in self.arch_parameters()}
        return [p for p in self.training_module.model.parameters() if id(p) not in arch and p.requires_grad]

    def set_temperature(self, tau: float) -> None:
        for cell in self.cells():
            cell.tau = tau
            cell.sample_none = self.config.sample_none
            cell.estimator = self.config.alpha_estimator
            cell.pool_batchnorm = self.config.pool_batchnorm

    def current_temperature(self) -> float:
        step, total = self._step_position()
        return cast(TemperatureSchedule, self.config.temperature)(step, total)

    def _step_position(self) -> tuple[int, int]:
        trainer = self.trainer
        per_epoch = max(int(trainer.num_training_batches), 1) if math.isfinite(trainer.num_training_batches) else 1
        step = trainer.current_epoch * per_epoch + trainer.fit_loop.epoch_loop.batch_progress.current.ready - 1
        return max(step, 0), max(int(trainer.estimated_stepping_batches), 1)

    def _log_architecture(self) -> None:
        for label, alpha in self.alphas().items():
            self.log(f'alpha_entropy/{label}', alpha_entropy(alpha), on_step=True, on_epoch=False)
            self.log(f'alpha_max_prob/{label}', alpha_max_prob(alpha), on_step=True, on_epoch=False)

    # ---- optimizers --------------------------------------------------------------------------------
    def configure_optimizers(self):
        if self.meta and self.config.meta_algorithm == 'maml':
            # The outer optimizer of the optimization embedding: Adam on the post-adaptation query loss.
            return torch.optim.Adam([
                {'params': self.weight_parameters(), 'lr': self.config.outer_lr, 'name': 'weights'},
                {'params': self.arch_parameters(), 'lr': self.config.outer_lr_alpha, 'name': 'alpha'},
            ])
        if self.meta and self.config.outer_optimizer_alpha == 'adam':
            # Reptile: SGD moves the weights toward the task mean; alpha's per-task direction is small and
            # noisy (one sampled op per edge and step), so Adam steps along its consistent sign instead.
            return OuterOptimizer([
                {'params': self.weight_parameters(), 'lr': self.config.outer_lr, 'name': 'weights'},
                {'params': self.arch_parameters(), 'lr': self.config.outer_lr_alpha, 'name': 'alpha',
                 'adaptive': True}])
        if self.meta:
            # The outer optimizer: plain SGD on the Reptile direction, one step size per group.
            return torch.optim.SGD([
                {'params': self.weight_parameters(), 'lr': self.config.outer_lr, 'name': 'weights'},
                {'params': self.arch_parameters(), 'lr': self.config.outer_lr_alpha, 'name': 'alpha'},
            ], lr=self.config.outer_lr)
        return super().configure_optimizers()

    def configure_architecture_optimizers(self):
        if not self.arch_parameters():
            raise ValueError('The model space has no cells to search; BaseStrategy found nothing to optimise.')
        if self.config.arc_learning_rate is None:
            # Adaptation moves alpha as the inner loop it was meta-trained with did (SGD, inner_lr_alpha); an
            # Adam step of 3e-3 would leave the prior's argmax in place (the frozen-alpha condition).
            return torch.optim.SGD(self.arch_parameters(), lr=self.config.inner_lr_alpha)
        return torch.optim.Adam(self.arch_parameters(), lr=self.config.arc_learning_rate, betas=(0.5, 0.999))

    def postprocess_weight_optimizers(self, optimizer):
        arch = {id(p) for p in self.arch_parameters()}

        def strip(opt):
            if isinstance(opt, torch.optim.Optimizer):
                for group in opt.param_groups:
                    group['params'] = [p for p in group['params'] if id(p) not in arch]
            elif isinstance(opt, (list, tuple)):
                for o in opt:
                    strip(o)
            elif isinstance(opt, dict) and 'optimizer' in opt:
                strip(opt['optimizer'])
            return opt

        return strip(optimizer)

    # ---- the inner loop ------------------------------------------------------------------------
    def _task_loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._model_loss(self.training_module.model, x, y)

    def adapt(self, task: Task, steps: int, state: ModelState, *, where: str, train_alpha: bool = True) -> float:
        """Run ``steps`` SGD steps on the task's support set in place; returns the last support loss.

        Each step draws ``inner_batch_size`` support images (all of them by default) and averages the loss
        over ``samples_per_step`` Gumbel samples. ``train_alpha=False`` keeps alpha fixed (weight warm-up).
        """
        params = state.params
        arch = {id(p) for p in self.arch_parameters()}
        alpha_lr = self.config.inner_lr_alpha if train_alpha and not self.config.freeze_alpha else 0.0
        lrs = [alpha_lr if id(p) in arch else self.config.inner_lr for p in params]
        loss_value = float('nan')
        self.training_module.model.train()
        n, batch = len(task.support_y), self.config.inner_batch_size
        for step in range(steps):
            if batch is not None and batch < n:
                idx = torch.randperm(n, device=task.support_y.device)[:batch]
                x, y = task.support_x[idx], task.support_y[idx]
            else:
                x, y = task.support_x, task.support_y
            loss = 0.0
            for _ in range(self.config.samples_per_step):
                self.resample()
                loss = loss + self._task_loss(x, y)[0] / self.config.samples_per_step
            loss = cast(torch.Tensor, loss)
            loss_value = float(loss.detach())
            if not math.isfinite(loss_value):
                raise MetaTrainingDiverged(
                    f'Non-finite support loss ({loss_value}) at {where}, inner step {step}. The shared prior was '
                    'not updated; lower inner_lr / inner_lr_alpha or the outer step sizes.')
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            if self.config.inner_grad_clip:
                # Each step trains another sampled sub-network; clipping keeps one bad sample from
                # throwing the shared weights far off.
                present = [g for g in grads if g is not None]
                norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in present]))
                scale = min(1.0, self.config.inner_grad_clip / (float(norm) + 1e-12))
                if scale < 1.0:
                    grads = tuple(g * scale if g is not None else None for g in grads)
            inner_sgd_step(params, grads, lrs.__getitem__)
        return loss_value

    def alpha_warming_up(self) -> bool:
        """Whether meta-training is still in the weight warm-up (alpha fixed for ``alpha_warmup_steps`` meta-steps)."""
        return self.meta and self.trainer.global_step < self.config.alpha_warmup_steps

    @torch.no_grad()
    def query_metrics(self, task: Task) -> tuple[float, float]:
        """Query loss and accuracy of the derived architecture (batch statistics, as in the inner loop).

        BatchNorm running statistics are restored afterwards: query data never reaches the prior.
        """
        buffers = ModelState(self.training_module.model).buffers
        saved = [b.clone() for b in buffers]
        with derived_architecture(self.cells()):
            loss, acc = self._task_loss(task.query_x, task.query_y)
        torch._foreach_copy_(buffers, saved)
        return float(loss), float(acc)

    # ---- checkpoints -------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Gumbel noise comes from torch's global generator; a resumed run must continue its stream to
        # reproduce the uninterrupted run. Plain tensors and tuples keep the file loadable with weights_only.
        checkpoint['nni_base_rng'] = {
            'torch': torch.get_rng_state(),
            'cuda': torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            'python': random.getstate(),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get('nni_base_rng')
        if state is None:
            return
        torch.set_rng_state(state['torch'])
        if state['cuda'] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state['cuda'])
        version, internal, gauss = state['python']
        random.setstate((version, tuple(internal), gauss))

    # ---- training --------------------------------------------------------------------------------
    def on_train_batch_start(self, batch, batch_idx):
        self.set_temperature(self.current_temperature())

    def training_step(self, batch, batch_idx):
        if self.meta:
            return self._meta_training_step(cast(list, batch), batch_idx)
        return self._search_step(batch, batch_idx)

    def _meta_training_step(self, tasks: list[Task], batch_idx: int):
        if not (isinstance(tasks, list) and tasks and isinstance(tasks[0], Task)):
            raise TypeError('Meta-training batches must be lists of nni_base.Task; build the evaluator with '
                            'nni_base.EpisodicClassification.')
        if self.config.meta_algorithm == 'maml':
            return self._maml_meta_step(tasks, batch_idx)
        state = ModelState(self.training_module.model)
        shared = state.snapshot()
        adapted = MeanAccumulator(state.tensors)
        train_alpha = not self.alpha_warming_up() and not self.config.freeze_alpha
        where = f'meta-step {self.trainer.global_step} (epoch {self.trainer.current_epoch}, batch {batch_idx})'
        before, after, losses = [], [], []
        for k, task in enumerate(tasks):
            task = task.to(self.device)
            before.append(self.query_metrics(task)[1])
            self.adapt(task, self.config.inner_steps, state, where=f'{where}, task {k}', train_alpha=train_alpha)
            loss, acc = self.query_metrics(task)
            if not math.isfinite(loss):
                state.restore(shared)
                raise MetaTrainingDiverged(f'Non-finite query loss at {where}, task {k}; the shared prior was not '
                                           'updated. Lower the inner or outer step sizes.')
            losses.append(loss)
            after.append(acc)
            adapted.add(state.tensors)
            state.restore(shared)

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
        with torch.no_grad():  # BatchNorm statistics: take the task mean directly
            torch._foreach_copy_(state.buffers, mean[n_params:])

        return self._log_meta_step(losses, before, after)

    def _log_meta_step(self, losses: list[float], before: list[float], after: list[float]) -> torch.Tensor:
        metrics = {
            'outer_loss': sum(losses) / len(losses),
            'query_acc_before': sum(before) / len(before),
            'query_acc_after': sum(after) / len(after),
            'temperature': self.cells()[0].tau,
        }
        self.last_metrics = metrics
        self.log_dict(metrics, prog_bar=True, on_step=True, on_epoch=True, batch_size=len(losses))
        self._log_architecture()
        return torch.tensor(metrics['outer_loss'])

    def _model_loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = model(x)
        if isinstance(logits, tuple):
            logits = logits[0]
        return self.training_module.criterion(logits, y), (logits.argmax(-1) == y).float().mean()

    def _maml_meta_step(self, tasks: list[Task], batch_idx: int):
        """Few-shot BASE: back-propagate each task's post-adaptation query loss through its inner loop."""
        model = self.training_module.model
        model.train()
        maml = ArchMAML(model, self.config.inner_lr, self.config.inner_lr_alpha, self.arch_parameters(),
                        first_order=self.config.first_order)
        optimizer = cast(torch.optim.Optimizer, self.optimizers())
        optimizer.zero_grad()
        where = f'meta-step {self.trainer.global_step} (epoch {self.trainer.current_epoch}, batch {batch_idx})'
        before, after, losses = [], [], []
        for k, task in enumerate(tasks):
            task = task.to(self.device)
            before.append(self.query_metrics(task)[1])
            loss, acc = maml_query_loss(maml, task, self.config.inner_steps, self._model_loss,
                                        where=f'{where}, task {k}')
            if not bool(torch.isfinite(loss)):
                optimizer.zero_grad()
                raise MetaTrainingDiverged(f'Non-finite query loss at {where}, task {k}; the shared prior was not '
                                           'updated. Lower the inner or outer step sizes.')
            # One backward per task frees its unrolled graph before the next task is built.
            self.manual_backward(loss / len(tasks))
            losses.append(float(loss.detach()))
            after.append(float(acc))
        params = self.weight_parameters() + self.arch_parameters()
        if not all(p.grad is None or bool(torch.isfinite(p.grad).all()) for p in params):
            optimizer.zero_grad()
            raise MetaTrainingDiverged(f'Non-finite meta-gradient at {where}; the shared prior was not updated.')
        optimizer.step()

        return self._log_meta_step(losses, before, after)

    def architecture_frozen(self, step: int) -> bool:
        """Whether single-task step ``step`` trains the derived architecture only (``freeze_architecture_after``)."""
        after = self.config.freeze_architecture_after
        return after is not None and step >= after

    def _search_step(self, batch, batch_idx: int):
        arch_optim = self.architecture_optimizers()
        frozen = self.architecture_frozen(self._step_position()[0])
        arch_optim.zero_grad()  # type: ignore[union-attr]
        if frozen:
            # The architecture is chosen: train the weights of the derived cells only, as the user gets them.
            with derived_architecture(self.cells()):
                out = self.training_module.training_step(batch, batch_idx)
        else:
            self.resample()
            out = self.training_module.training_step(batch, batch_idx)
        loss = out['loss'] if isinstance(out, dict) else out
        if not bool(torch.isfinite(loss)):
            raise MetaTrainingDiverged(f'Non-finite training loss at step {self.trainer.global_step}; lower the '
                                       'learning rates.')
        self.advance_optimization(loss, batch_idx)  # backward + weight step; alpha grads come with it
        if not frozen and not self.config.freeze_alpha:
            arch_optim.step()  # type: ignore[union-attr]
        self.advance_lr_schedulers(batch_idx)
        self.log('architecture_frozen', float(frozen), on_step=True, on_epoch=False)
        self.log('temperature', self.cells()[0].tau, on_step=True, on_epoch=False)
        self._log_architecture()
        return out

    # ---- validation --------------------------------------------------------------------------------
    def validation_step(self, batch, batch_idx):
        if not self.meta:
            return self.training_module.validation_step(batch, batch_idx)
        steps = self.config.adapt_steps if self.config.adapt_steps is not None else self.config.inner_steps
        state = ModelState(self.training_module.model)
        shared = state.snapshot()
        before, after = [], []
        with torch.enable_grad():
            for task in cast(list, batch):
                task = task.to(self.device)
                before.append(self.query_metrics(task)[1])
                self.adapt(task, steps, state, where=f'validation episode {batch_idx}')
                after.append(self.query_metrics(task)[1])
                state.restore(shared)
        n = len(before)
        self.log('val_acc_before', sum(before) / n, on_epoch=True, prog_bar=True, batch_size=n)
        self.log('val_acc', sum(after) / n, on_epoch=True, prog_bar=True, batch_size=n)

    def on_validation_epoch_start(self):
        self.set_temperature(self.current_temperature() if self.trainer.training
                             else cast(TemperatureSchedule, self.config.temperature).end)
        return self.training_module.on_validation_epoch_start()

    def on_validation_epoch_end(self):
        return self.training_module.on_validation_epoch_end()

    # ---- alpha averaging over tasks (paper section 5.2) --------------------------------------------
    def average_alpha_over_tasks(self, tasks: list[Task], steps: int) -> dict[str, torch.Tensor]:
        """Adapt to each task, average the adapted architecture distributions, return their log-probabilities."""
        state = ModelState(self.training_module.model)
        shared = state.snapshot()
        probs: dict[str, torch.Tensor] = {}
        with torch.enable_grad():
            for k, task in enumerate(tasks):
                self.adapt(task.to(self.device), steps, state, where=f'alpha averaging, task {k}')
                for label, alpha in self.alphas().items():
                    p = torch.softmax(alpha.detach(), -1)
                    probs[label] = probs.get(label, 0) + p / len(tasks)
                state.restore(shared)
        self.averaged_alpha = {label: p.log() for label, p in probs.items()}
        return self.averaged_alpha
