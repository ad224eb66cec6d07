"""The meta-training estimator: what hard samples draw, what tau changes, what reaches the prior."""

from __future__ import annotations

import torch

from nni_base import BaseStrategy, MetaTrainingConfig, SupernetConfig
from nni_base.api import build_supernet
from nni_base.search.adaptation import TaskAdapter
from nni_base.search.meta_update import ModelState
from tests.helpers import digits_tasks, tiny_space


def _supernet(**kwargs):
    torch.manual_seed(0)
    return build_supernet(tiny_space(), BaseStrategy(seed=0, **kwargs))


def _chosen(supernet, draws: int = 200) -> torch.Tensor:
    cell = supernet.cells()[0]
    picks = []
    for _ in range(draws):
        supernet.resample()
        picks.append(torch.tensor(cell._chosen))
    return torch.stack(picks)


def test_hard_samples_leave_none_out_by_default_and_draw_it_when_asked():
    supernet = _supernet()
    none = len(supernet.cells()[0].op_names)
    with torch.no_grad():  # make `none` the most likely entry everywhere
        for alpha in supernet.arch_parameters():
            alpha[:, none] = 5.0
    assert not bool((_chosen(supernet) == none).any())
    with_none = _supernet(supernet=SupernetConfig(sample_none=True))
    with torch.no_grad():
        for alpha in with_none.arch_parameters():
            alpha[:, none] = 5.0
    assert float((_chosen(with_none) == none).float().mean()) > 0.5


def test_sampled_ops_get_an_alpha_gradient_on_every_edge():
    supernet = _supernet()
    train, _ = digits_tasks()
    torch.manual_seed(1)
    task = train.sample()
    supernet.resample()
    loss, _ = supernet.model_loss(task.support_x, task.support_y)
    loss.backward()
    for cell in supernet.cells():
        grad = cell.alpha.grad
        assert grad is not None
        # Every edge has a sampled (non-`none`) op, so every edge row gets a gradient.
        assert bool((grad.abs().sum(-1) > 0).all())


def test_temperature_does_not_change_hard_samples():
    supernet = _supernet()
    draws = {}
    for tau in (0.5, 5.0):
        supernet.set_temperature(tau)
        torch.manual_seed(3)
        draws[tau] = _chosen(supernet, draws=20)
    assert torch.equal(draws[0.5], draws[5.0])


def test_hard_path_defaults_to_a_constant_temperature_and_relaxed_one_anneals():
    hard = BaseStrategy().config.temperature
    relaxed = BaseStrategy(supernet=SupernetConfig(hard=False)).config.temperature
    assert hard(0, 100) == hard(99, 100) == 1.0
    assert abs(relaxed(0, 100) - 5.0) < 1e-9 and abs(relaxed(99, 100) - 0.5) < 1e-9


def test_query_evaluation_leaves_batchnorm_statistics_alone():
    supernet = _supernet()
    train, _ = digits_tasks()
    task = train.sample()
    state = ModelState(supernet.training_module.model)
    before = [b.clone() for b in state.buffers]
    supernet.query_metrics(task)
    assert all(torch.equal(a, b) for a, b in zip(before, state.buffers))


def test_inner_loop_draws_mini_batches_of_the_support_set():
    supernet = _supernet(meta_training=MetaTrainingConfig(inner_batch_size=4))
    train, _ = digits_tasks()
    task = train.sample()
    seen = []
    model = supernet.training_module.model
    handle = model.register_forward_hook(lambda m, args, out: seen.append(args[0].shape[0]))
    state = ModelState(model)
    supernet.adapt(task, 3, state, where='test')
    handle.remove()
    assert seen == [4, 4, 4]


def test_default_adaptation_moves_alpha_and_the_frozen_ablation_does_not():
    train, _ = digits_tasks()
    torch.manual_seed(0)
    task = train.sample()
    moved = {}
    for freeze in (False, True):
        adapter = TaskAdapter(_supernet(), freeze_alpha=freeze)
        start = {k: v.detach().clone() for k, v in adapter.supernet.alphas().items()}
        for _ in range(5):
            adapter.step(task.support_x, task.support_y)
        moved[freeze] = max(float((v.detach() - start[k]).abs().max()) for k, v in adapter.supernet.alphas().items())
    # The default alpha step (Adam, DEFAULT_ARC_LEARNING_RATE) moves the logits by a visible amount in 5 steps;
    # Adam at 3e-3 could move them by at most 0.015.
    assert moved[False] > 0.02
    assert moved[True] == 0.0


def test_sampled_none_gets_a_gradient_through_its_runner_up():
    supernet = _supernet(supernet=SupernetConfig(sample_none=True))
    none = len(supernet.cells()[0].op_names)
    with torch.no_grad():  # `none` first on the even edges; the odd edges keep the nodes' outputs non-zero
        for alpha in supernet.arch_parameters():
            alpha[::2, none] = 20.0
    train, _ = digits_tasks()
    task = train.sample()
    supernet.resample()
    assert all(k == none for k in supernet.cells()[0]._chosen[::2])
    loss, _ = supernet.model_loss(task.support_x, task.support_y)
    loss.backward()
    for alpha in supernet.arch_parameters():
        # Before the paired estimator a sampled `none` computed nothing and its row got no gradient at all.
        assert bool((alpha.grad[::2, none].abs() > 0).any())


def test_pooling_is_normalised_while_searching():
    supernet = _supernet()
    cell = supernet.cells()[0]  # the first (normal, stride 1) cell
    ops = cell.ops[0][0]
    channels = ops['sep_conv_3x3'][1].in_channels
    x = torch.randn(4, channels, 8, 8) + 3
    pooled = cell._search_op(ops, cell.op_names.index('max_pool_3x3'), x)
    assert abs(float(pooled.mean())) < 1e-4  # batch statistics take the pooled output's positive bias out
    cell.pool_batchnorm = False
    assert float(cell._search_op(ops, cell.op_names.index('max_pool_3x3'), x).mean()) > 2.0
    # Parametric ops are left alone: they end in their own BatchNorm.
    conv = cell.op_names.index('sep_conv_3x3')
    cell.pool_batchnorm = True
    assert torch.equal(cell._search_op(ops, conv, x), ops['sep_conv_3x3'](x))
