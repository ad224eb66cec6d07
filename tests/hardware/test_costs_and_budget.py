"""Costs per choice and budgets: the rules a budgeted search relies on (issue #38's CI tests)."""

from __future__ import annotations

import json
import random

import pytest
import torch

from nni_base import DartsTaskSpace
from nni_base.hardware import (
    Budget,
    BudgetError,
    BudgetPenalty,
    CostTable,
    CostTableError,
    build_cost_table,
    load_cost_table,
    top_k_under_budget,
)
from nni_base.hardware.export import BudgetedComponents
from nni_base.hardware.penalty import cost_tensors, expected_cost
from nni_base.search.top_k import CellShape, darts_cell_shapes, random_architecture
from nni_base.space.macs import count_macs, count_parameters

SIZE = (3, 8, 8)


@pytest.fixture(scope='module')
def space():
    return DartsTaskSpace(width=4, num_cells=3, num_classes=3)


@pytest.fixture(scope='module')
def table(space):
    return build_cost_table(space, SIZE)


def random_alphas(seed: int, parameterization: str = 'darts') -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    shape = (14, 8) if parameterization == 'darts' else (8, 35)
    return {label: 2 * torch.randn(*shape, generator=g) for label in ('normal', 'reduce')}


@pytest.mark.parametrize('seed', range(6))
def test_the_table_sums_to_the_frozen_networks_own_counts(space, table, seed):
    sample = random_architecture(darts_cell_shapes(), random.Random(seed))
    net = space.freeze(sample)
    costs = table.cost_of(sample)
    assert costs['params'] == count_parameters(net)
    assert costs['macs'] == count_macs(net, SIZE)


def test_expected_cost_is_the_enumerated_mean_on_a_one_node_slot_cell():
    # one node, one slot, inputs 0/1, two ops: the architectures are the 4 (input, op) pairs
    shape = CellShape('c', ('a', 'b'), num_nodes=1, num_predecessors=2, num_inputs=1, parameterization='slot')
    slots = {'c': {'macs': [[[1.0, 5.0], [2.0, 9.0]]]}}
    table = CostTable(('macs',), {'macs': 3.0}, slots, {'c': ('a', 'b')}, {'c': 2}, (3, 8, 8))
    alpha = torch.tensor([[0.3, -1.0, 2.0, 0.1]])
    costs = cost_tensors(table, shape, 'macs')
    probs = torch.softmax(alpha, -1)[0]
    enumerated = sum(float(p) * c for p, c in zip(probs, (1.0, 5.0, 2.0, 9.0)))
    assert float(expected_cost(alpha, costs, shape)) == pytest.approx(enumerated)


def test_expected_cost_of_a_peaked_darts_alpha_is_the_exports_cost(table):
    # two edges and one op per node dominate: the smooth keep equals the DARTS rule's
    shapes = darts_cell_shapes()
    sample = random_architecture(shapes, random.Random(3))
    alphas = {}
    for label in ('normal', 'reduce'):
        alpha = torch.full((14, 8), -30.0)
        for node in range(2, 6):
            for k in range(2):
                pred = sample[f'{label}/input_{node}_{k}'][0]
                op = shapes[0].op_names.index(sample[f'{label}/op_{node}_{k}'])
                alpha[sum(range(2, node)) + pred, op] = 30.0
        alphas[label] = alpha
    expected = BudgetPenalty(table, shapes, Budget(macs=1e9)).expected(alphas)['macs']
    assert float(expected) == pytest.approx(table.cost_of(sample)['macs'], rel=1e-4)


def test_the_budget_terms_gradient_moves_alpha_toward_cheaper_ops(table):
    shapes = darts_cell_shapes()
    alphas = {label: torch.zeros(14, 8, requires_grad=True) for label in ('normal', 'reduce')}
    penalty = BudgetPenalty(table, shapes, Budget(macs=table.fixed['macs'] + 1.0))
    penalty.multipliers['macs'] = 1.0
    before = float(penalty.expected(alphas)['macs'].detach())
    penalty.add_gradient(alphas)
    with torch.no_grad():
        for alpha in alphas.values():
            alpha -= 0.5 * alpha.grad / alpha.grad.abs().max()
    assert float(penalty.expected(alphas)['macs'].detach()) < before
    ops = shapes[0].op_names
    grad = alphas['normal'].grad[0]  # edge 0 -> 2: a convolution's logit is pushed down, a pool's up
    assert grad[ops.index('sep_conv_5x5')] > 0 > grad[ops.index('max_pool_3x3')]
    assert penalty.multipliers['macs'] > 1.0  # over the limit: the multiplier grows


@pytest.mark.parametrize('parameterization', ['darts', 'slot'])
@pytest.mark.parametrize('seed', range(8))
def test_export_and_top_k_under_a_budget_never_exceed_it(table, parameterization, seed):
    shapes = [
        CellShape(s.label, s.op_names, s.num_nodes, s.num_predecessors, s.num_inputs, parameterization)
        for s in darts_cell_shapes()
    ]
    alphas = random_alphas(seed, parameterization)
    parts = BudgetedComponents(shapes, alphas, table)
    cheapest, dearest = parts.cheapest()['macs'], parts.cost(parts.best_under(Budget(macs=1e12)))['macs']
    limit = cheapest + random.Random(seed).random() * (dearest - cheapest)
    ranked = top_k_under_budget(shapes, alphas, 4, table, Budget(macs=limit))
    assert ranked
    assert all(table.cost_of(sample)['macs'] <= limit for sample, _ in ranked)
    scores = [score for _, score in ranked[1:]]
    assert scores == sorted(scores, reverse=True)
    assert top_k_under_budget(shapes, alphas, 1, table, Budget(macs=limit))[0] == ranked[0]  # the export leads
    assert len({json.dumps(sample, sort_keys=True) for sample, _ in ranked}) == len(ranked)


def test_a_budget_the_space_already_meets_exports_what_no_budget_would(table):
    from nni_base.search.top_k import top_k_architectures

    alphas = random_alphas(0)
    free = top_k_architectures(darts_cell_shapes(), alphas, 1)[0][0]
    assert top_k_under_budget(darts_cell_shapes(), alphas, 1, table, Budget(macs=1e12))[0][0] == free


def test_an_impossible_budget_is_refused_naming_the_cheapest_cost(table):
    cheapest = BudgetedComponents(darts_cell_shapes(), random_alphas(0), table).cheapest()['macs']
    with pytest.raises(BudgetError, match=f'cheapest architecture needs {cheapest:g}'):
        top_k_under_budget(darts_cell_shapes(), random_alphas(0), 1, table, Budget(macs=cheapest / 2))


@pytest.mark.parametrize(
    'kwargs, message',
    [({}, 'limits nothing'), ({'macs': -1}, 'positive number'), ({'params': float('nan')}, 'positive number')],
)
def test_a_malformed_budget_is_refused(kwargs, message):
    with pytest.raises(BudgetError, match=message):
        Budget(**kwargs)


def test_a_latency_limit_without_latency_costs_is_refused(table):
    with pytest.raises(BudgetError, match='latency'):
        top_k_under_budget(darts_cell_shapes(), random_alphas(0), 1, table, Budget(latency_ms=5.0))


def test_a_saved_table_loads_back_and_a_damaged_one_is_refused(table, tmp_path):
    path = tmp_path / 'latency.json'
    path.write_text(json.dumps(table.to_dict()))
    assert load_cost_table(path).cost_of(random_architecture(darts_cell_shapes(), random.Random(0))) == table.cost_of(
        random_architecture(darts_cell_shapes(), random.Random(0))
    )
    damaged = table.to_dict()
    damaged['slots']['normal']['macs'][0][0][0] = float('nan')
    path.write_text(json.dumps(damaged))
    with pytest.raises(CostTableError, match='normal node 2 input 0 .* not a finite number'):
        load_cost_table(path)
    path.write_text(json.dumps({**table.to_dict(), 'version': 99}))
    with pytest.raises(CostTableError, match='version 99'):
        load_cost_table(path)
    path.write_text('{"not": "a table"')
    with pytest.raises(CostTableError, match='not JSON'):
        load_cost_table(path)
    with pytest.raises(CostTableError, match='not a file'):
        load_cost_table(tmp_path)
