"""The hard Gumbel sample follows its sampling law: op k is drawn with probability softmax(α)_k.

Frequencies over a few thousand draws (fixed seeds) are compared with the law within 5 standard errors, so
the tests check the distribution, not one tuned outcome. Removing the Gumbel noise (every draw the argmax of α)
fails every one of them.
"""

from __future__ import annotations

import pytest
import torch

from nni_base import BaseStrategy, SupernetConfig
from nni_base.api import build_supernet
from nni_base.space.gumbel_cell import paired_straight_through
from tests.helpers import tiny_space

DRAWS = 4000
LOGITS = torch.tensor([0.8, -0.4, 0.1, 1.2, -1.0, 0.3, 0.0])  # 7 candidate ops of the DARTS space


def _assert_law(counts: torch.Tensor, probs: torch.Tensor, draws: int) -> None:
    freq = counts.double() / draws
    se = torch.sqrt(probs.double() * (1 - probs.double()) / draws)
    assert bool(((freq - probs.double()).abs() <= 5 * se + 1e-12).all()), (
        f'frequencies {freq.tolist()} do not follow softmax(alpha) {probs.tolist()}'
    )


def test_paired_sample_and_runner_up_follow_the_gumbel_top_two_law():
    torch.manual_seed(0)
    logits = LOGITS.repeat(DRAWS, 1)  # one row per draw: independent noise per row
    weights, first, second = paired_straight_through(logits, tau=1.0)
    p = torch.softmax(LOGITS, -1)
    _assert_law(torch.bincount(torch.tensor(first), minlength=7), p, DRAWS)
    # The runner-up is the second draw without replacement: P(second = j) = sum_i p_i p_j / (1 - p_i), i != j.
    p_second = torch.stack([sum(p[i] * p[j] / (1 - p[i]) for i in range(7) if i != j) for j in range(7)])
    _assert_law(torch.bincount(torch.tensor(second), minlength=7), p_second, DRAWS)
    assert all(a != b for a, b in zip(first, second))
    assert torch.equal(weights.detach(), torch.nn.functional.one_hot(torch.tensor(first), 7).float())


@pytest.mark.parametrize('tau', [0.3, 3.0])
def test_the_temperature_does_not_change_the_law_of_hard_samples(tau):
    torch.manual_seed(1)
    _, first, _ = paired_straight_through(LOGITS.repeat(DRAWS, 1), tau=tau)
    _assert_law(torch.bincount(torch.tensor(first), minlength=7), torch.softmax(LOGITS, -1), DRAWS)


@pytest.mark.parametrize('estimator', ['paired', 'straight_through'])
@pytest.mark.parametrize('sample_none', [False, True])
def test_the_cells_hard_samples_follow_softmax_alpha(estimator, sample_none):
    strategy = BaseStrategy(supernet=SupernetConfig(alpha_estimator=estimator, sample_none=sample_none))
    net = build_supernet(tiny_space(), strategy)
    cell = next(c for c in net.cells() if c.label == 'normal')
    edges = (0, 5)
    with torch.no_grad():
        cell.alpha.zero_()
        cell.alpha[edges[0], :7] = LOGITS
        cell.alpha[edges[0], 7] = 0.5  # `none`
        cell.alpha[edges[1], :7] = LOGITS.flip(0) * 2
    columns = 8 if sample_none else 7
    counts = torch.zeros(len(edges), 8, dtype=torch.long)
    torch.manual_seed(2)
    draws = 1500
    for _ in range(draws):
        net.resample()
        for row, e in enumerate(edges):
            counts[row, cell._chosen[e]] += 1
    for row, e in enumerate(edges):
        law = torch.softmax(cell.alpha.detach()[e, :columns], -1)
        _assert_law(counts[row, :columns], law, draws)
    if not sample_none:
        assert counts[:, 7].sum() == 0, '`none` was sampled although sample_none=False'


def test_every_cell_of_a_type_shares_one_sample_per_step():
    net = build_supernet(tiny_space(), BaseStrategy())
    torch.manual_seed(3)
    seen = set()
    for _ in range(50):
        net.resample()
        by_label: dict[str, list] = {}
        for cell in net.cells():
            by_label.setdefault(cell.label, []).append(tuple(cell._chosen))
        for samples in by_label.values():
            assert len(set(samples)) == 1
        seen.add(by_label['normal'][0])
    assert len(seen) > 1, 'the same architecture was drawn 50 times: no noise'
