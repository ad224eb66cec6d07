"""Prior files: round trip, atomic and safe writes, clear errors for damaged or mismatched priors."""

import pickle

import pytest
import torch

from nni_base import AdaptationConfig, BaseStrategy, CorruptPriorError, PriorMismatchError, load_prior, save_prior
from nni_base.api import build_supernet
from nni_base.prior import build_prior
from tests.helpers import tiny_space


@pytest.fixture()
def prior(tmp_path):
    torch.manual_seed(0)
    net = build_supernet(tiny_space(), BaseStrategy())
    with torch.no_grad():
        net.alphas()['normal'][3, 2] = 5.0  # something recognisable
    data = build_prior(
        net.training_module.model, net.alphas(), config=BaseStrategy().config.to_dict(), tasks={'ways': 5}
    )
    return save_prior(data, tmp_path / 'prior.pt'), net


def test_round_trip_restores_weights_and_alpha(prior):
    path, net = prior
    loaded = load_prior(path)
    assert loaded['alpha']['normal'][3, 2] == 5.0
    restored = build_supernet(tiny_space(), BaseStrategy(prior=path))
    for (name, a), b in zip(
        net.training_module.model.state_dict().items(), restored.training_module.model.state_dict().values()
    ):
        assert torch.equal(a, b), name
    assert restored.export() == net.export()


@pytest.mark.parametrize('scale', [0.0, 0.5])
def test_prior_alpha_scale_scales_the_logits_and_keeps_the_weights(prior, scale):
    path, net = prior
    scaled = build_supernet(
        tiny_space(), BaseStrategy(prior=path, adaptation=AdaptationConfig(prior_alpha_scale=scale))
    )
    for label, alpha in net.alphas().items():
        assert torch.equal(scaled.alphas()[label], scale * alpha), label
    alpha_ids = {id(a) for a in scaled.alphas().values()}
    own = dict(net.training_module.model.named_parameters())
    for name, tensor in scaled.training_module.model.named_parameters():
        if id(tensor) not in alpha_ids:
            assert torch.equal(tensor, own[name]), name
    assert load_prior(path)['alpha']['normal'][3, 2] == 5.0, 'the file is not changed'


def test_prior_alpha_scale_is_not_taken_from_a_prior_and_needs_one(prior):
    path, _ = prior
    data = load_prior(path)
    data['config']['prior_alpha_scale'] = 0.0  # as if written by a run that used it
    torch.save(data, path)
    assert BaseStrategy(prior=path).config.prior_alpha_scale == 1.0
    with pytest.raises(
        ValueError, match='prior_alpha_scale=0.0 scales the architecture logits of a prior, but no prior'
    ):
        BaseStrategy(adaptation=AdaptationConfig(prior_alpha_scale=0.0))


def test_prior_loads_with_weights_only(prior):
    path, _ = prior
    torch.load(path, weights_only=True)  # would raise on any non-tensor, non-builtin object


def test_prior_for_other_class_count_loads_all_but_the_head(prior):
    path, net = prior
    other = build_supernet(tiny_space(num_classes=7), BaseStrategy(prior=path))
    assert other.rebuilt_heads == ['classifier']
    assert other.training_module.model.classifier.out_features == 7
    own, theirs = net.training_module.model.state_dict(), other.training_module.model.state_dict()
    for name, tensor in own.items():
        if not name.startswith('classifier.'):
            assert torch.equal(tensor, theirs[name]), name
    assert load_prior(path)['state_dict']['classifier.weight'].shape[0] == 5  # the file keeps its head


def test_prior_for_other_width_is_refused(prior):
    path, _ = prior
    from nni_base import DartsTaskSpace

    with pytest.raises(
        PriorMismatchError,
        match=r'does not fit this space.*meta-trained on a space with width=4, '
        r'num_cells=3, num_classes=5; this space has width=6, num_cells=3, num_classes=5',
    ):
        build_supernet(DartsTaskSpace(width=6, num_cells=3, num_classes=5), BaseStrategy(prior=path))


def test_prior_for_other_choices_is_refused(prior):
    path, _ = prior
    data = load_prior(path)
    data['space']['signature']['normal/op_2_0'] = ['sep_conv_3x3']
    torch.save(data, path)
    with pytest.raises(PriorMismatchError, match='other candidates.*normal/op_2_0'):
        build_supernet(tiny_space(), BaseStrategy(prior=path))


def test_truncated_prior_is_a_clear_error(prior):
    path, _ = prior
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CorruptPriorError, match='damaged'):
        BaseStrategy(prior=path)


@pytest.mark.filterwarnings('ignore:Detected pickle protocol')  # the file is a hand-made pickle on purpose
def test_prior_with_code_is_not_executed(tmp_path):
    marker = tmp_path / 'pwned'  # an absolute path: the payload writes where the assertion looks

    class Evil:
        def __reduce__(self):
            return (exec, (f"open({str(marker)!r}, 'w').write('x')",))

    path = tmp_path / 'evil.pt'
    path.write_bytes(pickle.dumps({'format': 'nni-base-prior', 'x': Evil()}))
    with pytest.raises(CorruptPriorError):
        load_prior(path)
    assert not marker.exists()


def test_foreign_file_and_missing_file(tmp_path):
    torch.save({'weights': torch.zeros(2)}, tmp_path / 'other.pt')
    with pytest.raises(CorruptPriorError, match='not an nni-base prior'):
        load_prior(tmp_path / 'other.pt')
    with pytest.raises(FileNotFoundError, match='or meta-train one first'):
        load_prior(tmp_path / 'nope.pt')


def test_nan_prior_is_refused_and_old_file_kept(prior):
    path, _ = prior
    before = path.read_bytes()
    data = load_prior(path)
    data['alpha']['normal'][0, 0] = float('nan')
    with pytest.raises(FloatingPointError, match='non-finite'):
        save_prior(data, path)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == ['prior.pt']  # no temporary file left behind
