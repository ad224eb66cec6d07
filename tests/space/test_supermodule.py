"""The Gumbel supernet cell: sparse and dense paths agree, gradients reach exactly the sampled ops, eval runs the
exported architecture (compared with NNI's frozen network)."""

import re

import pytest
import torch

from nni_base import BaseStrategy, SupernetConfig
from nni_base.api import build_supernet
from nni_base.space.gumbel_cell import edge_index
from tests.helpers import assert_same_forward_and_alpha_grads, tiny_space


def supernet(sparse: bool, seed: int = 0):
    torch.manual_seed(seed)
    return build_supernet(tiny_space(), BaseStrategy(supernet=SupernetConfig(sparse=sparse)))


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
        strategy = BaseStrategy(inner_steps=2, supernet=SupernetConfig(sparse=sparse), seed=0)
        run(tiny_space(), episodic_evaluator(train, steps_per_epoch=2, seed=0), strategy)
        priors.append(strategy.prior_dict())
    for label in ('normal', 'reduce'):
        assert torch.allclose(priors[0]['alpha'][label], priors[1]['alpha'][label], atol=1e-4), label
    for key, value in priors[0]['state_dict'].items():
        # The dense path also runs unsampled operations, so their BatchNorm running statistics move;
        # every trained parameter must agree.
        if value.is_floating_point() and 'running_' not in key:
            assert torch.allclose(value, priors[1]['state_dict'][key], atol=1e-4, rtol=1e-3), key


def test_hard_sampling_trains_exactly_the_sampled_operations():
    """After one sparse step every parameter of each edge's sampled op has a gradient; every other op has none
    (the runner-up runs without gradient, the rest do not run)."""
    net = supernet(True)
    model = net.training_module.model
    model.train()
    torch.manual_seed(3)
    net.resample()
    logits = model(torch.randn(8, 3, 8, 8))
    torch.nn.functional.cross_entropy(logits, torch.arange(8) % 5).backward()
    sampled_with_weights = 0
    for cell in net.cells():
        for node in range(2, 6):
            for pred in range(node):
                chosen = cell.op_names[cell._chosen[edge_index(node, pred, 2)]]
                for name, op in cell.ops[node - 2][pred].items():
                    grads = [p.grad for p in op.parameters()]
                    if name == chosen:
                        assert all(g is not None for g in grads), (cell.label, node, pred, name)
                        if grads:
                            sampled_with_weights += 1
                            assert any(float(g.abs().sum()) > 0 for g in grads), (cell.label, node, pred, name)
                    else:
                        assert all(g is None for g in grads), f'unsampled {name} on {cell.label} {pred}->{node}'
    assert sampled_with_weights > 0


def test_eval_mode_runs_the_exported_architecture():
    """In eval mode the supernet computes what NNI's own network frozen from the export computes with the same
    weights: the validation accuracy is that of the architecture the user gets."""
    torch.manual_seed(0)
    # Pooling as NNI's ops run it (the search-time normalisation is the supernet's own choice, tested elsewhere).
    net = build_supernet(tiny_space(), BaseStrategy(supernet=SupernetConfig(pool_batchnorm=False)))
    model = net.training_module.model
    with torch.no_grad():  # a decided architecture, different on every node
        for alpha in net.alphas().values():
            alpha.normal_(0, 2)
    sample = net.export()
    assert len(sample) == 32 and sample['normal/input_2_0'] in ([0], [1])
    frozen = tiny_space().freeze(sample)
    assert _copy_weights(model, frozen, net, sample) > 20
    model.eval()
    frozen.eval()
    x = torch.randn(3, 3, 8, 8)
    out = model(x)
    assert out.shape == (3, 5)
    assert torch.allclose(out, frozen(x), atol=1e-5)


def _copy_weights(supernet_model, frozen, net, sample) -> int:
    """Copy the supernet's weights into the frozen NNI network: the op of node ``n``'s ``k``-th input is
    ``ops[n-2][input][op]`` in the supernet and ``ops[n-2][k]`` in NNI's frozen cell."""
    source = supernet_model.state_dict()
    cells = {
        name: module.label
        for name, module in supernet_model.named_modules()
        if any(module is cell for cell in net.cells())
    }
    target = frozen.state_dict()
    for key in target:
        mapped = re.sub(r'^stages\.(\d+)\.(\d+)\.', r'stages.\1.blocks.\2.', key)  # NNI's Repeat, frozen or not
        for prefix, label in cells.items():
            if mapped.startswith(prefix + '.ops.'):
                node, k, rest = mapped[len(prefix) + len('.ops.') :].split('.', 2)
                pred = sample[f'{label}/input_{int(node) + 2}_{k}'][0]
                op = sample[f'{label}/op_{int(node) + 2}_{k}']
                mapped = f'{prefix}.ops.{node}.{pred}.{op}.{rest}'
        target[key] = source[mapped].clone()
    frozen.load_state_dict(target)
    return len(target)


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
    net = build_supernet(tiny_space(), BaseStrategy(supernet=SupernetConfig(hard=hard)))
    net.resample()
    reduce_cells = [c for c in net.cells() if c.label == 'reduce']
    assert len(reduce_cells) == 2 and reduce_cells[0]._weights is reduce_cells[1]._weights
