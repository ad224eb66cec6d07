"""A meta-training process that ``tests/test_faults.py`` kills with SIGKILL at a chosen point.

    python tests/fault_worker.py OUT {none|step K|write N}

Meta-trains the tiny digits setup of the fault tests (3 epochs of 2 meta-steps) with ``last.ckpt`` written every
epoch under ``OUT/ckpt`` and the prior under ``OUT/prior.pt``. After each complete prior write the SHA-256 of the
file is appended to ``OUT/written.txt``. ``step K`` kills the process right after meta-step K; ``write N`` kills it
halfway through writing the N-th prior (half of the bytes are in the temporary file).
"""

from __future__ import annotations

import hashlib
import io
import os
import signal
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

EPOCHS, STEPS_PER_EPOCH = 3, 2


def kill_now() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def evaluator(train, checkpoints: Path, *callbacks):
    from pytorch_lightning.callbacks import ModelCheckpoint

    from nni_base import EpisodicClassification

    return EpisodicClassification(
        train,
        None,
        tasks_per_step=2,
        steps_per_epoch=STEPS_PER_EPOCH,
        max_epochs=EPOCHS,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[ModelCheckpoint(dirpath=checkpoints, save_last=True), *callbacks],
    )


def strategy_kwargs() -> dict:
    return {'inner_steps': 1, 'seed': 5}


def main(out: Path, mode: str, at: int) -> None:
    torch.set_num_threads(int(os.environ.get('OMP_NUM_THREADS') or 2))
    import pytorch_lightning as pl

    from nni_base import BaseStrategy
    from nni_base.prior import file as prior_module
    from tests.helpers import digits_tasks, run, tiny_space

    class KillAfterStep(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trainer.global_step == at:
                kill_now()

    writes = {'count': 0}
    real_save = torch.save

    def save(obj, f, *args, **kwargs):
        try:
            target = os.readlink(f'/proc/self/fd/{f.fileno()}')
        except (AttributeError, OSError, io.UnsupportedOperation):  # a path, or an in-memory buffer (Lightning's)
            target = str(f)
        if os.path.basename(target).startswith('.prior.pt.'):  # the temporary file of the prior's atomic write
            writes['count'] += 1
            if mode == 'write' and writes['count'] == at:
                buffer = io.BytesIO()
                real_save(obj, buffer, *args, **kwargs)
                f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
                f.flush()
                kill_now()
        return real_save(obj, f, *args, **kwargs)

    torch.save = save
    atomic = prior_module.write_torch

    def recorded(obj, path):
        written = atomic(obj, path)
        with open(out / 'written.txt', 'a') as log:
            log.write(hashlib.sha256(Path(path).read_bytes()).hexdigest() + '\n')
        return written

    prior_module.write_torch = recorded
    train, _ = digits_tasks(shots=2, queries=2)
    extra = [KillAfterStep()] if mode == 'step' else []
    run(
        tiny_space(),
        evaluator(train, out / 'ckpt', *extra),
        BaseStrategy(save_prior_to=out / 'prior.pt', **strategy_kwargs()),
    )
    print('finished', flush=True)


if __name__ == '__main__':
    main(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 0)
