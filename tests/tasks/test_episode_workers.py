"""Meta-training loaders with worker processes yield the tasks the main process would."""

import pytest
import torch

from nni_base import EpisodicClassification, TaskDistribution
from nni_base.data import digits_splits


def batches(evaluator: EpisodicClassification, n: int) -> list:
    loader = evaluator.train_dataloaders
    out = []
    for i, batch in enumerate(loader):
        if i == n:
            break
        out.append(batch)
    return out


def test_workers_change_nothing_but_the_speed():
    splits = digits_splits()
    tasks = TaskDistribution(splits['train'], ways=5, shots=2, queries=2)
    plain = EpisodicClassification(tasks, tasks_per_step=2, steps_per_epoch=3, seed=4, logger=False)
    workers = EpisodicClassification(tasks, tasks_per_step=2, steps_per_epoch=3, seed=4, num_workers=2, logger=False)
    for a, b in zip(batches(plain, 3), batches(workers, 3), strict=True):
        for ta, tb in zip(a, b, strict=True):
            assert torch.equal(ta.support_x, tb.support_x) and torch.equal(ta.query_y, tb.query_y)


def test_a_bad_worker_count_is_refused_at_the_evaluator():
    splits = digits_splits()
    tasks = TaskDistribution(splits['train'], ways=5, shots=2, queries=2)
    with pytest.raises(ValueError, match='num_workers must be an int >= 0'):
        EpisodicClassification(tasks, num_workers=-1, logger=False)
