"""Top-k export: k distinct valid NNI samples in rank order, through the strategy and NasExperiment."""

from __future__ import annotations

import itertools
import json

import pytest
import torch
import torch.nn.functional as F

from nni_base import BaseStrategy, SupernetConfig
from nni_base.api import build_supernet
from nni_base.prior import space_signature
from nni_base.search.top_k import (
    CellShape,
    architecture_log_prob,
    cell_shapes,
    shapes_from_signature,
    top_k_architectures,
)
from tests.helpers import digits_tasks, episodic_evaluator, run, tiny_space


def _random_supernet(parameterization: str = 'darts', seed: int = 0):
    net = build_supernet(tiny_space(), BaseStrategy(supernet=SupernetConfig(parameterization=parameterization)))
    torch.manual_seed(seed)
    with torch.no_grad():
        for alpha in net.arch_parameters():
            alpha.copy_(
                torch.randn_like(alpha) * 2 if parameterization == 'darts' else alpha + torch.randn_like(alpha) * 2
            )
    return net


@pytest.mark.parametrize('parameterization', ['darts', 'slot'])
def test_top_k_is_distinct_ranked_and_starts_with_the_export(parameterization):
    net = _random_supernet(parameterization)
    ranked = top_k_architectures(cell_shapes(net.cells()), net.alphas(), 12)
    samples = [s for s, _ in ranked]
    scores = [score for _, score in ranked]
    assert len(samples) == 12
    assert len({json.dumps(s, sort_keys=True) for s in samples}) == 12
    assert all(a >= b - 1e-9 for a, b in zip(scores, scores[1:]))
    assert samples[0] == net.export()
    shapes = cell_shapes(net.cells())  # any sample's log-probability, scored as the enumeration scores it
    assert [architecture_log_prob(shapes, net.alphas(), s) for s in samples] == pytest.approx(scores, abs=1e-5)
    space = tiny_space()
    for sample in samples[:3]:
        model = space.freeze(sample)  # a valid NNI sample of the space
        assert model(torch.randn(2, 3, 16, 16)).shape == (2, 5)


def test_top_k_matches_brute_force_on_a_small_cell():
    """Every architecture of a 2-node cell enumerated and scored: the best-first search returns the same top 20."""
    ops = ('a', 'b', 'c')
    shape = CellShape('normal', ops, num_nodes=2, num_predecessors=2, num_inputs=2)
    torch.manual_seed(3)
    alpha = torch.randn(5, len(ops) + 1)  # edges 2<-0, 2<-1, 3<-0, 3<-1, 3<-2
    logp = F.log_softmax(alpha, -1)
    scores = []
    for ops2 in itertools.product(range(3), repeat=2):
        for pair in itertools.combinations(range(3), 2):
            for ops3 in itertools.product(range(3), repeat=2):
                edges3 = [2 + p for p in pair]
                s = logp[0, ops2[0]] + logp[1, ops2[1]] + logp[edges3[0], ops3[0]] + logp[edges3[1], ops3[1]]
                scores.append(float(s))
    expected = sorted(scores, reverse=True)[:20]
    got = [score for _, score in top_k_architectures([shape], {'normal': alpha}, 20)]
    assert got == pytest.approx(expected, abs=1e-5)
    assert len(top_k_architectures([shape], {'normal': alpha}, 10_000)) == len(scores)  # the whole space, no more


def test_shapes_from_a_prior_signature_match_the_supernet():
    space = tiny_space()
    net = build_supernet(space, BaseStrategy())
    assert shapes_from_signature(space_signature(space)) == cell_shapes(net.cells())


@pytest.mark.parametrize('bad', [0, -1, 1.5, True, None])
def test_bad_top_k_is_refused(bad):
    net = _random_supernet()
    with pytest.raises(ValueError, match='top_k must be an integer >= 1'):
        top_k_architectures(cell_shapes(net.cells()), net.alphas(), bad)


def test_experiment_exports_top_k_through_list_models():
    train, val = digits_tasks()
    strategy = BaseStrategy(inner_steps=1)
    exp = run(tiny_space(), episodic_evaluator(train, steps_per_epoch=1), strategy)
    samples = exp.export_top_models(top_k=4, formatter='dict')
    assert samples == strategy.export_top_models(top_k=4)
    assert len({json.dumps(s, sort_keys=True) for s in samples}) == 4
    assert samples[0] == strategy.export_sample()
    scores = [score for _, score in strategy.ranked_models(4)]
    assert scores == sorted(scores, reverse=True)
    assert set(strategy.export_probs()) >= {'normal/2_0', 'reduce/2_0'}
    with pytest.raises(ValueError, match='top_k'):
        strategy.export_top_models(top_k=0)
