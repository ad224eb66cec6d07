"""The rules of benchmarks.database_searches that its figures rest on: no search sees the database's test images,
and random search spends the time it is given."""

from __future__ import annotations

import types

import pytest
import torch

from nni_base.database.ground_truth import DatabaseSpec
from nni_base.tasks import Task

pytestmark = pytest.mark.e2e

SPEC = DatabaseSpec(families=('peaks',), train_tasks=1, test_tasks=1, architectures=2, seeds=(0,), steps=2)


@pytest.fixture(scope='module')
def bench():
    from benchmarks import database_searches

    return database_searches


def _task() -> Task:
    g = torch.Generator().manual_seed(0)
    x = torch.arange(20, dtype=torch.float32).view(20, 1, 1, 1).expand(20, 3, 16, 16).contiguous()
    return Task(x, torch.arange(20) % 5, torch.rand(10, 3, 16, 16, generator=g) + 100, torch.arange(10) % 5)


def _ids(images: torch.Tensor) -> set[int]:
    return {int(v) for v in images[:, 0, 0, 0]}


def test_search_split_cuts_the_support_set_only_and_disjointly(bench):
    task = _task()
    proxy, train, val = bench.search_split(task, seed=3)
    train_ids, val_ids = _ids(train.tensors[0]), _ids(val.tensors[0])
    assert (len(train_ids), len(val_ids)) == (16, 4) and not train_ids & val_ids
    assert train_ids | val_ids == set(range(20)), 'the split must cover the support set and nothing else'
    assert _ids(proxy.support_x) == train_ids and _ids(proxy.query_x) == val_ids
    assert bench.search_split(task, seed=3)[0].support_y.tolist() == proxy.support_y.tolist()


def test_random_search_spends_its_budget_and_returns_a_cell_of_the_space(bench, monkeypatch):
    proxy, _, _ = bench.search_split(_task(), seed=0)
    clock = iter(range(100))  # a clock that moves one second per reading
    monkeypatch.setattr(bench, 'time', types.SimpleNamespace(perf_counter=lambda: float(next(clock))))
    sample, tried = bench.random_search(SPEC, proxy, budget=0.0, seed=0)
    assert tried == 1, 'with no time left, random search still trains one cell'
    SPEC.space().freeze(sample)
    _, tried = bench.random_search(SPEC, proxy, budget=2.5, seed=0)
    assert tried == 3, 'cells are trained while the budget lasts (readings at 1 and 2 s), then it stops (3 s)'


def test_runs_of_one_seed_merge_per_task_and_summaries_keep_methods_every_row_has(bench):
    def row(task: int, methods: dict[str, float], tried=None) -> dict:
        scores = {m: {'accuracy': a, 'percentile': 100 * a, 'regret': 1 - a} for m, a in methods.items()}
        seconds = dict.fromkeys(methods, 1.0)
        return {
            'task': task,
            'family': 'peaks',
            'methods': scores,
            'seconds': seconds,
            'picks': {},
            'random_search_tried': tried,
        }

    first = {
        'seed': 0,
        'meta_seconds': {'all': 1.0},
        'rows': [row(5, {'base_prior': 0.5, 'random': 0.4}, 3), row(6, {'base_prior': 0.7, 'random': 0.4}, 3)],
    }
    second = {'seed': 0, 'meta_seconds': {'conditioned': 2.0}, 'rows': [row(5, {'zero_shot_meta': 0.6})]}
    (merged,) = bench.merge_runs([first, second])
    assert merged['meta_seconds'] == {'all': 1.0, 'conditioned': 2.0}
    by_task = {r['task']: r for r in merged['rows']}
    assert (
        set(by_task[5]['methods']) == {'base_prior', 'random', 'zero_shot_meta'}
        and by_task[5]['random_search_tried'] == 3
    )
    summary = bench.summarise([merged])
    assert summary['peaks']['methods'] == ['base_prior', 'random'], 'task 6 has no zero_shot_meta: left out'
    assert summary['peaks']['base_prior']['minus_random']['mean'] == pytest.approx(0.2)


def test_parameter_free_ops_counts_the_weightless_operations_of_both_cells(bench):
    sample = {
        'normal/op_2_0': 'max_pool_3x3',
        'normal/input_2_0': [0],
        'normal/op_2_1': 'sep_conv_3x3',
        'reduce/op_2_0': 'skip_connect',
        'reduce/input_2_0': [1],
        'reduce/op_2_1': 'avg_pool_3x3',
    }
    assert bench.parameter_free_ops(sample) == 3, 'the input choices are not operations; the convolution has weights'
