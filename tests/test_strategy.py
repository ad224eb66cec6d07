"""BaseStrategy behaviours a user relies on beyond the basic run: seeding and alpha averaging."""

import torch

from nni_base import BaseStrategy
from tests.helpers import digits_tasks, episodic_evaluator, run, tiny_space


def meta_train(seed: int, **kwargs):
    train, test = digits_tasks()
    strategy = BaseStrategy(inner_steps=1, seed=seed, **kwargs)
    run(tiny_space(), episodic_evaluator(train, test, steps_per_epoch=2, seed=seed), strategy)
    return strategy


def test_same_seed_same_prior_on_cpu():
    a, b = meta_train(0).prior_dict(), meta_train(0).prior_dict()
    for key in a['state_dict']:
        assert torch.equal(a['state_dict'][key], b['state_dict'][key]), key
    c = meta_train(1).prior_dict()
    assert not torch.equal(a['alpha']['normal'], c['alpha']['normal'])


def test_alpha_averaged_over_adapted_tasks_is_exported():
    strategy = meta_train(0, average_alpha_tasks=3)
    module = strategy.oneshot_module
    assert module.averaged_alpha is not None
    averaged = module.averaged_alpha['normal']
    # A log of mean probabilities: rows are distributions, and they differ from the prior's own alpha.
    assert torch.allclose(averaged.exp().sum(-1), torch.ones(averaged.shape[0]), atol=1e-5)
    assert not torch.allclose(torch.softmax(module.alphas()['normal'].detach(), -1), averaged.exp())
    probs = strategy.export_probs()
    assert abs(probs['normal/2_0']['none'] - float(averaged.exp()[0, -1])) < 1e-6
    sample = strategy.export_sample()
    assert len(sample) == 32
