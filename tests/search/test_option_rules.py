"""Rule tests for the options that touch model state: what each must change, and what it must leave as it was.

Every row takes a supernet loaded from one prior, snapshots all of it (parameters, buffers — BatchNorm running
statistics included —, α, the global RNG), applies the option, and checks that exactly the named parts moved.
A change that, say, lets the head initialisation's feature pass leak into the BatchNorm statistics fails here.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from nni_base import BaseStrategy, TaskAdapter
from nni_base.api import build_supernet
from nni_base.prior import build_prior, head_modules, load_prior, save_prior
from nni_base.search.adaptation import recalibrate_batchnorm
from nni_base.search.head import class_mean_features, initialise_head
from tests.helpers import tiny_space

WAYS = 4


@pytest.fixture(scope='module')
def prior_path(tmp_path_factory):
    torch.manual_seed(0)
    strategy = BaseStrategy()
    net = build_supernet(tiny_space(5), strategy)
    with torch.no_grad():
        for alpha in net.alphas().values():
            alpha.normal_()
        for m in net.training_module.model.modules():  # statistics a stray forward pass would visibly move
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    data = build_prior(net.training_module.model, net.alphas(), config=strategy.config.to_dict(), tasks={'ways': 5})
    return save_prior(data, tmp_path_factory.mktemp('rules') / 'prior.pt')


def images(n: int = 16, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 8, 8, generator=g), torch.arange(n) % WAYS


def snapshot(supernet) -> dict[str, torch.Tensor]:
    model = supernet.training_module.model
    arch = {id(p) for p in supernet.arch_parameters()}
    state = {f'param:{k}': v.detach().clone() for k, v in model.named_parameters() if id(v) not in arch}
    state.update({f'buffer:{k}': v.clone() for k, v in model.named_buffers()})
    state.update({f'alpha:{k}': v.detach().clone() for k, v in supernet.alphas().items()})
    state['rng'] = torch.get_rng_state()
    return state


def moved(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> set[str]:
    return {k for k in before if not torch.equal(before[k], after[k])}


def head_init(how: str) -> Callable:
    def apply(supernet):
        x, y = images()
        initialise_head(supernet, ['classifier'], x, y, how)

    return apply


def adapt(**kwargs) -> Callable:
    def apply(supernet):
        adapter = TaskAdapter(supernet, **kwargs)
        x, y = images()
        supernet.rebuilt_heads = []  # the head is initialised by its own rows above
        adapter.step(x, y)

    return apply


def recalibrate(supernet):
    recalibrate_batchnorm(supernet, [images(seed=s)[0] for s in (2, 3)])


def class_means_read(supernet):
    class_mean_features(supernet, head_modules(supernet.training_module.model, ['classifier'])[0], *images(), WAYS)


HEAD = {'param:classifier.weight', 'param:classifier.bias'}
RUNNING = ('running_mean', 'running_var', 'num_batches_tracked')

# option -> (how to apply it, the parts that must move, the parts allowed to move beside them)
RULES = {
    'head_init=zero': (head_init('zero'), HEAD, set()),
    'head_init=class_means': (head_init('class_means'), HEAD, set()),
    'head_init=random': (head_init('random'), HEAD, {'rng'}),
    'class-mean feature pass': (class_means_read, set(), set()),
    'bn recalibration': (recalibrate, 'running', set()),
    'freeze_alpha=True, one step': (adapt(freeze_alpha=True), 'weights', {'running', 'rng'}),
    'search step': (adapt(), 'weights+alpha', {'running', 'rng'}),
    'frozen architecture step': (adapt(search_steps=0), 'weights', {'running', 'rng'}),
}


def expand(parts, state: dict[str, torch.Tensor]) -> set[str]:
    """Names of ``state`` covered by a rule's parts: key names, or 'running' / 'weights' / 'alpha' groups."""
    if isinstance(parts, str):
        parts = set(parts.split('+'))
    out = set()
    for part in parts:
        if part == 'running':
            out |= {k for k in state if k.startswith('buffer:') and k.endswith(RUNNING)}
        elif part == 'weights':
            out |= {k for k in state if k.startswith('param:')}
        elif part == 'alpha':
            out |= {k for k in state if k.startswith('alpha:')}
        else:
            out.add(part)
    return out


@pytest.mark.parametrize('option', list(RULES))
def test_an_option_moves_what_it_must_and_nothing_else(prior_path, option):
    apply, must, may = RULES[option]
    supernet = build_supernet(tiny_space(WAYS), BaseStrategy(prior=prior_path))
    torch.manual_seed(5)
    before = snapshot(supernet)
    apply(supernet)
    changed = moved(before, snapshot(supernet))
    must_names, may_names = expand(must, before), expand(may, before)
    unexpected = changed - must_names - may_names
    assert not unexpected, f'{option} changed {sorted(unexpected)[:6]}'
    if isinstance(must, str):  # a group: some of it moves (weights off the sampled path do not)
        for group in must.split('+'):
            names = expand(group, before)
            assert changed & names, f'{option} left all of {group} as it was'
    else:
        assert must_names <= changed, f'{option} left {sorted(must_names - changed)[:6]} as it was'


def test_recalibration_moves_only_the_derived_path_and_restores_momentum(prior_path):
    supernet = build_supernet(tiny_space(WAYS), BaseStrategy(prior=prior_path))
    norms = [m for m in supernet.training_module.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    momenta = [m.momentum for m in norms]
    before = snapshot(supernet)
    recalibrate(supernet)
    changed = moved(before, snapshot(supernet))
    running = expand('running', before)
    assert changed and changed <= running
    assert changed != running, 'BatchNorms off the derived architecture must keep their statistics'
    assert [m.momentum for m in norms] == momenta


@pytest.mark.parametrize('scale', [0.0, 0.5, 2.0])
def test_prior_alpha_scale_scales_alpha_and_nothing_else(prior_path, scale):
    prior = load_prior(prior_path)
    plain = build_supernet(tiny_space(5), BaseStrategy(prior=prior_path))
    scaled = build_supernet(tiny_space(5), BaseStrategy(prior=prior_path, prior_alpha_scale=scale))
    for label, alpha in scaled.alphas().items():
        torch.testing.assert_close(alpha.detach(), scale * plain.alphas()[label].detach())
        assert plain.alphas()[label].detach().abs().sum() > 0
    a, b = snapshot(plain), snapshot(scaled)
    assert {k for k in moved(a, b) if not k.startswith('alpha:')} == set()
    assert prior['alpha'].keys() == plain.alphas().keys()
