"""Reptile meta-training of a dataset-conditioned prior (MetaD2A's generator inside BASE).

Where it sits
    :class:`~nni_base.BaseStrategy` picks :class:`ConditionedReptileModule` in ``configure_oneshot_module`` when
    ``conditioning=True`` and the evaluator is episodic. It is :class:`~nni_base.search.reptile.ReptileModule`
    with three hooks in the shared task loop:

    * ``prepare_task`` (before the inner loop): encode the task's support set, ``α ← shared α + g(encoding)``;
    * ``task_adapted`` (after it): the shared α moves toward the mean of ``adapted α − offset`` (so it learns the
      part common to all tasks), the generator's target is ``offset + the task's α direction`` (below), and the
      adapted supernet scores the derived and ``predictor_samples`` random architectures on the query set
      (predictor records);
    * ``end_meta_step``: one Adam step of encoder + generator on the regression loss, and ``predictor_steps`` of
      the predictor on batches of records (targets centred per task with ``predictor_centred``). With several
      tasks per meta-step the generator's targets are centred over the step's tasks: the common part of the
      task directions is the shared α's Reptile step, the generator learns only how a dataset deviates from it
      (uncentred, both took the common part and the first benchmark run's conditioned α saturated to the same
      one-hot cell for both families).

Why this learning signal
    Reptile's outer gradient with respect to a task's *starting* α is ``starting α − adapted α``. With
    ``starting α = shared α + g(e)``, the loss ``½‖g(e) − (adapted α − shared α)‖²`` has exactly that gradient with
    respect to ``g(e)``, so regressing the generator onto the task's adapted offset *is* Reptile on the
    generated part, chained through the generator into the encoder; the shared α takes the task mean as before.
    No second-order terms and no query-loss backpropagation through the inner loop are needed.

The task's α direction
    With SGD at ``inner_lr_alpha`` a task's α moves ~0.003 logit in 5 inner steps (one step's α gradient is
    ~3e-3), so ``adapted α − start`` was a tiny target and the generated offsets stayed ~1e-4: the conditioned α
    was the shared α. With ``ConditioningConfig.alpha_lr`` the direction is where a fresh per-task Adam would take
    α on the same gradients (:class:`~nni_base.search.loop.AlphaAdam`): logit-sized, same sign. By default
    (``teacher='shadow'``) Adam only records it and the inner loop keeps its SGD step, so weights and shared α
    learn as without conditioning; ``'inner'`` moves the task's α with Adam (measured worse: the shared α lost max
    pooling in the reduction cell). ``alpha_lr=None``: the SGD-adapted α is the target.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from ..config import BaseConfig
from ..search.distributed import process_group
from ..search.loop import AlphaAdam, adapt_each
from ..search.meta_update import ModelState
from ..search.reptile import ReptileModule
from ..search.top_k import cell_shapes, plain_choices, random_architecture, top_k_architectures
from ..space.gumbel_cell import fixed_architecture
from ..space.mixed import fixed_choices
from ..tasks import Task
from .conditioner import Conditioner
from .predictor import RecordBuffer, arch_features
from .stem import stem_spec

__all__ = ['ConditionedReptileModule']

PREDICTOR_BATCH = 64


@dataclass
class _TaskStart:
    """What ``prepare_task`` remembers of a task until it is adapted."""

    task: Task
    shared: dict[str, torch.Tensor]
    offset: dict[str, torch.Tensor]


class ConditionedReptileModule(ReptileModule):
    """Reptile over (weights, shared α, encoder, generator, predictor); see the module docstring."""

    def __init__(self, training_module, config: BaseConfig, conditioning: Mapping[str, Any] | None = None):
        super().__init__(training_module, config)
        # Built from the prior, or on first use: the supernet is set after construction (``set_model``).
        self.conditioner: Conditioner | None = Conditioner.from_state(conditioning) if conditioning else None
        self.records = RecordBuffer()
        self._rng = random.Random(0)
        self._starts: list[_TaskStart] = []
        self._targets: list[dict[str, torch.Tensor]] = []
        self._conditioning_optimizer: torch.optim.Optimizer | None = None
        self._shadow: AlphaAdam | None = None  # the current task's shadow Adam (ConditioningConfig(teacher='shadow'))
        self.last_conditioning: dict[str, float] = {}

    def ensure_conditioner(self) -> Conditioner:
        """The conditioner, built for the supernet's cell types on first use."""
        if self.conditioner is None:
            shapes = cell_shapes(self.cells())
            alphas = self.alphas()
            choices = plain_choices(self.training_module.model, alphas, [s.label for s in shapes])
            if choices is None:
                raise TypeError(
                    'conditioning=True covers DARTS-style cells and single-valued choices '
                    '(LayerChoice, nni.choice, Repeat depth, NasBench201 edges); this space also has '
                    'multi-input or NNI-cell choices. Turn conditioning off for it.'
                )
            stem = (
                stem_spec(getattr(self.training_module.model, 'stem', None))
                if self.config.conditioning_features == 'stem'
                else None
            )
            self.conditioner = Conditioner(
                shapes,
                {str(k): tuple(a.shape) for k, a in alphas.items()},
                standardise=self.config.conditioning_standardise,
                per_op=self.config.conditioning_per_op,
                choices=choices,
                stem=stem,
            ).to(self.device)
        return self.conditioner

    def on_fit_start(self) -> None:
        world_size = process_group()[1]
        if world_size > 1:
            # Each process would update the encoder's running statistics, the generator and the predictor from
            # its own share of the tasks, so the processes' conditioners would drift apart (not implemented).
            raise NotImplementedError(
                f'conditioning=True runs in one process; this run has {world_size} (DDP). Meta-train the '
                'conditioned prior with devices=1, or turn conditioning off to meta-train on several '
                'processes.'
            )
        return super().on_fit_start()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        self.ensure_conditioner()  # Lightning loads the state dict after this hook: the conditioner's keys need it

    # ---- the task-loop hooks -------------------------------------------------------------------------
    def inner_alpha_adam_lr(self) -> float | None:
        return self.config.conditioning_alpha_lr if self.config.conditioning_teacher == 'inner' else None

    def inner_alpha_shadow(self) -> AlphaAdam | None:
        return self._shadow

    def prepare_task(self, index: int, task: Task) -> None:
        if index == 0:
            self._starts, self._targets = [], []
        conditioner = self.ensure_conditioner()
        self._sync_stem()
        encoding = conditioner.encode(task.support_x, task.support_y)
        offset = conditioner.generator(encoding)
        alphas = {str(label): a for label, a in self.alphas().items()}
        shared = {label: a.detach().clone() for label, a in alphas.items()}
        with torch.no_grad():
            for label, alpha in alphas.items():
                alpha.add_(offset[label].detach())
        self._starts.append(_TaskStart(task, shared, offset))
        lr = self.config.conditioning_alpha_lr
        self._shadow = AlphaAdam(lr) if lr is not None and self.config.conditioning_teacher == 'shadow' else None

    def task_adapted(self, state: ModelState) -> list[torch.Tensor]:
        start = self._starts[-1]
        alphas = {str(label): a for label, a in self.alphas().items()}
        if self._shadow is not None:  # the SGD-adapted α barely moved: Adam's direction from the start is the target
            self._targets.append(
                {label: start.offset[label].detach() + self._shadow.direction(a) for label, a in alphas.items()}
            )
        else:
            self._targets.append({label: (a.detach() - start.shared[label]) for label, a in alphas.items()})
        if self.training:
            self._record(start.task)
        tensors = list(state.tensors)
        index = {id(p): i for i, p in enumerate(state.params)}
        for label, alpha in alphas.items():
            i = index[id(alpha)]
            tensors[i] = tensors[i] - start.offset[label].detach()
        return tensors

    def end_meta_step(self, train_alpha: bool) -> None:
        optimizer = self._optimizer()
        optimizer.zero_grad()
        loss = torch.zeros((), device=self.device)
        if train_alpha and self._starts:
            targets = self._targets
            # the part common to the step's tasks is the shared α's (its Reptile step)
            if self.config.conditioning_centred and len(targets) > 1:
                mean = {label: torch.stack([t[label] for t in targets]).mean(0) for label in targets[0]}
                targets = [{label: t[label] - mean[label] for label in t} for t in targets]
            for start, target in zip(self._starts, targets):
                for label, offset in start.offset.items():
                    loss = loss + 0.5 * (offset - target[label]).square().sum() / len(self._starts)
        regression = float(loss.detach())
        if loss.requires_grad:
            loss.backward()
            optimizer.step()
        # The predictor's own steps (Adam skips the encoder and generator: their gradients are None here). With
        # one step per meta-step, as before, a 60-step run had fit the predictor with 60 steps in all.
        predictor_loss = None
        for _ in range(self.config.predictor_steps):
            predictor_loss = self._predictor_loss()
            if predictor_loss is None:
                break
            optimizer.zero_grad()
            predictor_loss.backward()
            optimizer.step()
        self._starts, self._targets = [], []
        self.last_conditioning = {
            'offset_regression': regression,
            'predictor_mse': float(predictor_loss.detach()) if predictor_loss is not None else float('nan'),
        }
        self.log_dict(self.last_conditioning, on_step=True, on_epoch=False)

    def validation_step(self, batch, batch_idx):
        self.query_mode()  # batch statistics for every query measurement (MetaTrainingModule.query_mode)
        results = adapt_each(
            self,
            self.check_tasks(batch),
            self.config.adaptation_steps,
            where=f'validation episode {batch_idx}',
            prepare=self.prepare_task,
            alpha_adam_lr=self.inner_alpha_adam_lr(),
            alpha_shadow=self.inner_alpha_shadow,
        )
        self._starts, self._targets = [], []
        n = len(results.after)
        self.log('val_acc_before', results.mean_before, on_epoch=True, prog_bar=True, batch_size=n)
        self.log('val_acc', results.mean_after, on_epoch=True, prog_bar=True, batch_size=n)

    # ---- predictor records ---------------------------------------------------------------------------
    @torch.no_grad()
    def score_architecture(self, task: Task, sample: dict[str, Any]) -> float:
        """Query accuracy of ``sample`` run with the supernet's current weights (batch statistics, restored)."""
        buffers = self.model_state().buffers
        saved = [b.clone() for b in buffers]
        choices = self.ensure_conditioner().choices
        alphas = {str(k): a for k, a in self.alphas().items()}
        with fixed_architecture(self.cells(), sample), fixed_choices(self.softmaxes(), alphas, sample, choices):
            _, acc = self.model_loss(task.query_x, task.query_y)
        torch._foreach_copy_(buffers, saved)
        return float(acc)

    def _record(self, task: Task) -> None:
        conditioner = self.ensure_conditioner()
        shapes, choices = conditioner.shapes, conditioner.choices
        derived = top_k_architectures(shapes, {str(k): a.detach() for k, a in self.alphas().items()}, 1, choices)[0][0]
        samples = [derived] + [
            random_architecture(shapes, self._rng, choices) for _ in range(self.config.predictor_samples)
        ]
        task_id = self.records.add_task(conditioner.features(task.support_x), task.support_y)
        for sample in samples:
            self.records.add(task_id, arch_features(sample, shapes, choices), self.score_architecture(task, sample))

    def _predictor_loss(self) -> torch.Tensor | None:
        if not self.records.records:
            return None
        conditioner = self.ensure_conditioner()
        batch = self.records.batch(PREDICTOR_BATCH, self._rng)
        encodings: dict[int, torch.Tensor] = {}
        for task_id, _, _ in batch:
            if task_id not in encodings:
                features, labels = self.records.tasks[task_id]
                with torch.no_grad():  # the encoder learns from the generator's signal only
                    encodings[task_id] = conditioner.encoder.encode_features(
                        features.to(self.device), labels.to(self.device)
                    )
        enc = torch.stack([encodings[t] for t, _, _ in batch])
        arch = torch.stack([a for _, a, _ in batch]).to(self.device)
        acc = torch.tensor([y for _, _, y in batch], device=self.device)
        if self.config.predictor_centred:
            # Zero-shot ranks architectures for one dataset: only the differences within a task matter, and
            # uncentred, how hard each task is dominates the targets' variance.
            means = self.records.task_means()
            acc = acc - torch.tensor([means[t] for t, _, _ in batch], device=self.device)
        conditioner.predictor_records = self.records.total
        return (conditioner.predictor(enc, arch) - acc).square().mean()

    def _optimizer(self) -> torch.optim.Optimizer:
        if self._conditioning_optimizer is None:
            trainable = [p for p in self.ensure_conditioner().parameters() if p.requires_grad]  # not the stem copy
            self._conditioning_optimizer = torch.optim.Adam(trainable, lr=self.config.conditioning_lr)
        return self._conditioning_optimizer

    def conditioning_state(self) -> dict[str, Any]:
        """The encoder, generator and predictor as plain tensors, for the prior file."""
        self._sync_stem()  # the stem the prior ends with
        return self.ensure_conditioner().state()

    def _sync_stem(self) -> None:
        """With ``ConditioningConfig(features='stem')``: the encoder reads the supernet's stem as it is now."""
        conditioner = self.ensure_conditioner()
        if conditioner.stem is not None:
            conditioner.sync_stem(self.training_module.model.stem)
