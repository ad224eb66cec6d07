"""One process of the DDP tests (tests/search/test_ddp.py): a tiny Reptile/MAML meta-training run writing its prior.

Launched as torchrun launches a script: ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and
``MASTER_PORT`` in the environment, one process per rank, so Lightning's ``strategy='ddp'`` joins them
instead of starting processes itself. Without those variables it is the one-process reference run.

Usage: ``python tests/ddp_worker.py PRIOR_OUT ALGORITHM [KILL_RANK_AT_STEP]``.
"""

from __future__ import annotations

import os
import sys
from datetime import timedelta

import pytorch_lightning as pl
import torch
from helpers import digits_tasks, run, tiny_space
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.strategies import DDPStrategy

from nni_base import BaseStrategy, EpisodicClassification, SupernetConfig

# The process group's timeout: a rank waiting for a live but slower peer gives up after this (a killed peer is noticed
# at once: its sockets close). Two CI runs saw rank 1 exit 1 before the meta-step where it is killed; an earlier
# in-process trial test had left NNI_BASE_THREADS=2 in the session's environment, so five processes ran 2 threads
# each on 2 cores (here that made the runs 4x slower, 41 -> 176 s, without the failure). Both fixed; margin kept.
TIMEOUT_S = 120


class DieAt(pl.Callback):
    """Kills rank 1 at the start of a meta-step, as an OOM kill or a lost node would."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_rank == 1 and batch_idx == self.step:
            os._exit(3)


def main(out: str, algorithm: str, kill_at: int | None = None) -> None:
    torch.set_num_threads(1)
    world_size = int(os.environ.get('WORLD_SIZE', '1'))
    distributed = dict(accelerator='cpu', devices=world_size)
    if world_size > 1:
        distributed['strategy'] = DDPStrategy(process_group_backend='gloo', timeout=timedelta(seconds=TIMEOUT_S))
    train, _ = digits_tasks()
    callbacks: list[pl.Callback] = [DieAt(kill_at)] if kill_at is not None else []
    # Resume checks: DDP_WORKER_EPOCHS, DDP_WORKER_CKPT_DIR (writes last.ckpt), DDP_WORKER_RESUME (a checkpoint).
    ckpt_dir = os.environ.get('DDP_WORKER_CKPT_DIR')
    if ckpt_dir:
        callbacks.append(ModelCheckpoint(dirpath=ckpt_dir, save_last=True))
    evaluator = EpisodicClassification(
        train,
        None,
        tasks_per_step=4,
        steps_per_epoch=2,
        seed=0,
        max_epochs=int(os.environ.get('DDP_WORKER_EPOCHS', '1')),
        logger=False,
        enable_progress_bar=False,
        enable_checkpointing=bool(ckpt_dir),
        enable_model_summary=False,
        callbacks=callbacks,
        **distributed,
    )
    # relaxation='softmax' makes the inner loop deterministic: with Gumbel noise a 2-process run draws other
    # (equally valid) samples than the 1-process run, so only the softmax relaxation can be compared exactly.
    relaxation = os.environ.get('DDP_WORKER_RELAXATION', 'softmax')
    strategy = BaseStrategy(
        meta_algorithm=algorithm,
        supernet=SupernetConfig(relaxation=relaxation),
        inner_steps=2,
        save_prior_to=out,
        seed=0,
        resume_from=os.environ.get('DDP_WORKER_RESUME'),
        **({'first_order': True} if algorithm == 'maml' else {}),
    )
    run(tiny_space(), evaluator, strategy)


if __name__ == '__main__':
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else None)
