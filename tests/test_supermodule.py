"""The Gumbel supernet cell: sparse and dense paths agree, gradients reach alpha, eval uses the export."""

import pytest
import torch

from nni_base import BaseStrategy
from nni_base.api import build_supernet
from tests.helpers import tiny_space


def supernet(sparse: bool, seed: int = 0):
    torch.manual_seed(seed)
    return build_supernet(tiny_space(), BaseStrategy(sparse=sparse))


def test_sparse_and_dense_paths_agree_for_the_same_hard_sample():
    sparse, dense = supernet(True), supernet(False)
    dense.training_module.model.load_state_dict(sparse.training_module.model.state_dict())
    x = torch.randn(6, 3, 8, 8)
    outputs, grads = [], []
    for net in (sparse, dense):
        net.training_module.model.train()
        torch.manual_seed(1)  # same Gumbel noise, so the same hard sample
        net.resample()
        out = net.training_module.model(x)
        out.square().sum().backward()
        outputs.append(out.detach())
        grads.append({label: a.grad.clone() for label, a in net.alphas().items()})
    assert torch.allclose(outputs[0], outputs[1], atol=1e-5)
    for label in ('normal', 'reduce'):
        assert grads[0][label].abs().sum() > 0, f'no gradient reached {label} alpha'
        assert torch.allclose(grads[0][label], grads[1][label], atol=1e-4, rtol=1e-3)


def test_short_meta_training_gives_the_same_prior_on_both_paths():
    from nni_base.api import sample_tasks
    from nni_base.meta_update import ModelState
    from tests.helpers import digits_tasks

    train, _ = digits_tasks()
    tasks = sample_tasks(train, 2, seed=0)
    finals = []
    for sparse in (True, False):
        net = supernet(sparse)
        torch.manual_seed(3)
        for task in tasks:
            net.adapt(task, 3, ModelState(net.training_module.model), where='test')
        finals.append({k: v.clone() for k, v in net.alphas().items()})
    for label in finals[0]:
        assert torch.allclose(finals[0][label], finals[1][label], atol=1e-4), label


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
