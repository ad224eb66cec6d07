"""The Gumbel supernet cell: sparse and dense paths agree, gradients reach alpha, eval uses the export."""

import pytest
import torch

from nni_base import BaseStrategy
from nni_base.api import build_supernet
from tests.helpers import assert_same_forward_and_alpha_grads, tiny_space


def supernet(sparse: bool, seed: int = 0):
    torch.manual_seed(seed)
    return build_supernet(tiny_space(), BaseStrategy(sparse=sparse))


def test_sparse_and_dense_paths_agree_for_the_same_hard_sample():
    sparse, dense = supernet(True), supernet(False)
    dense.training_module.model.load_state_dict(sparse.training_module.model.state_dict())
    x = torch.randn(6, 3, 8, 8)
    assert_same_forward_and_alpha_grads(sparse, dense, x)


def test_short_meta_training_gives_the_same_prior_on_both_paths():
    from tests.helpers import digits_tasks, episodic_evaluator, run

    train, _ = digits_tasks()
    priors = []
    for sparse in (True, False):
        strategy = BaseStrategy(inner_steps=2, sparse=sparse, seed=0)
        run(tiny_space(), episodic_evaluator(train, steps_per_epoch=2, seed=0), strategy)
        priors.append(strategy.prior_dict())
    for label in ('normal', 'reduce'):
        assert torch.allclose(priors[0]['alpha'][label], priors[1]['alpha'][label], atol=1e-4), label
    for key, value in priors[0]['state_dict'].items():
        # The dense path also runs unsampled operations, so their BatchNorm running statistics move;
        # every trained parameter must agree.
        if value.is_floating_point() and 'running_' not in key:
            assert torch.allclose(value, priors[1]['state_dict'][key], atol=1e-4, rtol=1e-3), key


def test_hard_sampling_touches_only_sampled_operations():
    net = supernet(True)
    net.training_module.model.train()
    net.resample()
    net.training_module.model(torch.randn(4, 3, 8, 8)).sum().backward()
    cell = net.cells()[0]
    unused = [name for name, p in cell.ops.named_parameters() if p.grad is None]
    assert unused, 'a sparse step should leave the unsampled operations without gradient'


def test_eval_mode_runs_the_exported_architecture():
    net = supernet(True)
    model = net.training_module.model
    model.eval()
    sample = net.export()
    assert len(sample) == 32 and sample['normal/input_2_0'] in ([0], [1])
    out = model(torch.randn(2, 3, 8, 8))
    assert out.shape == (2, 5)
    # The same weights under the exported cells give the same result as an explicitly derived forward.
    for cell in net.cells():
        cell.use_derived = True
    model.eval()
    assert torch.allclose(model(torch.ones(2, 3, 8, 8)), model(torch.ones(2, 3, 8, 8)))


def test_alpha_is_shared_by_cells_of_one_type():
    net = supernet(True)
    by_label = {}
    for cell in net.cells():
        by_label.setdefault(cell.label, set()).add(id(cell.alpha))
    assert set(by_label) == {'normal', 'reduce'}
    assert all(len(ids) == 1 for ids in by_label.values())
    assert net.alphas()['normal'].shape == (14, 8)


@pytest.mark.parametrize('hard', [True, False])
def test_gumbel_sample_is_shared_within_a_forward(hard):
    torch.manual_seed(0)
    net = build_supernet(tiny_space(), BaseStrategy(hard=hard))
    net.resample()
    reduce_cells = [c for c in net.cells() if c.label == 'reduce']
    assert len(reduce_cells) == 2 and reduce_cells[0]._weights is reduce_cells[1]._weights
