"""Single-task search and adaptation: BASE on one dataset through any Lightning evaluator.

With NNI's ``Classification`` (or any non-episodic evaluator) weights and α take a joint gradient
step per batch on a fresh Gumbel sample: started from a prior this is BASE's adaptation to a new
dataset, from scratch a plain Gumbel-softmax search. With ``freeze_architecture_after=N`` the
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
>>> strategy = BaseStrategy(prior='prior.pt', freeze_architecture_after=24)   # doctest: +SKIP
>>> NasExperiment(space, Classification(train_dataloaders=..., val_dataloaders=...), strategy).run()  # doctest: +SKIP
"""

from __future__ import annotations

from collections import deque

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..errors import MetaTrainingDiverged
from ..space.gumbel_cell import derived_architecture
from .base import BaseSearchModule
from .config import DEFAULT_ARC_LEARNING_RATE
from .distributed import all_reduce_sum, broadcast_from_rank_zero, process_group

__all__ = ['SingleTaskModule', 'DEFAULT_ARC_LEARNING_RATE', 'BATCH_NORMS', 'architecture_optimizer',
           'check_ddp_model']

#: The BatchNorm layers whose running statistics :meth:`SingleTaskModule.recalibrate_batchnorm` recomputes.
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def architecture_optimizer(alphas: list[torch.nn.Parameter], lr: float | None = None) -> torch.optim.Optimizer:
    """Alpha's optimizer in single-task search and adaptation: Adam at ``lr`` (None: the default step)."""
    return torch.optim.Adam(alphas, lr=DEFAULT_ARC_LEARNING_RATE if lr is None else lr, betas=(0.5, 0.999))


def check_ddp_model(model: nn.Module) -> None:
    """Refuse a ``DistributedDataParallel`` wrapper whose reducer cannot average single-task search's gradients.

    Only the sampled operation of each edge runs (the runner-up without a gradient), and after
    ``freeze_architecture_after`` only the derived cell, so most parameters get no gradient in a step and the
    set changes from step to step. DDP's reducer must be told (``find_unused_parameters=True``); without it the
    second step fails in the reducer ("Expected to have finished reduction in the prior iteration"), and
    ``static_graph=True`` assumes the same set every step.
    """
    fix = ("Pass strategy='ddp_find_unused_parameters_true' to the evaluator (e.g. Classification(..., devices=2, "
           "strategy='ddp_find_unused_parameters_true')) or DDPStrategy(find_unused_parameters=True, ...).")
    if getattr(model, 'static_graph', False):
        raise ValueError('Single-task search under DDP samples another sub-network every step, so DDP cannot run '
                         f'with static_graph=True. Drop static_graph. {fix}')
    if getattr(model, 'find_unused_parameters', True) is False:
        raise ValueError('Single-task search under DDP trains only the sampled operation of each edge, so most '
                         "parameters get no gradient in a step and DDP's reducer must know it (find_unused_parameters"
                         f'=True). {fix}')


class SingleTaskModule(BaseSearchModule):
    """Searches (or adapts a prior) on the evaluator's one dataset."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # inputs of this epoch's latest training batches, for the BatchNorm recalibration before validation
        self.recent_inputs: deque[torch.Tensor] = deque(maxlen=self.config.bn_recalibration_batches)

    def configure_architecture_optimizers(self):
        if not self.arch_parameters():
            raise ValueError('The model space has no architecture logits; BaseStrategy found nothing to optimise.')
        return architecture_optimizer(self.arch_parameters(), self.config.arc_learning_rate)

    def architecture_frozen(self, step: int) -> bool:
        """Whether step ``step`` trains the derived architecture only (``freeze_architecture_after``)."""
        after = self.config.freeze_architecture_after
        return after is not None and step >= after

    def training_step(self, batch, batch_idx):
        arch_optim = self.architecture_optimizers()
        frozen = self.architecture_frozen(self.step_position()[0])
        arch_optim.zero_grad()  # type: ignore[union-attr]
        if frozen:
            # The architecture is chosen: train the weights of the derived cells only, as the user gets them.
            with derived_architecture(self.architecture_modules()):
                out = self.training_module.training_step(batch, batch_idx)
        else:
            self.resample()
            out = self.training_module.training_step(batch, batch_idx)
        loss = out['loss'] if isinstance(out, dict) else out
        self.remember_inputs(batch)
        if not bool(torch.isfinite(loss)):
            raise MetaTrainingDiverged(f'Non-finite training loss at step {self.trainer.global_step}; lower the '
                                       'learning rates.')
        self.advance_optimization(loss, batch_idx)  # backward + weight step; alpha grads come with it
        if not frozen and not self.config.freeze_alpha:
            arch_optim.step()  # type: ignore[union-attr]
        self.advance_lr_schedulers(batch_idx)
        self.log('architecture_frozen', float(frozen), on_step=True, on_epoch=False)
        self.log('temperature', self.temperature, on_step=True, on_epoch=False)
        self.log_architecture()
        return out

    # ---- DDP (see the module docstring) ---------------------------------------------------------------
    # Gradients are averaged by DDP's reducer in manual_backward, as in NNI's own one-shot strategies, rather than
    # by an explicit all-reduce: it already covers every parameter (α included), skips the ones no rank used
    # (their .grad stays None, so Adam leaves them alone as in one process) and overlaps with the backward pass.
    # All it needs is find_unused_parameters=True (check_ddp_model).
    def on_fit_start(self):
        world_size = process_group()[1]
        if world_size > 1:
            model = self.trainer.strategy.model
            if not isinstance(model, DistributedDataParallel):
                raise ValueError(f'Single-task search on {world_size} processes runs under Lightning DDP only, got '
                                 f"{type(self.trainer.strategy).__name__}: pass strategy='ddp_find_unused_parameters_"
                                 "true' to the evaluator.")
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
            shared = broadcast_from_rank_zero([s.to(self.device) for s in states],
                                              where='the random state at the start of training')
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
            raise RuntimeError(f'After single-task search under DDP the ranks hold different weights or alpha (largest '
                               f'difference from rank 0 on this rank: {gap:.3g}): a gradient was not averaged (a '
                               "parameter outside DDP's reducer?) and their exports could differ. This is a bug, "
                               'please report it.')

    def average_batchnorm_statistics(self) -> None:
        """Under DDP: set every BatchNorm's running mean and variance to their mean over the ranks.

        Each rank normalises and recalibrates with its own batches (DDP's usual per-process BatchNorm); the mean of
        the recalibrated statistics is that of all ranks' remembered batches, and every rank validates and exports
        the same buffers. Called on every rank alike (never skipped on one), so it cannot leave a peer waiting.
        """
        stats = [t for m in self.training_module.modules() if isinstance(m, BATCH_NORMS) and m.track_running_stats
                 for t in (m.running_mean, m.running_var) if t is not None]
        if not stats:
            return
        world_size = process_group()[1]
        summed = all_reduce_sum(stats, where='the BatchNorm statistics')
        with torch.no_grad():
            for t, s in zip(stats, summed):
                t.copy_(s / world_size)

    def validation_step(self, batch, batch_idx):
        return self.training_module.validation_step(batch, batch_idx)

    def remember_inputs(self, batch) -> None:
        """Keep the batch's input tensor (``batch`` or ``batch[0]``) for :meth:`recalibrate_batchnorm`."""
        x = batch[0] if isinstance(batch, (list, tuple)) and batch else batch
        if self.recent_inputs.maxlen and isinstance(x, torch.Tensor):
            self.recent_inputs.append(x.detach())

    def on_train_epoch_start(self):
        # Only this epoch's batches: a run resumed at an epoch boundary then recalibrates exactly as an
        # uninterrupted one.
        self.recent_inputs.clear()
        return super().on_train_epoch_start()

    def on_validation_epoch_start(self):
        out = super().on_validation_epoch_start()
        self.recalibrate_batchnorm()
        if process_group()[1] > 1:
            self.average_batchnorm_statistics()
        return out

    @torch.no_grad()
    def recalibrate_batchnorm(self) -> None:
        """Recompute the running BatchNorm statistics of the derived architecture from the remembered batches.

        Each BatchNorm layer the derived network runs gets the exact mean of those batches' statistics
        (momentum ``None``); layers it does not run (operations the cell did not pick) keep theirs.
        """
        if not self.recent_inputs:
            return
        norms = [m for m in self.training_module.modules() if isinstance(m, BATCH_NORMS)
                 and m.track_running_stats]
        saved = [(m.momentum, {k: v.clone() for k, v in m.state_dict().items()}) for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None
        was_training = self.training_module.training
        self.training_module.train()
        with torch.random.fork_rng(devices=[]), derived_architecture(self.architecture_modules()):
            for x in self.recent_inputs:
                self.training_module(x)
        self.training_module.train(was_training)
        for m, (momentum, state) in zip(norms, saved):
            m.momentum = momentum
            if int(m.num_batches_tracked) == 0:  # not part of the derived network
                m.load_state_dict(state)
