"""Few-shot BASE's unrolled inner loop follows its update rule, and its meta-gradient is not the plain gradient.

With ``relaxation='softmax'`` the forward pass is deterministic (no Gumbel noise), so the clone's parameters
after one inner step can be compared with ``θ - lr * ∇ support loss(θ)`` computed on the shared model, with the
weights' step ``inner_lr`` and α's ``inner_lr_alpha``.
"""

from __future__ import annotations

import torch

from nni_base import BaseStrategy, SupernetConfig
from nni_base.api import build_supernet, sample_tasks
from nni_base.search.optimization_embedding import WeightAlphaMAML, maml_query_loss, resample_cells
from tests.helpers import digits_tasks, tiny_space

INNER_LR, INNER_LR_ALPHA = 0.05, 0.5


def _setup():
    torch.manual_seed(0)
    net = build_supernet(
        tiny_space(),
        BaseStrategy(
            meta_algorithm='maml',
            supernet=SupernetConfig(relaxation='softmax'),
            inner_lr=INNER_LR,
            inner_lr_alpha=INNER_LR_ALPHA,
        ),
    )
    with torch.no_grad():
        for alpha in net.arch_parameters():
            alpha.normal_(0, 0.5)  # away from uniform, so α's gradient is not symmetric
    model = net.training_module.model
    model.train()
    train, _ = digits_tasks(shots=2, queries=2)
    task = sample_tasks(train, 1, seed=1)[0]
    maml = WeightAlphaMAML(model, INNER_LR, INNER_LR_ALPHA, net.arch_parameters())
    return net, model, maml, task


def test_one_inner_step_moves_the_clone_by_its_support_gradient(monkeypatch):
    net, model, maml, task = _setup()
    params = list(model.parameters())
    arch = {id(p) for p in net.arch_parameters()}
    resample_cells(model)
    support_loss, _ = net.loss_of(model, task.support_x, task.support_y)
    grads = torch.autograd.grad(support_loss, params, allow_unused=True)

    clones = []
    clone = WeightAlphaMAML.clone
    monkeypatch.setattr(
        WeightAlphaMAML, 'clone', lambda self, *a, **k: clones.append(clone(self, *a, **k)) or clones[-1]
    )
    maml_query_loss(maml, task, 1, net.loss_of)
    assert len(clones) == 1
    adapted = list(clones[0].module.parameters())
    moved = 0
    for p, g, q in zip(params, grads, adapted):
        lr = INNER_LR_ALPHA if id(p) in arch else INNER_LR
        expected = p.detach() if g is None else p.detach() - lr * g
        assert torch.allclose(q.detach(), expected, atol=1e-6, rtol=1e-5)
        moved += int(g is not None and bool(g.abs().sum() > 0))
    assert moved > len(arch), 'the inner step moved (almost) nothing'
    for p in net.arch_parameters():  # α is adapted in the clone, the shared α stays put
        q = adapted[[id(x) for x in params].index(id(p))]
        assert not torch.equal(q.detach(), p.detach())


def test_the_meta_gradient_differs_from_the_plain_query_gradient():
    net, model, maml, task = _setup()
    params = list(model.parameters())
    resample_cells(model)
    plain_loss, _ = net.loss_of(model, task.query_x, task.query_y)
    plain = torch.autograd.grad(plain_loss, params, allow_unused=True)
    meta_loss, _ = maml_query_loss(maml, task, 1, net.loss_of)
    meta = torch.autograd.grad(meta_loss, params, allow_unused=True)
    assert not torch.allclose(meta_loss.detach(), plain_loss.detach()), 'the query loss did not see the inner steps'
    differ = [
        i
        for i, (a, b) in enumerate(zip(plain, meta))
        if a is not None and b is not None and not torch.allclose(a, b, atol=1e-7, rtol=1e-4)
    ]
    arch_rows = {i for i, p in enumerate(params) if any(p is a for a in net.arch_parameters())}
    assert arch_rows & set(differ), 'the meta-gradient of alpha equals its plain query gradient'
    assert set(differ) - arch_rows, 'the meta-gradient of the weights equals their plain query gradient'
