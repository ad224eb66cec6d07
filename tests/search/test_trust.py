"""The prior-trust probe (search/trust.py): the dataset decides how far a prior's α is trusted.

Rules: the lowest probe-validation loss wins and ties keep the prior; the two halves share every class and no
image; a prior whose α contradicts a dataset's known answer (peaks: max pooling first, skip connections last,
``benchmarks/results/known_answer.json``) is tempered, one that agrees is kept; the probe changes α by the chosen
factor and nothing else (weights, BatchNorm statistics, the random stream); it runs through NasExperiment only
from a prior, with ``prior_trust_steps`` > 0 (off by default) and ``prior_alpha_scale`` left at 1.
"""

from __future__ import annotations

import logging

import pytest
import torch

from nni_base import AdaptationConfig, BaseStrategy, TaskDistribution
from nni_base.api import build_supernet
from nni_base.data.families import family_splits
from nni_base.search.evaluation import DARTS_OPS
from nni_base.search.trust import choose_scale, probe_alpha_scales, split_by_class
from tests.helpers import classification, episodic_evaluator, run, tiny_space


def test_the_lowest_loss_wins_and_ties_keep_the_prior():
    assert choose_scale({1.0: 0.9, 0.5: 0.7, 0.0: 0.8}) == 0.5
    assert choose_scale({1.0: 0.7, 0.5: 0.7, 0.0: 0.7}) == 1.0
    assert choose_scale({1.0: 0.8, 0.5: 0.9, 0.0: 0.8}) == 1.0


def test_the_halves_share_every_class_and_no_image():
    y = torch.tensor([0, 0, 1, 1, 1, 2, 2, 0, 2, 1])
    a, b = split_by_class(y)
    assert set(a.tolist()).isdisjoint(b.tolist()) and sorted(a.tolist() + b.tolist()) == list(range(10))
    assert set(y[a].tolist()) == set(y[b].tolist()) == {0, 1, 2}


@pytest.fixture(scope='module')
def peaks():
    data = family_splits('peaks', image_size=16, images_per_class=40)
    idx = torch.randperm(len(data['test'].labels), generator=torch.Generator().manual_seed(0))[:160]
    return data, data['test'].images[idx], data['test'].labels[idx]


@pytest.fixture(scope='module')
def prior_with_alpha_on(peaks, tmp_path_factory):
    """A tiny prior meta-trained on peaks' meta-train classes, then α set to put every edge on one operation."""
    folder = tmp_path_factory.mktemp('trust')
    train = TaskDistribution(peaks[0]['train'], 5, 5, 5)
    run(tiny_space(), episodic_evaluator(train, steps_per_epoch=1), BaseStrategy(inner_steps=1, seed=0,
        save_prior_to=folder / 'prior.pt'))  # fmt: skip
    prior = torch.load(folder / 'prior.pt', weights_only=True)

    def make(op: str):
        state = dict(prior['state_dict'])
        for key in [k for k in state if k.endswith('_arch_alpha')]:
            state[key] = torch.zeros_like(state[key])
            state[key][:, DARTS_OPS.index(op)] = 6.0
        path = folder / f'{op}.pt'
        torch.save({**prior, 'state_dict': state}, path)
        return path

    return make


@pytest.mark.parametrize(('op', 'kept'), [('skip_connect', False), ('avg_pool_3x3', False), ('max_pool_3x3', True)])
def test_a_prior_that_contradicts_the_known_answer_is_tempered_one_that_agrees_is_kept(
    peaks, prior_with_alpha_on, op, kept
):
    torch.manual_seed(0)
    supernet = build_supernet(tiny_space(), BaseStrategy(prior=prior_with_alpha_on(op), seed=0))
    result = probe_alpha_scales(supernet, peaks[1], peaks[2], steps=4)
    assert (result.scale == 1.0) is kept, result.describe()


def test_the_probe_changes_alpha_by_the_chosen_factor_and_nothing_else(peaks, prior_with_alpha_on):
    torch.manual_seed(0)
    supernet = build_supernet(tiny_space(), BaseStrategy(prior=prior_with_alpha_on('skip_connect'), seed=0))
    model = supernet.training_module.model
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    result = probe_alpha_scales(supernet, peaks[1], peaks[2], steps=2)
    assert torch.equal(torch.get_rng_state(), rng)
    after = model.state_dict()
    for key, value in before.items():
        expected = value * result.scale if key.endswith('_arch_alpha') else value
        assert torch.equal(after[key], expected), key
    assert result.scale < 1.0  # the case above: something was scaled


def _adapt(prior, peaks, caplog, **adaptation):
    data = torch.utils.data.TensorDataset(peaks[1], peaks[2])
    strategy = BaseStrategy(prior=prior, seed=0, adaptation=AdaptationConfig(**adaptation) if adaptation else None)
    with caplog.at_level(logging.INFO, logger='nni_base'):
        run(tiny_space(), classification(data, batch_size=32, max_epochs=1, limit_train_batches=1), strategy)
    return [r.getMessage() for r in caplog.records if 'Prior trust' in r.getMessage()]


def test_through_nas_experiment_the_probe_runs_from_a_prior_when_asked(peaks, prior_with_alpha_on, caplog):
    prior = prior_with_alpha_on('skip_connect')
    assert len(_adapt(prior, peaks, caplog, prior_trust_steps=2)) == 1
    caplog.clear()
    assert _adapt(prior, peaks, caplog) == []  # off by default
    caplog.clear()
    assert _adapt(prior, peaks, caplog, prior_trust_steps=2, prior_alpha_scale=0.5) == []
