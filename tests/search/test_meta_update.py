"""The outer (Reptile-style) update and the inner SGD step, against hand-computed answers."""

import torch
import torch.nn as nn

from nni_base.search.meta_update import MeanAccumulator, ModelState, inner_sgd_step, set_reptile_gradients


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor([1.0, 2.0]))
        self.alpha = nn.Parameter(torch.tensor([0.0, 0.0, 0.0]))
        self.bn = nn.BatchNorm1d(2)


def test_outer_update_moves_shared_toward_task_mean_with_separate_step_sizes():
    model = Toy()
    state = ModelState(model)
    shared = state.snapshot()
    mean = MeanAccumulator(state.tensors)
    # Two "task-adapted" states: w -> [3, 2] and [1, 6]; alpha -> [1, 0, 0] and [0, 0, 3].
    for w, a in (([3.0, 2.0], [1.0, 0.0, 0.0]), ([1.0, 6.0], [0.0, 0.0, 3.0])):
        with torch.no_grad():
            model.w.copy_(torch.tensor(w))
            model.alpha.copy_(torch.tensor(a))
        mean.add(state.tensors)
        state.restore(shared)
    assert torch.equal(model.w.detach(), torch.tensor([1.0, 2.0]))  # restored between tasks

    opt = torch.optim.SGD([{'params': [model.w], 'lr': 0.5}, {'params': [model.alpha], 'lr': 1.0}])
    set_reptile_gradients(state.params, mean.mean()[: len(state.params)])
    opt.step()
    # mean w = [2, 4]; w + 0.5 * (mean - w) = [1.5, 3.0].  mean alpha = [0.5, 0, 1.5], step size 1 -> the mean.
    assert torch.allclose(model.w.detach(), torch.tensor([1.5, 3.0]))
    assert torch.allclose(model.alpha.detach(), torch.tensor([0.5, 0.0, 1.5]))


def test_buffers_are_part_of_the_state():
    model = Toy()
    state = ModelState(model)
    assert any(b is model.bn.running_mean for b in state.buffers)
    assert all(b.is_floating_point() for b in state.buffers)  # num_batches_tracked is left alone


def test_inner_step_uses_per_parameter_step_size_and_skips_unused():
    a = torch.tensor([1.0, 1.0])
    b = torch.tensor([5.0])
    inner_sgd_step([a, b], [torch.tensor([1.0, -2.0]), None], [0.1, 99.0].__getitem__)
    assert torch.allclose(a, torch.tensor([0.9, 1.2]))
    assert torch.equal(b, torch.tensor([5.0]))


def test_outer_optimizer_is_sgd_for_weights_and_adam_for_alpha():
    from nni_base.search.meta_update import OuterOptimizer

    weights, alpha = torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(3))
    reference = torch.nn.Parameter(torch.zeros(3))
    adam = torch.optim.Adam([reference], lr=0.15)
    outer = OuterOptimizer([{'params': [weights], 'lr': 1.0}, {'params': [alpha], 'lr': 0.15, 'adaptive': True}])
    for i in range(5):
        grad = torch.tensor([1.0, -2.0, 0.5]) * (i + 1)
        weights.grad, alpha.grad, reference.grad = grad.clone(), grad.clone(), grad.clone()
        outer.step()
        adam.step()
    assert torch.allclose(alpha, reference, atol=1e-6)
    assert torch.allclose(weights, -torch.tensor([1.0, -2.0, 0.5]) * 15)
