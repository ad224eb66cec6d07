"""Multi-resolution DARTS space: one stem per input size, shared cells and alpha, exports that freeze into DARTS."""

from __future__ import annotations

import pytest
import torch
from nni.nas.hub.pytorch import DARTS

from nni_base import BaseStrategy, DartsTaskSpace
from nni_base.api import build_supernet
from nni_base.space.multires import MultiResolutionDartsSpace

SIZES = ((32, 2), (64, 2), (224, 8))  # input size, stride of its stem (paper: 1/2, 1/2, 1/8)


def tiny(**kwargs) -> MultiResolutionDartsSpace:
    return MultiResolutionDartsSpace(width=4, num_cells=3, num_classes=10, **kwargs)


def test_stems_stride_as_in_the_paper_and_hand_the_cells_the_same_layout():
    space = tiny()
    assert sorted(space.stems, key=int) == ['32', '64', '224']
    for size, stride in SIZES:
        s0, s1 = space.stems[str(size)](torch.randn(2, 3, size, size))
        assert s1.shape == (2, 4, size // stride, size // stride)
        assert s0.shape == (2, 4, 2 * (size // stride), 2 * (size // stride))  # reduced by the first cell


def test_supernet_runs_every_size_with_shared_cells_and_alpha():
    supernet = build_supernet(tiny(), BaseStrategy(seed=0))
    model = supernet.training_module.model
    shared_cell_weight = next(p for n, p in model.named_parameters() if n.startswith('stages.0.blocks.0.preprocessor.'))
    for size, _ in SIZES:
        model.zero_grad()
        for alpha in supernet.alphas().values():
            alpha.grad = None
        supernet.resample()
        out = model(torch.randn(2, 3, size, size))
        assert out.shape == (2, 10)
        torch.nn.functional.cross_entropy(out, torch.tensor([1, 2])).backward()
        # the stem of this size learns, the other stems do not; cells and both alphas learn from every size
        for name, stem in model.stems.items():
            grads = [p.grad for p in stem.parameters()]
            assert all(g is not None and g.abs().sum() > 0 for g in grads) == (name == str(size)), (size, name)
        assert shared_cell_weight.grad is not None and shared_cell_weight.grad.abs().sum() > 0
        assert all(a.grad is not None and a.grad.abs().sum() > 0 for a in supernet.alphas().values())


def test_export_ignores_the_stems_and_freezes_into_nni_darts():
    space = tiny()
    assert sorted(space.simplify()) == sorted(DARTS(width=4, num_cells=3).simplify())  # same choices, no stem choices
    supernet = build_supernet(tiny(), BaseStrategy(seed=0))
    sample = supernet.export()
    assert len(sample) == 32 and all(k.startswith(('normal/', 'reduce/')) for k in sample)
    x32 = torch.randn(2, 3, 32, 32)
    assert DARTS(width=4, num_cells=3, dataset='cifar').freeze(sample).eval()(x32).shape == (2, 10)
    assert DartsTaskSpace(width=4, num_cells=3, num_classes=7).freeze(sample).eval()(x32).shape == (2, 7)
    frozen = space.freeze(sample).eval()
    assert isinstance(frozen, MultiResolutionDartsSpace)
    for size, _ in SIZES:
        assert frozen(torch.randn(1, 3, size, size)).shape == (1, 10)


def test_unsupported_input_size_is_a_clear_error():
    space = tiny(resolutions=(32,))
    net = space.freeze(build_supernet(tiny(resolutions=(32,)), BaseStrategy(seed=0)).export()).eval()
    for shape in ((1, 3, 48, 48), (1, 3, 32, 64)):
        with pytest.raises(ValueError, match=r'stems for 32x32 inputs, got a batch of shape .*resolutions=\(\.\.\.'):
            net(torch.randn(*shape))
    with pytest.raises(ValueError, match='resolutions must be a non-empty list'):
        tiny(resolutions=())
    with pytest.raises(ValueError, match='width must be at least 2'):
        MultiResolutionDartsSpace(width=1, num_cells=3)


def test_search_spaces_module_points_at_the_class():
    from search_spaces.multires import MultiResolutionDartsSpace as FromRepo

    assert FromRepo is MultiResolutionDartsSpace
