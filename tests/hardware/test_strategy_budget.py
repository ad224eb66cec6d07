"""``BaseStrategy(budget=...)`` through NasExperiment: what it exports fits, what cannot fit is refused early."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import TensorDataset

from nni_base import BaseStrategy, Budget, DartsTaskSpace
from nni_base.hardware import BudgetError, build_cost_table
from tests.helpers import classification, run

SIZE = (3, 8, 8)


def data():
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.rand(24, *SIZE, generator=g), torch.arange(24) % 3)


def space():
    return DartsTaskSpace(width=4, num_cells=3, num_classes=3)


@pytest.fixture(scope='module')
def table():
    return build_cost_table(space(), SIZE)


def test_a_budgeted_search_exports_only_architectures_within_the_budget(table):
    free = run(space(), classification(data(), num_classes=3, batch_size=8, max_epochs=1), BaseStrategy(seed=0))
    unbudgeted = table.cost_of(free.export_top_models(formatter='dict')[0])['macs']
    limit = 0.8 * unbudgeted
    strategy = BaseStrategy(seed=0, budget=Budget(macs=limit))
    exp = run(space(), classification(data(), num_classes=3, batch_size=8, max_epochs=1), strategy)
    exported = exp.export_top_models(top_k=3, formatter='dict')
    assert len(exported) == 3
    assert all(table.cost_of(sample)['macs'] <= limit for sample in exported)
    assert strategy.export_sample() == exported[0]


def test_an_impossible_budget_is_refused_before_the_first_step(table, monkeypatch):
    from nni_base.search import adaptation

    steps = []
    monkeypatch.setattr(adaptation, 'adaptation_step', lambda *a, **k: steps.append(1))
    strategy = BaseStrategy(seed=0, budget=Budget(params=10))
    with pytest.raises(Exception) as caught:
        run(space(), classification(data(), num_classes=3, batch_size=8, max_epochs=1), strategy)
    error = caught.value
    while not isinstance(error, BudgetError) and error.__cause__ is not None:
        error = error.__cause__
    assert isinstance(error, BudgetError), caught.value
    assert f'params <= 10 (the cheapest architecture needs {table.fixed["params"]:g})' in str(error)
    assert steps == []


def test_budget_takes_a_budget_object():
    with pytest.raises(TypeError, match=r'budget= takes a nni_base.hardware.Budget, got dict'):
        BaseStrategy(budget={'macs': 1e6})


def test_meta_training_refuses_a_budget_and_says_where_it_applies():
    from tests.helpers import digits_tasks, episodic_evaluator, tiny_space

    with pytest.raises(ValueError, match='meta-training does not take one yet'):
        run(tiny_space(), episodic_evaluator(digits_tasks()[0]), BaseStrategy(budget=Budget(macs=1e6)))
