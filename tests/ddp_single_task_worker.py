"""One process of tests/search/test_ddp_single_task.py: single-task search through NNI's ``Classification``.

Launched as torchrun launches a script (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``;
see tests/ddp_worker.py); without them it is the one-process reference. Every run sees the same global batches
of ``GLOBAL_BATCH`` images. Under DDP Lightning always shuffles the training data (its ``DistributedSampler``,
seeded with the run's seed, even for ``shuffle=False``) and deals each rank every W-th image of that permutation,
so the W local batches of a step together are ``GLOBAL_BATCH`` consecutive images of it; the one-process run
reads the same permutation in order (a ``DistributedSampler`` over one replica). Writes ``OUT.r{rank}.pt``:
weights and buffers, alpha, NNI's exported sample.

Settings:

- ``exact``: every BatchNorm of the supernet is removed (and ``pool_batchnorm=False``). With BatchNorm a rank
  normalises with the statistics of its own half batch, a single process with those of the whole batch, so
  the two runs differ by more than rounding; without it the W-process run must equal the one-process run.
- ``batchnorm``: the default space and options (BatchNorm, pooled outputs normalised, recalibration before
  each validation): the ranks must end identical (no comparison with one process).
- ``plain_ddp``: ``batchnorm`` under DDP without ``find_unused_parameters``, which the search must refuse.

Usage: ``python tests/ddp_single_task_worker.py OUT SETTING``.
"""

from __future__ import annotations

import os
import sys
from datetime import timedelta

import nni
import pytorch_lightning as pl
import torch
from helpers import run, tiny_space
from nni.nas.evaluator.pytorch import Classification
from pytorch_lightning.strategies import DDPStrategy
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from nni_base import AdaptationConfig, BaseStrategy, SupernetConfig
from nni_base.data import digits_splits

TIMEOUT_S = 20  # the process group's timeout: a rank waiting for a peer that never comes gives up after this
WAYS = 5
GLOBAL_BATCH = 16
STEPS = 4
SEED = 0  # BaseStrategy's seed, which Lightning's DistributedSampler takes too (PL_GLOBAL_SEED)


class NoBatchNorm(pl.Callback):
    """Replaces every BatchNorm of the supernet by the identity (before DDP wraps it and the optimizers are made)."""

    def setup(self, trainer, pl_module, stage):
        def strip(module: nn.Module) -> None:
            for name, child in module.named_children():
                if isinstance(child, nn.modules.batchnorm._BatchNorm):
                    setattr(module, name, nn.Identity())
                else:
                    strip(child)

        strip(pl_module.training_module.model)


class Reseed(pl.Callback):
    """Seed 1 (one process, rank 0) or 1 + rank at the start of training; keeps the initial weights.

    Lightning's DDP re-seeds every process when it joins the process group, a single process is not re-seeded:
    without the common seed the two runs would draw different (equally valid) Gumbel samples. The other ranks'
    streams are made to differ: the search must give every rank rank 0's stream (``SingleTaskModule.
    on_train_start``, which Lightning calls after this hook), else rank 1 would sample other sub-networks.
    """

    initial: dict[str, torch.Tensor] = {}

    def on_train_start(self, trainer, pl_module):
        torch.manual_seed(1 + trainer.global_rank)
        self.initial = {k: v.detach().clone() for k, v in pl_module.training_module.model.state_dict().items()}


def datasets() -> tuple[TensorDataset, TensorDataset]:
    data = digits_splits()['train'].subset_classes(range(WAYS))
    order = torch.randperm(len(data.labels), generator=torch.Generator().manual_seed(0))
    train, val = order[: GLOBAL_BATCH * STEPS], order[GLOBAL_BATCH * STEPS : GLOBAL_BATCH * STEPS + 40]
    return (TensorDataset(data.images[train], data.labels[train]), TensorDataset(data.images[val], data.labels[val]))


def main(out: str, setting: str) -> None:
    torch.set_num_threads(1)
    world_size = int(os.environ.get('WORLD_SIZE', '1'))
    distributed: dict = dict(accelerator='cpu', devices=world_size)
    if world_size > 1:
        distributed['strategy'] = DDPStrategy(
            process_group_backend='gloo',
            timeout=timedelta(seconds=TIMEOUT_S),
            find_unused_parameters=setting != 'plain_ddp',
        )
    exact = setting == 'exact'
    train, val = datasets()
    # One process: Lightning's permutation, read in order. W processes: Lightning puts in its own sampler.
    sampler = DistributedSampler(train, num_replicas=1, rank=0, shuffle=True, seed=SEED) if world_size == 1 else None
    reseed = Reseed()
    # SGD for the weights: its steps scale with the gradient, so a sum over ranks instead of a mean would show
    # (Adam's would not); alpha's optimizer is BaseStrategy's Adam.
    evaluator = Classification(
        num_classes=WAYS,
        optimizer=torch.optim.SGD,
        learning_rate=0.1,
        train_dataloaders=nni.trace(DataLoader)(train, batch_size=GLOBAL_BATCH // world_size, sampler=sampler),
        val_dataloaders=nni.trace(DataLoader)(val, batch_size=10),
        max_epochs=1,
        logger=False,
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        callbacks=[reseed, *([NoBatchNorm()] if exact else [])],
        **distributed,
    )
    # freeze_architecture_after: steps 0-1 search (sampled sub-networks), steps 2-3 train the derived cell.
    strategy = BaseStrategy(
        seed=SEED,
        adaptation=AdaptationConfig(freeze_architecture_after=2, bn_recalibration_batches=2),
        supernet=SupernetConfig(pool_batchnorm=not exact),
    )
    exp = run(tiny_space(WAYS), evaluator, strategy)
    module = strategy.oneshot_module
    result = {
        'world_size': module.trainer.world_size,
        'steps': module.trainer.global_step,
        'initial': reseed.initial,
        'state_dict': {k: v.detach().clone() for k, v in module.training_module.model.state_dict().items()},
        'alpha': {str(label): a.detach().clone() for label, a in module.alphas().items()},
        'export': {str(k): v for k, v in exp.export_top_models(formatter='dict')[0].items()},  # NNI labels: str
    }
    torch.save(result, f'{out}.r{module.trainer.global_rank}.pt')


if __name__ == '__main__':
    main(sys.argv[1], sys.argv[2])
