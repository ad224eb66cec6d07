"""Task-parallel meta-training: each process adapts its share of a meta-step's tasks, one all-reduce joins them.

Sits between the evaluator's task batches and the outer step of :mod:`.reptile` / :mod:`.maml`. Under
Lightning's DDP every rank reads the *same* meta-step (the evaluator turns off Lightning's distributed
sampler, so all ranks draw the same seeded sequence) and keeps tasks ``r, r + W, r + 2W, ...``
(:func:`shard_tasks`). After adapting them, a rank holds the *sum* over its tasks of what the outer step
needs (adapted tensors for Reptile, meta-gradients for MAML) plus its metric sums; :func:`all_reduce_sum`
adds these across ranks in one flat buffer, so every rank divides by the same total task count and takes
the same outer step: weights and alpha stay identical without any broadcast.

Lightning wraps the module in ``DistributedDataParallel``, whose gradient hooks only fire on
``.backward()``; BASE's modules compute every gradient with ``torch.autograd.grad`` under DDP, so
DDP's reducer never sees one and the averaging here is the only one (see tests/search/test_ddp.py).

Example
-------
>>> shard_tasks(['t0', 't1', 't2', 't3', 't4'], rank=1, world_size=2)
['t1', 't3']
>>> process_group()
(0, 1)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from ..errors import DistributedMetaStepError

__all__ = [
    'process_group',
    'shard_tasks',
    'all_reduce_sum',
    'broadcast_from_rank_zero',
    'collective_failure',
    'explain_collective_error',
]

T = TypeVar('T')


def process_group() -> tuple[int, int]:
    """``(rank, world_size)`` of the default process group; ``(0, 1)`` outside a distributed run."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def shard_tasks(tasks: Sequence[T], rank: int, world_size: int) -> list[T]:
    """This rank's tasks of a meta-step: ``tasks[rank::world_size]`` (every rank sees the same list)."""
    if len(tasks) < world_size:
        raise ValueError(
            f'A meta-step has {len(tasks)} tasks but there are {world_size} processes: every process '
            f'needs at least one task. Set tasks_per_step >= {world_size} (ideally a multiple of it).'
        )
    return list(tasks[rank::world_size])


@torch.no_grad()
def all_reduce_sum(tensors: Sequence[torch.Tensor], *, where: str) -> list[torch.Tensor]:
    """Sum each tensor over all ranks (one flat all-reduce); returns new tensors, the inputs are untouched.

    Raises :class:`~nni_base.errors.DistributedMetaStepError` naming the rank and the meta-step when the
    collective fails (a peer process died, or the process group's ``timeout`` passed), instead of letting a
    backend error or a hang end the run.
    """
    return _collective(tensors, lambda flat: dist.all_reduce(flat, op=dist.ReduceOp.SUM), f'the all-reduce of {where}')


@torch.no_grad()
def broadcast_from_rank_zero(tensors: Sequence[torch.Tensor], *, where: str) -> list[torch.Tensor]:
    """Rank 0's values of ``tensors`` on every rank (one flat broadcast); returns new tensors, inputs untouched.

    Fails like :func:`all_reduce_sum` (:class:`~nni_base.errors.DistributedMetaStepError`) when the collective does.
    """
    return _collective(tensors, lambda flat: dist.broadcast(flat, src=0), f'the broadcast of {where}')


def _collective(tensors: Sequence[torch.Tensor], op: Callable[[torch.Tensor], object], what: str) -> list[torch.Tensor]:
    """Run ``op`` in place on the tensors flattened into one buffer (not in one process), then split it back."""
    rank, world_size = process_group()
    dtype = torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32
    # one buffer on the accelerator when any tensor is there (NCCL reduces device tensors; metric sums start on the
    # host), else on the host
    device = next((t.device for t in tensors if t.device.type != 'cpu'), torch.device('cpu'))
    flat = torch.cat([t.detach().reshape(-1).to(device=device, dtype=dtype) for t in tensors])
    if world_size > 1:
        try:
            op(flat)
        except Exception as e:  # gloo/NCCL raise RuntimeError or DistBackendError subclasses
            raise collective_failure(e, rank, world_size, what) from e
    out, offset = [], 0
    for t in tensors:
        out.append(flat[offset : offset + t.numel()].view(t.shape).to(device=t.device, dtype=t.dtype))
        offset += t.numel()
    return out


_BACKEND_MARKERS = ('gloo', 'nccl', 'connection closed', 'connection reset', 'timed out', 'timeout')


def collective_failure(error: BaseException, rank: int, world_size: int, what: str) -> DistributedMetaStepError:
    """The error a user sees when a collective (ours, DDP's buffer broadcast, Lightning's barrier) fails."""
    return DistributedMetaStepError(
        f'Rank {rank} of {world_size}: {what} failed ({type(error).__name__}: {error}). Another process most likely '
        "died (see its log) or did not reach this point within the process group's timeout (Lightning: "
        'DDPStrategy(timeout=...)); the shared prior was not updated. Resume from the last checkpoint.'
    )


def is_collective_error(error: BaseException) -> bool:
    """Whether ``error`` is a failed cross-process collective (a backend error naming a lost peer or a timeout)."""
    if isinstance(error, DistributedMetaStepError):
        return False  # already explained
    if isinstance(error, getattr(dist, 'DistError', ())):
        return True
    return isinstance(error, RuntimeError) and any(m in str(error).lower() for m in _BACKEND_MARKERS)


def explain_collective_error(error: BaseException, trainer: Any) -> DistributedMetaStepError | None:
    """Under DDP a dead peer surfaces in whichever collective comes first (DDP's buffer broadcast, Lightning's
    barrier, the meta-step's all-reduce): the same explanation for each, or None when ``error`` is not that."""
    if trainer is None or trainer.world_size < 2 or not is_collective_error(error):
        return None
    return collective_failure(
        error, trainer.global_rank, trainer.world_size, f'a collective at meta-step {trainer.global_step}'
    )
