"""Single-task search and adaptation: BASE on one dataset through any Lightning evaluator.

With NNI's ``Classification`` (or any non-episodic evaluator) weights and α take a joint gradient
step per batch on a fresh Gumbel sample: started from a prior this is BASE's adaptation to a new
dataset, from scratch a plain Gumbel-softmax search. With ``AdaptationConfig(freeze_architecture_after=N)`` the
architecture is fixed to the derived cell after N steps and only its weights train. Before each
validation the derived cell's BatchNorm statistics are recomputed from the latest training batches
(``bn_recalibration_batches``), because while searching they were updated by other sub-networks.

Under Lightning DDP (``Classification(..., devices=W, strategy='ddp_find_unused_parameters_true')``) it runs as
NNI's one-shot strategies do: Lightning shards the training batches, ``advance_optimization``'s
``manual_backward`` lets DDP's reducer average the gradients of weights *and* α (α are parameters of the
wrapped module) over the ranks, and every rank takes the same optimizer steps. Each rank draws the same Gumbel
sample (:meth:`SingleTaskModule.on_train_start` gives every rank rank 0's random stream), so all run the same
sub-network. The recalibrated BatchNorm statistics are averaged over the ranks, and at the end the ranks check
that their weights and α agree, so any rank's export (NNI reads rank 0's) is the same architecture.

Example
-------
>>> adaptation = AdaptationConfig(freeze_architecture_after=24)  # doctest: +SKIP
>>> strategy = BaseStrategy(prior='prior.pt', adaptation=adaptation)  # doctest: +SKIP
>>> NasExperiment(space, Classification(train_dataloaders=..., val_dataloaders=...), strategy).run()  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import warnings
from collections import deque
from collections.abc import Callable
from itertools import islice
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..config import DEFAULT_ARC_LEARNING_RATE
from ..data.checks import check_batch, check_dataset_labels, classifier_outputs, input_channels, label_error
from . import adaptation
from .adaptation import BATCH_NORMS, architecture_frozen, architecture_optimizer, recalibrate_batchnorm
from .base import BaseSearchModule
from .budgeted import BudgetedSearch
from .distributed import all_reduce_sum, broadcast_from_rank_zero, process_group
from .head import initialise_head
from .trust import TrustResult, probe_alpha_scales

__all__ = ['SingleTaskModule', 'DEFAULT_ARC_LEARNING_RATE', 'BATCH_NORMS', 'architecture_optimizer', 'check_ddp_model']

_logger = logging.getLogger('nni_base')

#: Images (from the first training batches) a rebuilt classifier head takes its class means from.
HEAD_INIT_IMAGES = 256


def check_ddp_model(model: nn.Module) -> None:
    """Refuse a ``DistributedDataParallel`` wrapper whose reducer cannot average single-task search's gradients.

    Only the sampled operation of each edge runs (the runner-up without a gradient), and after
    ``freeze_architecture_after`` only the derived cell, so most parameters get no gradient in a step and the
    set changes from step to step. DDP's reducer must be told (``find_unused_parameters=True``); without it the
    second step fails in the reducer ("Expected to have finished reduction in the prior iteration"), and
    ``static_graph=True`` assumes the same set every step.
    """
    fix = (
        "Pass strategy='ddp_find_unused_parameters_true' to the evaluator (e.g. Classification(..., devices=2, "
        "strategy='ddp_find_unused_parameters_true')) or DDPStrategy(find_unused_parameters=True, ...)."
    )
    if getattr(model, 'static_graph', False):
        raise ValueError(
            'Single-task search under DDP samples another sub-network every step, so DDP cannot run '
            f'with static_graph=True. Drop static_graph. {fix}'
        )
    if getattr(model, 'find_unused_parameters', True) is False:
        raise ValueError(
            'Single-task search under DDP trains only the sampled operation of each edge, so most '
            "parameters get no gradient in a step and DDP's reducer must know it (find_unused_parameters"
            f'=True). {fix}'
        )


class SingleTaskModule(BudgetedSearch, BaseSearchModule):
    """Searches (or adapts a prior) on the evaluator's one dataset (under a cost budget: :mod:`.budgeted`)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # inputs of this epoch's latest training batches, for the BatchNorm recalibration before validation
        self.recent_inputs: deque[torch.Tensor] = deque(maxlen=self.config.bn_recalibration_batches)
        self.train_data: Callable[[], Any] | None = None  # the user's training loader (BaseStrategy sets it)
        self.from_prior = False  # BaseStrategy sets it when the supernet was loaded from a prior
        self.prior_trust: TrustResult | None = None  # what the prior-trust probe found (search/trust.py)

    def configure_architecture_optimizers(self):
        if not self.arch_parameters():
            raise ValueError('The model space has no architecture logits; BaseStrategy found nothing to optimise.')
        return architecture_optimizer(self.arch_parameters(), self.config.arc_learning_rate)

    def architecture_frozen(self, step: int) -> bool:
        """Whether step ``step`` trains the derived architecture only (``freeze_architecture_after``)."""
        return architecture_frozen(self.config, step)

    def training_step(self, batch, batch_idx):
        step = self.step_position()[0]
        frozen = self.architecture_frozen(step)
        out: dict = {}

        def loss_of_batch() -> torch.Tensor:
            result = self.training_module.training_step(batch, batch_idx)
            out['result'] = result
            return result['loss'] if isinstance(result, dict) else result

        # through the module, so the one adaptation step is the one every caller runs (tests spy on it)
        try:
            adaptation.adaptation_step(
                self,
                loss_of_batch,
                frozen=frozen,
                arch_optimizer=self.architecture_optimizers(),
                # backward + weight step (DDP averages weights' and α's gradients in manual_backward)
                backward_and_step=lambda loss: self.advance_optimization(loss, batch_idx),
                where=f'training step {step}',
                inputs=_inputs_of(batch),
                alpha_gradient=self.budget_gradient,
            )
        except (IndexError, RuntimeError) as error:  # a label out of range in a batch after the checked ones
            # (around the whole step: CUDA reports its assert at the next sync, after the loss has returned)
            where = f'training batch {batch_idx} (epoch {self.current_epoch})'
            clear = label_error(error, where=where, num_classes=classifier_outputs(self.training_module.model))
            if clear is None:
                raise
            raise clear from error
        self.remember_inputs(batch)
        self.advance_lr_schedulers(batch_idx)
        self.log('architecture_frozen', float(frozen), on_step=True, on_epoch=False)
        self.log('temperature', self.temperature, on_step=True, on_epoch=False)
        self.log_architecture()
        return out['result']

    # ---- the dataset, once, before the first step ------------------------------------------------------
    def check_and_prepare(self) -> None:
        """Check the training data against the space (every label where the dataset gives them without loading
        images, else the first batch's; the first batch's images), and initialise a rebuilt classifier head.

        Runs once before training (no per-step cost), on the user's training loader (``train_data()``, set by
        :class:`~nni_base.BaseStrategy`); reading the batches does not move any random stream.
        """
        loader = self.train_data() if self.train_data is not None else None
        if isinstance(loader, (list, tuple)) and loader:  # several training loaders: the first is the dataset's
            loader = loader[0]
        if loader is None:
            return  # a module used outside BaseStrategy
        model = self.training_module.model
        with torch.random.fork_rng(devices=[]):
            batches = list(islice(iter(loader), max(1, HEAD_INIT_IMAGES // 32)))
        if not batches:
            raise ValueError(
                'The training dataloader yields no batches: its dataset is empty (or smaller than one '
                'batch with drop_last=True). Give the evaluator a dataset with labelled images.'
            )
        num_classes = classifier_outputs(model)
        metrics = getattr(self.training_module, 'metrics', None)  # NNI's Classification: {'acc': Accuracy}
        metric = metrics['acc'] if isinstance(metrics, dict | torch.nn.ModuleDict) and 'acc' in metrics else None
        metric_classes = getattr(metric, 'num_classes', None)
        if num_classes is not None and metric_classes is not None and metric_classes != num_classes:
            raise ValueError(
                f"The evaluator's accuracy counts {metric_classes} classes but the space's classifier "
                f'has {num_classes} outputs: pass the same num_classes to both (e.g. '
                f'Classification(num_classes={num_classes}) with the space built for {num_classes}).'
            )
        # every label where the dataset gives them cheaply (else the first batch's), then the first batch's images
        check_dataset_labels(loader, num_classes=num_classes)
        check_batch(
            batches[0],
            channels=input_channels(model),
            num_classes=num_classes,
            model=model,
            where='the first training batch',
        )
        first_inputs = _inputs_of(batches[0])
        self.prepare_budget(None if first_inputs is None else tuple(first_inputs.shape[1:]))
        total, after = self.step_position()[1], self.config.freeze_architecture_after
        if after is not None and after >= total and self.trainer.global_step == 0:
            warnings.warn(
                f"freeze_architecture_after={after} is not below this run's {total} steps: the architecture "
                f'is never frozen and every step searches. Set it below {total} (e.g. {total // 2}) or leave '
                'it at None.',
                UserWarning,
                stacklevel=2,
            )
        if self.trainer.global_step > 0:
            return  # a resumed run has its trained head and its chosen alpha back
        xs = ys = None
        if self.rebuilt_heads or self.probes_trust():
            pairs = [check_batch(b, channels=None, num_classes=num_classes, where='a training batch') for b in batches]
            xs = torch.cat([p[0] for p in pairs])[:HEAD_INIT_IMAGES].to(self.device)
            ys = torch.cat([p[1] for p in pairs])[:HEAD_INIT_IMAGES].to(self.device)
        if self.rebuilt_heads:
            _logger.info(initialise_head(self, self.rebuilt_heads, xs, ys, self.config.head_init))
            if process_group()[1] > 1:  # each rank read its own shard: all start from rank 0's head
                head = [p for name in self.rebuilt_heads for p in model.get_submodule(name).parameters()]
                with torch.no_grad():
                    for p, shared in zip(head, broadcast_from_rank_zero(head, where='the rebuilt classifier head')):
                        p.copy_(shared)
            self.rebuilt_heads = []
        if self.probes_trust():
            batch_size = len(pairs[0][1])
            self.prior_trust = probe_alpha_scales(
                self, xs, ys, steps=self.config.prior_trust_steps, batch_size=batch_size
            )
            _logger.info(self.prior_trust.describe())

    def probes_trust(self) -> bool:
        """Whether this run decides how far to trust its prior's α on the data (search/trust.py): from a prior, with
        ``prior_trust_steps`` > 0 and ``prior_alpha_scale`` left at 1, in one process (each DDP rank sees another
        shard, so ranks could choose differently)."""
        config = self.config
        single = process_group()[1] == 1
        return self.from_prior and config.prior_trust_steps > 0 and config.prior_alpha_scale == 1 and single

    # ---- DDP (see the module docstring) ---------------------------------------------------------------
    # Gradients are averaged by DDP's reducer in manual_backward, as in NNI's own one-shot strategies, rather than
    # by an explicit all-reduce: it already covers every parameter (α included), skips the ones no rank used
    # (their .grad stays None, so Adam leaves them alone as in one process) and overlaps with the backward pass.
    # All it needs is find_unused_parameters=True (check_ddp_model).
    def on_fit_start(self):
        self.check_and_prepare()  # before Lightning's sanity validation and the first step
        world_size = process_group()[1]
        if world_size > 1:
            model = self.trainer.strategy.model
            if not isinstance(model, DistributedDataParallel):
                raise ValueError(
                    f'Single-task search on {world_size} processes runs under Lightning DDP only, got '
                    f"{type(self.trainer.strategy).__name__}: pass strategy='ddp_find_unused_parameters_"
                    "true' to the evaluator."
                )
            check_ddp_model(model)
        return super().on_fit_start()

    def on_train_start(self):
        # With a seed, Lightning re-seeds every process alike as it joins the group; without one (seed=None), or with
        # a stream consumed unevenly before this, the ranks would sample different sub-networks. So every rank takes
        # rank 0's stream (CPU, and this rank's GPU).
        if process_group()[1] > 1:
            cuda = self.device.type == 'cuda'
            states = [torch.get_rng_state(), *([torch.cuda.get_rng_state(self.device)] if cuda else [])]
            # (on this rank's device: NCCL broadcasts CUDA tensors only)
            shared = broadcast_from_rank_zero(
                [s.to(self.device) for s in states], where='the random state at the start of training'
            )
            torch.set_rng_state(shared[0].cpu())
            if cuda:
                torch.cuda.set_rng_state(shared[1].cpu(), self.device)
        return super().on_train_start()

    def on_train_end(self):
        if process_group()[1] > 1:
            self.average_batchnorm_statistics()
            self.check_ranks_agree()
        return super().on_train_end()

    def check_ranks_agree(self, atol: float = 1e-5) -> None:
        """Raise on every rank if any rank's weights or α differ from rank 0's (all ranks export the same)."""
        params = list(self.parameters())
        reference = broadcast_from_rank_zero(params, where='the weights and alpha at the end of training')
        gap = max((float((p.detach() - r).abs().max()) for p, r in zip(params, reference) if p.numel()), default=0.0)
        gap_tensor = torch.tensor([gap], dtype=torch.float64, device=self.device)
        if float(all_reduce_sum([gap_tensor], where="the ranks' agreement check")[0]) > atol:
            raise RuntimeError(
                f'After single-task search under DDP the ranks hold different weights or alpha (largest '
                f'difference from rank 0 on this rank: {gap:.3g}): a gradient was not averaged (a '
                "parameter outside DDP's reducer?) and their exports could differ. This is a bug, "
                'please report it.'
            )

    def average_batchnorm_statistics(self) -> None:
        """Under DDP: set every BatchNorm's running mean and variance to their mean over the ranks.

        Each rank normalises and recalibrates with its own batches (DDP's usual per-process BatchNorm); the mean of
        the recalibrated statistics is that of all ranks' remembered batches, and every rank validates and exports
        the same buffers. Called on every rank alike (never skipped on one), so it cannot leave a peer waiting.
        """
        stats = [
            t
            for m in self.training_module.modules()
            if isinstance(m, BATCH_NORMS) and m.track_running_stats
            for t in (m.running_mean, m.running_var)
            if t is not None
        ]
        if not stats:
            return
        world_size = process_group()[1]
        summed = all_reduce_sum(stats, where='the BatchNorm statistics')
        with torch.no_grad():
            for t, s in zip(stats, summed):
                t.copy_(s / world_size)

    def validation_step(self, batch, batch_idx):
        try:
            return self.training_module.validation_step(batch, batch_idx)
        except (IndexError, RuntimeError) as error:  # a validation label out of the head's range
            where = f'validation batch {batch_idx}'
            clear = label_error(error, where=where, num_classes=classifier_outputs(self.training_module.model))
            if clear is None:
                raise
            raise clear from error

    def on_validation_epoch_end(self):
        self.unpin_export()
        return super().on_validation_epoch_end()

    def remember_inputs(self, batch) -> None:
        """Keep the batch's input tensor (``batch`` or ``batch[0]``) for :meth:`recalibrate_batchnorm`."""
        x = _inputs_of(batch)
        if self.recent_inputs.maxlen and x is not None:
            self.recent_inputs.append(x.detach())

    def on_train_epoch_start(self):
        # Only this epoch's batches: a run resumed at an epoch boundary then recalibrates exactly as an
        # uninterrupted one.
        self.recent_inputs.clear()
        return super().on_train_epoch_start()

    def on_validation_epoch_start(self):
        out = super().on_validation_epoch_start()
        self.pin_budgeted_export()  # under a budget, validate (and recalibrate) the cell the run exports
        self.recalibrate_batchnorm()
        if process_group()[1] > 1:
            self.average_batchnorm_statistics()
        return out

    def recalibrate_batchnorm(self) -> None:
        """Recompute the derived architecture's BatchNorm statistics from the remembered batches."""
        recalibrate_batchnorm(self, self.recent_inputs)


def _inputs_of(batch) -> torch.Tensor | None:
    x = batch[0] if isinstance(batch, (list, tuple)) and batch else batch
    return x if isinstance(x, torch.Tensor) else None
