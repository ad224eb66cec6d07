"""A conditioned prior's predictor refitted on architectures trained from scratch (MetaD2A's database)."""

from __future__ import annotations

import json
import random

import pytest
import torch
from scipy import stats

import nni_base.database.trained_predictor as trained_predictor
from nni_base import BaseStrategy, load_prior
from nni_base.api import fit_trained_predictor, sample_tasks, zero_shot
from nni_base.database import arch_features
from nni_base.database.conditioned_zero_shot import conditioner_of
from nni_base.database.trained_predictor import TrainedRecord, fit_predictor
from nni_base.search.top_k import architecture_log_prob, random_architecture, top_k_architectures
from tests.helpers import digits_tasks, episodic_evaluator, run, tiny_space


@pytest.fixture(scope='module')
def prior_path(tmp_path_factory):
    """Two conditioned Reptile meta-steps on digits."""
    path = tmp_path_factory.mktemp('trained_predictor') / 'prior.pt'
    strategy = BaseStrategy(inner_steps=1, conditioning=True, save_prior_to=path)
    run(tiny_space(), episodic_evaluator(digits_tasks()[0], steps_per_epoch=2), strategy)
    return path


def _skip_count(sample: dict) -> int:
    return sum(v == 'skip_connect' for k, v in sample.items() if '/op_' in k)


def test_fitted_predictor_ranks_unseen_architectures_by_what_the_records_measured(prior_path):
    """Records whose accuracy grows with the number of skip connections (100 architectures x 3 tasks): the
    refitted predictor ranks 30 unseen architectures in that order, the conditioned α (encoder, generator) is
    untouched, and zero-shot uses it."""
    prior = load_prior(prior_path)
    shapes, choices = conditioner_of(prior).shapes, conditioner_of(prior).choices
    rng = random.Random(0)
    archs = [random_architecture(shapes, rng, choices) for _ in range(130)]
    tasks = sample_tasks(digits_tasks()[0], 3, seed=0)
    records = [
        TrainedRecord(t, a, 0.3 + 0.1 * t + 0.04 * _skip_count(s)) for t in range(3) for a, s in enumerate(archs[:100])
    ]
    fitted = fit_predictor(prior, tasks, archs[:100], records)

    conditioner = conditioner_of(fitted)
    assert conditioner.predictor_labels == 'trained' and conditioner.predictor_records == 300
    assert conditioner_of(prior).predictor_labels == 'weight-sharing'  # the input prior is not modified
    for part in ('encoder', 'generator'):
        for k, v in prior['conditioning'][part].items():
            assert torch.equal(v, fitted['conditioning'][part][k])
    held_out = sample_tasks(digits_tasks()[1], 1, seed=3)[0]
    encoding = conditioner.encode(held_out.support_x, held_out.support_y)
    with torch.no_grad():
        predicted = conditioner.predictor(
            encoding, torch.stack([arch_features(s, shapes, choices) for s in archs[100:]])
        )
    assert stats.spearmanr(predicted.tolist(), [_skip_count(s) for s in archs[100:]]).statistic > 0.7
    result = zero_shot(fitted, held_out.support_x, held_out.support_y, top_k=3)
    assert result.ranked_by == 'predictor' and result.scores == sorted(result.scores, reverse=True)
    # a larger pool: the predictor's best among the conditioned α's 10 most probable architectures
    pooled = zero_shot(fitted, held_out.support_x, held_out.support_y, top_k=1, pool=10)
    candidates = [s for s, _ in top_k_architectures(shapes, result.alpha, 10, choices)]
    scores = conditioner.scorer(encoding)(candidates)
    assert pooled.samples[0] == candidates[scores.index(max(scores))]
    with pytest.raises(ValueError, match='pool must be an integer >= 1'):
        zero_shot(fitted, held_out.support_x, held_out.support_y, top_k=1, pool=0)
    # random candidates: the predictor's best of 40 random architectures (a fixed seed draws the same pool)
    drawn = zero_shot(fitted, held_out.support_x, held_out.support_y, top_k=2, pool=20, candidates='random', seed=3)
    rng = random.Random(3)
    pool = [random_architecture(shapes, rng, choices) for _ in range(40)]
    pool_scores = conditioner.scorer(encoding)(pool)
    assert drawn.samples[0] == pool[pool_scores.index(max(pool_scores))]
    assert drawn.log_probs[0] == pytest.approx(architecture_log_prob(shapes, result.alpha, drawn.samples[0]))
    best = {
        c: zero_shot(fitted, held_out.support_x, held_out.support_y, top_k=1, pool=20, candidates=c, seed=3)
        for c in ('alpha', 'random', 'both')
    }
    assert best['both'].scores[0] == pytest.approx(max(best['alpha'].scores[0], best['random'].scores[0]))
    with pytest.raises(ValueError, match="candidates must be 'alpha', 'random' or 'both'"):
        zero_shot(fitted, held_out.support_x, held_out.support_y, candidates='generated')


def test_fit_trained_predictor_trains_writes_and_resumes(prior_path, tmp_path, monkeypatch):
    tasks = sample_tasks(digits_tasks()[0], 2, seed=1)
    database, output = tmp_path / 'database.json', tmp_path / 'fitted.pt'
    kwargs = dict(architectures=3, train_steps=2, fit_steps=20, seed=4, database=database, progress=False)
    fitted = fit_trained_predictor(prior_path, tiny_space(), tasks, output, **kwargs)
    stored = json.loads(database.read_text())
    assert len(stored['records']) == 6 and len(stored['architectures']) == 3
    assert all(0.0 <= r['accuracy'] <= 1.0 for r in stored['records'])
    loaded = load_prior(output)  # weights_only
    assert loaded['conditioning']['predictor_labels'] == 'trained'
    assert loaded['meta']['trained_predictor']['records'] == 6
    for k, v in fitted['conditioning']['predictor'].items():
        assert torch.equal(v, loaded['conditioning']['predictor'][k])

    # Interrupted after 4 of 6 trainings: the rerun trains only the 2 missing, and fits the same predictor.
    stored['records'] = stored['records'][:4]
    database.write_text(json.dumps(stored))
    calls = []
    original = trained_predictor.train_on_task
    monkeypatch.setattr(trained_predictor, 'train_on_task', lambda *a, **k: calls.append(1) or original(*a, **k))
    resumed = fit_trained_predictor(prior_path, tiny_space(), tasks, tmp_path / 'resumed.pt', **kwargs)
    assert len(calls) == 2
    for k, v in fitted['conditioning']['predictor'].items():
        assert torch.equal(v, resumed['conditioning']['predictor'][k])

    with pytest.raises(ValueError, match='database of other tasks, architectures, seed or train_steps'):
        fit_trained_predictor(prior_path, tiny_space(), tasks, output, **{**kwargs, 'seed': 5})


def test_bad_input_is_refused_with_the_fix(prior_path, tmp_path):
    tasks = sample_tasks(digits_tasks()[0], 2, seed=1)
    with pytest.raises(ValueError, match='architectures must be >= 2'):
        fit_trained_predictor(prior_path, tiny_space(), tasks, tmp_path / 'x.pt', architectures=1)
    prior = load_prior(prior_path)
    conditioner = conditioner_of(prior)
    archs = [random_architecture(conditioner.shapes, random.Random(0), conditioner.choices) for _ in range(2)]
    with pytest.raises(ValueError, match='at least two architectures trained on one task'):
        fit_predictor(prior, tasks, archs, [TrainedRecord(0, 0, 0.5), TrainedRecord(1, 1, 0.4)])
    with pytest.raises(ValueError, match='points outside'):
        fit_predictor(prior, tasks, archs, [TrainedRecord(0, 0, 0.5), TrainedRecord(0, 2, 0.4)])
    with pytest.raises(ValueError, match='non-finite accuracy'):
        fit_predictor(prior, tasks, archs, [TrainedRecord(0, 0, 0.5), TrainedRecord(0, 1, float('nan'))])
    plain = tmp_path / 'plain.pt'
    run(
        tiny_space(),
        episodic_evaluator(digits_tasks()[0], steps_per_epoch=1),
        BaseStrategy(inner_steps=1, save_prior_to=plain),
    )
    with pytest.raises(ValueError, match='no dataset encoder'):
        fit_trained_predictor(plain, tiny_space(), tasks, tmp_path / 'x.pt')
    assert not (tmp_path / 'x.pt').exists()
