"""The slot parameterisation: one categorical per node input slot over (input, op) pairs (paper section 3)."""

import pytest
import torch
from nni.nas.nn.pytorch import Cell

from nni_base import BaseStrategy, DartsTaskSpace, PriorMismatchError, SupernetConfig, load_prior, save_prior
from nni_base.api import build_supernet
from nni_base.prior import build_prior
from nni_base.space.gumbel_cell import GumbelMixedCell, derived_architecture
from nni_base.space.mixed import cell_hook
from nni_base.space.slot_cell import SlotGumbelCell, derive_slot_cell, pair_column, slot_index
from tests.helpers import assert_same_forward_and_alpha_grads

NUM_CLASSES = 3
OPS = ['max_pool_3x3', 'avg_pool_3x3', 'skip_connect', 'sep_conv_3x3', 'sep_conv_5x5', 'dil_conv_3x3', 'dil_conv_5x5']


def space() -> DartsTaskSpace:
    return DartsTaskSpace(width=4, num_cells=3, num_classes=NUM_CLASSES)


def slot_supernet(seed: int = 0, **supernet):
    """A slot supernet; ``supernet``: further SupernetConfig fields."""
    torch.manual_seed(seed)
    return build_supernet(space(), BaseStrategy(supernet=SupernetConfig(parameterization='slot', **supernet)))


def row(node: int, k: int) -> int:
    return slot_index(node, k, 2, 2)


def col(pred: int, op: str) -> int:
    return pair_column(pred, OPS.index(op), len(OPS))


def invalid(node: int) -> slice:
    return slice(node * len(OPS), None)


def test_slot_cells_replace_every_cell_with_one_alpha_per_label():
    net = slot_supernet()
    cells = net.cells()
    assert cells and all(type(c) is SlotGumbelCell for c in cells)
    assert cells[0].op_names == OPS
    alphas = net.alphas()
    assert {label: tuple(a.shape) for label, a in alphas.items()} == {'normal': (8, 35), 'reduce': (8, 35)}
    for cell in cells:
        assert cell.alpha is alphas[cell.label]


def test_slot_and_edge_logits_use_different_memo_keys():
    cell = next(m for m in space().modules() if type(m) is Cell)
    memo: dict = {}
    darts = cell_hook(cell, 'c', memo, {'parameterization': 'darts'})
    slot = cell_hook(cell, 'c', memo, {'parameterization': 'slot'})
    assert type(darts) is GumbelMixedCell and type(slot) is SlotGumbelCell
    assert tuple(darts.alpha.shape) == (14, 8) and tuple(slot.alpha.shape) == (8, 35)
    assert darts.alpha is not slot.alpha


def test_impossible_pairs_are_never_sampled_and_have_probability_zero():
    net = slot_supernet()
    cell = net.cells()[0]
    with torch.no_grad():  # make the impossible columns by far the most attractive ones
        for node in range(2, 6):
            for k in range(2):
                cell.alpha[row(node, k), invalid(node)] = 50.0
    for _ in range(300):
        cell.resample({})
        for node in range(2, 6):
            for k in range(2):
                assert cell._chosen[row(node, k)] < node * len(OPS), (node, k)
    probs = cell.slot_probs()
    for node in range(2, 6):
        assert torch.all(probs[row(node, 0), invalid(node)] == 0)
    assert torch.allclose(probs.sum(-1), torch.ones(8))
    exported = cell.export_probs({})
    assert len(exported['normal/slot_2_0']) == 2 * len(OPS) and len(exported['normal/slot_5_1']) == 5 * len(OPS)
    assert abs(sum(exported['normal/slot_2_0'].values()) - 1) < 1e-5
    assert 'sep_conv_3x3@2' not in exported['normal/slot_2_0']
    assert cell.export({})['normal/input_2_0'][0] in (0, 1)


@pytest.mark.parametrize('kwargs', [{'hard': False}, {'relaxation': 'softmax'}])
def test_relaxed_weights_cover_only_possible_pairs_and_give_finite_gradients(kwargs):
    net = slot_supernet(**kwargs)
    model = net.training_module.model
    model.train()
    net.resample()
    model(torch.randn(2, 3, 8, 8)).square().sum().backward()
    for cell in net.cells():
        weights = cell._weights
        assert torch.all(weights[row(2, 0), invalid(2)] == 0)
        assert torch.all(weights[row(2, 0), : invalid(2).start] > 0)
    for label, alpha in net.alphas().items():
        assert torch.isfinite(alpha.grad).all(), label
        assert torch.all(alpha.grad[row(3, 1), invalid(3)] == 0)
        assert alpha.grad[row(3, 1), : invalid(3).start].abs().sum() > 0


def test_export_is_an_nni_sample_that_freezes_and_runs():
    net = slot_supernet()
    sample = net.export()
    choices = space().simplify()
    assert set(sample) == set(choices)
    for label, value in sample.items():
        if '/input_' in label:
            assert isinstance(value, list) and len(value) == 1 and value[0] in choices[label].values, label
        else:
            assert value in choices[label].values, label
    model = space().freeze(sample)
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, NUM_CLASSES)


def test_export_takes_the_argmax_pair_of_each_slot():
    net = slot_supernet()
    cell = next(c for c in net.cells() if c.label == 'reduce')
    with torch.no_grad():
        cell.alpha.zero_()
        cell.alpha[row(2, 0), col(1, 'sep_conv_3x3')] = 3.0
        cell.alpha[row(2, 1), col(1, 'max_pool_3x3')] = 2.0  # the same input as slot 0
        cell.alpha[row(2, 1), col(3, 'skip_connect')] = 9.0  # impossible for node 2
        cell.alpha[row(3, 0), col(2, 'dil_conv_5x5')] = 1.0
        cell.alpha[row(3, 1), col(0, 'avg_pool_3x3')] = 1.0
        cell.alpha[row(5, 0), col(4, 'skip_connect')] = 4.0
        cell.alpha[row(5, 1), col(0, 'sep_conv_5x5')] = 0.5
        cell.alpha[row(5, 1), col(3, 'dil_conv_3x3')] = 0.7
    sample = cell.export({})
    expected = {
        'reduce/op_2_0': 'sep_conv_3x3',
        'reduce/input_2_0': [1],
        'reduce/op_2_1': 'max_pool_3x3',
        'reduce/input_2_1': [1],
        'reduce/op_3_0': 'dil_conv_5x5',
        'reduce/input_3_0': [2],
        'reduce/op_3_1': 'avg_pool_3x3',
        'reduce/input_3_1': [0],
        'reduce/op_5_0': 'skip_connect',
        'reduce/input_5_0': [4],
        'reduce/op_5_1': 'dil_conv_3x3',
        'reduce/input_5_1': [3],
    }
    assert {k: sample[k] for k in expected} == expected
    # Node 4 is all ties: the earliest pair wins.
    assert sample['reduce/op_4_0'] == OPS[0] and sample['reduce/input_4_0'] == [0]
    assert derive_slot_cell(cell.alpha, OPS, 'reduce', 4) == sample
    assert cell._derived_edges()[2] == [(1, OPS.index('sep_conv_3x3')), (1, OPS.index('max_pool_3x3'))]
    # The whole network's export (and its frozen model) carries the hand-set reduction cell.
    full = net.export()
    assert {k: full[k] for k in expected} == expected
    assert space().freeze(full)(torch.randn(2, 3, 16, 16)).shape == (2, NUM_CLASSES)


def test_derived_forward_runs_the_exported_slots():
    """A hard sample equal to the export computes what the derived architecture computes (shared input included)."""
    net = slot_supernet()
    model = net.training_module.model
    with torch.no_grad():
        for alpha in net.alphas().values():
            alpha.zero_()
            for node in range(2, 6):  # every slot decided, so the Gumbel noise cannot change the sample
                for k in range(2):
                    alpha[row(node, k), col(node - 1 - k, OPS[(node + k) % len(OPS)])] = 100.0
            alpha[row(2, 0), col(1, 'sep_conv_3x3')] = 200.0
            alpha[row(2, 1), col(1, 'sep_conv_3x3')] = 200.0  # both slots: the same pair
            alpha[row(4, 1), col(3, 'dil_conv_3x3')] = 200.0
    model.train()
    x = torch.randn(4, 3, 8, 8)
    net.resample()
    assert all(c._chosen[row(2, 0)] == c._chosen[row(2, 1)] == col(1, 'sep_conv_3x3') for c in net.cells())
    sampled = model(x)
    with derived_architecture(net.cells()):
        derived = model(x)
    assert torch.allclose(sampled, derived, atol=1e-5)
    with torch.no_grad():
        for alpha in net.alphas().values():
            alpha[row(2, 1), col(0, 'avg_pool_3x3')] = 300.0
    with derived_architecture(net.cells()):
        assert not torch.allclose(model(x), derived, atol=1e-3)


def test_sparse_and_dense_paths_agree_for_the_same_hard_sample():
    sparse, dense = slot_supernet(sparse=True), slot_supernet(sparse=False)
    dense.training_module.model.load_state_dict(sparse.training_module.model.state_dict())
    x = torch.randn(6, 3, 8, 8)
    assert_same_forward_and_alpha_grads(sparse, dense, x)


def test_hard_sample_gradient_reaches_the_sampled_columns_only_of_possible_pairs():
    net = slot_supernet()
    model = net.training_module.model
    model.train()
    net.resample()
    model(torch.randn(4, 3, 8, 8)).square().sum().backward()
    for cell in net.cells()[:1] + [c for c in net.cells() if c.label == 'reduce'][:1]:
        grad = cell.alpha.grad
        for r, c in enumerate(cell._chosen):
            assert grad[r, c] != 0, (cell.label, r, c)
        for node in range(2, 6):
            assert torch.all(grad[row(node, 0) : row(node, 0) + 2, invalid(node)] == 0)
    # Every parameter of a sampled (input, op) pair has a gradient; every other pair's op has none.
    for cell in net.cells():
        for node in range(2, 6):
            sampled = {divmod(cell._chosen[row(node, k)], len(OPS)) for k in range(2)}
            for pred in range(node):
                for name, op in cell.ops[node - 2][pred].items():
                    grads = [p.grad for p in op.parameters()]
                    if (pred, OPS.index(name)) in sampled:
                        assert all(g is not None for g in grads), (cell.label, node, pred, name)
                    else:
                        assert all(g is None for g in grads), f'unsampled {name} on {cell.label} {pred}->{node}'


def test_meta_training_with_slots_exports_a_slot_sample(tmp_path):
    from tests.helpers import WAYS, digits_tasks, episodic_evaluator, run, tiny_space

    train, _ = digits_tasks()
    strategy = BaseStrategy(
        inner_steps=1, supernet=SupernetConfig(parameterization='slot'), seed=0, save_prior_to=tmp_path / 'prior.pt'
    )
    exp = run(tiny_space(), episodic_evaluator(train, steps_per_epoch=2, seed=0), strategy)
    module = strategy.oneshot_module
    assert all(type(c) is SlotGumbelCell for c in module.cells())
    saved = load_prior(tmp_path / 'prior.pt')
    assert saved['config']['parameterization'] == 'slot'
    assert torch.equal(saved['alpha']['normal'], module.alphas()['normal'].detach().cpu())
    sample = exp.export_top_models(formatter='dict')[0]
    expected = {}
    for c in module.cells():
        expected.update(derive_slot_cell(c.alpha, c.op_names, c.label, c.num_nodes))
    assert sample == expected and len(sample) == 32
    assert set(strategy.export_probs()) == {
        f'{label}/slot_{i}_{k}' for label in ('normal', 'reduce') for i in range(2, 6) for k in range(2)
    }
    model = tiny_space().freeze(sample)
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, WAYS)


@pytest.fixture()
def slot_prior(tmp_path):
    net = slot_supernet()
    with torch.no_grad():
        net.alphas()['normal'][row(4, 1), col(3, 'sep_conv_5x5')] = 5.0  # something recognisable
    config = BaseStrategy(supernet=SupernetConfig(parameterization='slot')).config.to_dict()
    data = build_prior(net.training_module.model, net.alphas(), config=config, tasks={'ways': NUM_CLASSES})
    return save_prior(data, tmp_path / 'slot.pt'), net


def test_slot_prior_round_trip_with_weights_only(slot_prior):
    path, net = slot_prior
    raw = torch.load(path, weights_only=True)
    assert raw['config']['parameterization'] == 'slot'
    assert raw['alpha']['normal'][row(4, 1), col(3, 'sep_conv_5x5')] == 5.0
    restored = build_supernet(space(), BaseStrategy(prior=path))  # the prior's parameterization is the default
    assert all(type(c) is SlotGumbelCell for c in restored.cells())
    for (name, a), b in zip(
        net.training_module.model.state_dict().items(), restored.training_module.model.state_dict().values()
    ):
        assert torch.equal(a, b), name
    assert restored.export() == net.export()
    assert restored.export()['normal/op_4_1'] == 'sep_conv_5x5'


def test_slot_prior_into_edge_supernet_and_back_is_a_clear_error(slot_prior, tmp_path):
    path, _ = slot_prior
    with pytest.raises(PriorMismatchError, match="parameterization='slot'.*uses 'darts'"):
        build_supernet(space(), BaseStrategy(prior=path, supernet=SupernetConfig(parameterization='darts')))
    torch.manual_seed(0)
    darts = build_supernet(space(), BaseStrategy())
    data = build_prior(darts.training_module.model, darts.alphas(), config=BaseStrategy().config.to_dict())
    darts_path = save_prior(data, tmp_path / 'darts.pt')
    with pytest.raises(PriorMismatchError, match="parameterization='darts'.*uses 'slot'"):
        build_supernet(space(), BaseStrategy(prior=darts_path, supernet=SupernetConfig(parameterization='slot')))
