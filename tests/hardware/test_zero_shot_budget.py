"""Zero-shot generation under ``BaseStrategy(budget=...)``: from a database and from a conditioned prior, every
exported cell fits the budget, the ranking is the unbudgeted one's rule applied to the cells that fit, and an
impossible budget is refused before anything is ranked."""

from __future__ import annotations

import pytest
from torch.utils.data import TensorDataset

from nni_base import BaseStrategy, Budget, DartsTaskSpace, ZeroShotConfig
from nni_base.api import sample_tasks
from nni_base.database.build import build_database
from nni_base.database.ground_truth import DatabaseSpec, load_database
from nni_base.database.zero_shot_models import DatabaseZeroShot
from nni_base.hardware import BudgetError, SearchBudget, build_cost_table
from nni_base.search.top_k import darts_cell_shapes
from tests.database.test_conditioning import conditioned_prior  # noqa: F401  (the module-scoped fixture)
from tests.helpers import classification, digits_tasks, run, tiny_space

SPEC = DatabaseSpec(families=('peaks', 'texture'), train_tasks=1, test_tasks=1, architectures=6, seeds=(0,), steps=1)


def space():
    return DartsTaskSpace(width=4, num_cells=3, num_classes=5)


@pytest.fixture(scope='module')
def database(tmp_path_factory):
    path = tmp_path_factory.mktemp('budget_db') / 'db.json'
    db = build_database(SPEC, path, progress=False)
    task = db.task(1)
    return path, TensorDataset(task.query_x[:40], task.query_y[:40])


def _macs(table, samples):
    return [table.cost_of(s)['macs'] for s in samples]


def test_database_zero_shot_under_a_budget_exports_the_predictors_best_cells_that_fit(database):
    path, data = database
    table = build_cost_table(space(), tuple(data.tensors[0].shape[1:]))
    free = run(space(), classification(data), BaseStrategy(zero_shot=ZeroShotConfig(database=str(path), images=40)))
    unbudgeted = free.export_top_models(top_k=3, formatter='dict')
    limit = 0.9 * min(_macs(table, unbudgeted))  # none of the unbudgeted top-3 fits
    strategy = BaseStrategy(zero_shot=ZeroShotConfig(database=str(path), images=40), budget=Budget(macs=limit))
    exported = run(space(), classification(data), strategy).export_top_models(top_k=3, formatter='dict')
    assert len(exported) == 3 and max(_macs(table, exported)) <= limit
    assert strategy.export_sample() == exported[0]
    ranker = DatabaseZeroShot.fit(load_database(path), range(2))
    shapes = darts_cell_shapes(SPEC.num_nodes, SPEC.ops)
    fitting = SearchBudget(Budget(macs=limit), table, shapes)
    x, y = data.tensors
    assert exported == [s for s, _ in ranker.top_k(x, y, k=3, budget=fitting)]


def test_conditioned_zero_shot_under_a_budget_exports_only_cells_that_fit(conditioned_prior):  # noqa: F811
    path, _ = conditioned_prior
    task = sample_tasks(digits_tasks()[1], 1, seed=7)[0]
    data = TensorDataset(task.support_x, task.support_y)
    table = build_cost_table(tiny_space(), tuple(task.support_x.shape[1:]))
    free = run(tiny_space(), classification(data), BaseStrategy(prior=path, zero_shot=ZeroShotConfig(images=20)))
    limit = 0.9 * min(_macs(table, free.export_top_models(top_k=2, formatter='dict')))
    for candidates in ('alpha', 'random'):
        strategy = BaseStrategy(
            prior=path, zero_shot=ZeroShotConfig(images=20, candidates=candidates), budget=Budget(macs=limit)
        )
        exported = run(tiny_space(), classification(data), strategy).export_top_models(top_k=3, formatter='dict')
        assert exported and max(_macs(table, exported)) <= limit, candidates
        assert table.cost_of(strategy.export_sample())['macs'] <= limit  # the export: the best of a top-1 pool


def test_zero_shot_refuses_an_impossible_budget_naming_the_cheapest_cost(database):
    path, data = database
    strategy = BaseStrategy(zero_shot=ZeroShotConfig(database=str(path), images=40), budget=Budget(params=10))
    with pytest.raises(Exception) as caught:
        run(space(), classification(data), strategy)
    error = caught.value
    while not isinstance(error, BudgetError) and error.__cause__ is not None:
        error = error.__cause__
    assert isinstance(error, BudgetError) and 'params <= 10 (the cheapest architecture needs' in str(error)
