"""Why the paired estimator: alpha must follow which op lowers the loss, not how large the op's output is."""

from __future__ import annotations

import torch

from nni_base.space.gumbel_cell import paired_straight_through, straight_through


def _descend(estimator: str, steps: int = 300, lr: float = 0.5) -> torch.Tensor:
    """SGD on alpha for a loss in which op k costs ``offset + gap_k`` when sampled.

    Every op shares a large positive offset: the part of a sampled op's gate derivative that only says
    "a smaller output would help" (BatchNorm scale). Op 2 is the planted winner (smallest gap).
    """
    torch.manual_seed(0)
    gaps = torch.tensor([0.6, 0.4, 0.0, 0.5, 0.8])
    alpha = torch.zeros(1, 5, requires_grad=True)
    with torch.no_grad():
        alpha[0, 0] = 1.0  # a head start for a loser: the estimator must overcome it
    for _ in range(steps):
        if estimator == 'paired':
            weights, _, _ = paired_straight_through(alpha, tau=1.0)
        else:
            g = -torch.empty_like(alpha).exponential_().log()
            weights = straight_through((alpha + g).softmax(-1))
        loss = (weights * (10.0 + gaps)).sum()
        (grad,) = torch.autograd.grad(loss, alpha)
        with torch.no_grad():
            alpha -= lr * grad
    return alpha.detach()[0]


def test_paired_estimator_finds_the_planted_winner_despite_a_shared_scale_term():
    alpha = _descend('paired')
    assert int(alpha.argmax()) == 2
    assert float(alpha.softmax(-1)[2]) > 0.5


def test_gate_only_straight_through_is_driven_by_the_shared_scale_term():
    # The old estimator pushes down whichever op is sampled most: the planted winner does not come out on top.
    alpha = _descend('straight_through')
    assert float(alpha.softmax(-1)[2]) < 0.5


def test_paired_sample_is_one_hot_in_value_and_grads_reach_only_the_pair():
    torch.manual_seed(1)
    alpha = torch.randn(4, 6, requires_grad=True)
    weights, first, second = paired_straight_through(alpha, tau=1.0)
    assert torch.equal(weights.detach(), torch.nn.functional.one_hot(torch.tensor(first), 6).float())
    assert all(a != b for a, b in zip(first, second))
    (weights * torch.arange(6.0)).sum().backward()
    touched = alpha.grad.abs() > 0
    for row, (a, b) in enumerate(zip(first, second)):
        assert set(torch.nonzero(touched[row]).flatten().tolist()) <= {a, b}
