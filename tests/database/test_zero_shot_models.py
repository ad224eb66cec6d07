"""Zero-shot from a database: the predictor ranks a planted target, the generator recovers planted per-edge winners,
leave-one-family-out never leaks, and the task kernel finds a task's own family."""

from __future__ import annotations

import random

import numpy as np
import pytest
from scipy import stats

from nni_base.database.ground_truth import DatabaseSpec, empty_database
from nni_base.database.zero_shot_models import DatabaseZeroShot, edge_features, leave_one_family_out
from nni_base.search.top_k import darts_cell_shapes, random_architecture

SHAPES = darts_cell_shapes()
OPS = SHAPES[0].op_names


@pytest.fixture(scope='module')
def synthetic():
    """A database whose accuracies follow planted rules (nothing trained): 3 families x 3 tasks x 300 cells."""
    spec = DatabaseSpec(families=('peaks', 'texture', 'digits'), train_tasks=2, test_tasks=1, architectures=300)
    return empty_database(spec)


def planted_counts(sample) -> float:
    """Monotone in the normal cell's max-pool count, then its sep_conv_3x3 count."""
    counts, _ = edge_features(sample, SHAPES)
    return 0.3 + 0.05 * counts[OPS.index('max_pool_3x3')] + 0.02 * counts[OPS.index('sep_conv_3x3')]


def test_predictor_ranks_a_planted_monotone_target_on_unseen_architectures(synthetic):
    db = synthetic
    rng = np.random.default_rng(0)
    for a, sample in enumerate(db.architectures):
        db.accuracy[:, a, 0] = planted_counts(sample) + rng.normal(0, 0.01, len(db.tasks))
    model = DatabaseZeroShot.fit(db, db.task_indices(split='train'))
    unseen = [random_architecture(SHAPES, random.Random(1000 + i)) for i in range(100)]
    task = db.task(db.task_indices(split='test')[0])
    predicted = model.predict(task.support_x, task.support_y, unseen)
    assert stats.spearmanr(predicted, [planted_counts(s) for s in unseen]).statistic > 0.9
    top, _ = model.top_k(task.support_x, task.support_y, k=1, generator='regression')[0]
    assert edge_features(top, SHAPES)[0][OPS.index('max_pool_3x3')] == 8  # every normal edge max-pool


def test_generator_recovers_planted_per_edge_winners(synthetic):
    db = synthetic
    rng = random.Random(0)
    winners = {label: [rng.randrange(len(OPS)) for _ in range(14)] for label in ('normal', 'reduce')}
    for a, sample in enumerate(db.architectures):
        _, edges = edge_features(sample, SHAPES)
        edges = edges.reshape(2, 14, len(OPS))
        hits = sum(edges[c, e, winners[label][e]] for c, label in enumerate(('normal', 'reduce')) for e in range(14))
        db.accuracy[:, a, 0] = 0.2 + 0.05 * hits
    model = DatabaseZeroShot.fit(db, db.task_indices(split='train'))
    task = db.task(0)
    for generator, bar in (('regression', 1.0), ('frequency', 0.5)):
        alphas = model.alphas(task.support_x, task.support_y, generator)
        for label in ('normal', 'reduce'):
            recovered = alphas[label][:, :-1].argmax(1).tolist()
            assert np.mean(np.equal(recovered, winners[label])) >= bar, (generator, label, recovered, winners[label])
    top, _ = model.top_k(task.support_x, task.support_y, k=1, generator='regression')[0]
    _, edges = edge_features(top, SHAPES)
    edges = edges.reshape(2, 14, len(OPS))
    kept = edges.sum()
    hit = sum(edges[c, e, winners[label][e]] for c, label in enumerate(('normal', 'reduce')) for e in range(14))
    assert hit == kept == 16  # every kept edge runs its planted winner


@pytest.mark.parametrize('family', ['peaks', 'texture', 'digits'])
def test_leave_one_family_out_never_leaks_the_family(synthetic, family):
    db = synthetic
    fit, evaluate = leave_one_family_out(db, family)
    assert not set(fit) & set(evaluate) and sorted(fit + evaluate) == list(range(len(db.tasks)))
    assert all(db.tasks[t].family != family for t in fit)
    assert all(db.tasks[t].family == family for t in evaluate)
    db.accuracy[..., 0] = np.random.default_rng(0).uniform(0.2, 0.8, db.accuracy.shape[:2])
    assert all(db.tasks[t].family != family for t in DatabaseZeroShot.fit(db, fit).fit_tasks)


def test_the_kernel_weighs_a_held_out_task_s_own_family_most(synthetic):
    db = synthetic
    db.accuracy[..., 0] = np.random.default_rng(0).uniform(0.2, 0.8, db.accuracy.shape[:2])
    fit = db.task_indices(split='train')
    model = DatabaseZeroShot.fit(db, fit)
    for t in db.task_indices(split='test'):
        task = db.task(t)
        w = model.kernel(task.support_x, task.support_y)
        same = sum(wi for wi, j in zip(w, fit) if db.tasks[j].family == db.tasks[t].family)
        assert same > 0.5, (db.tasks[t].family, w)


def test_fit_refuses_too_little():
    db = empty_database(DatabaseSpec(families=('peaks',), train_tasks=2, test_tasks=0, architectures=3))
    with pytest.raises(ValueError, match='at least two database tasks'):
        DatabaseZeroShot.fit(db, [0])
    with pytest.raises(ValueError, match='fewer than 4 architectures measured'):
        DatabaseZeroShot.fit(db, [0, 1])


@pytest.mark.parametrize('family', ['peaks', 'digits'])
def test_a_lofo_fit_reads_nothing_of_the_left_out_family(synthetic, family):
    # Fails if any accuracy of the left-out family reaches the fit: its entries are rewritten between two fits
    # (to NaN, which would also poison a mean) and everything the model predicts must stay bit for bit the same.
    db = synthetic
    db.accuracy[..., 0] = np.random.default_rng(1).uniform(0.2, 0.8, db.accuracy.shape[:2])
    fit, evaluate = leave_one_family_out(db, family)
    task = db.task(evaluate[0])
    probe = [random_architecture(SHAPES, random.Random(500 + i)) for i in range(20)]
    first = DatabaseZeroShot.fit(db, fit)
    before = first.predict(task.support_x, task.support_y, probe), first.alphas(task.support_x, task.support_y)
    saved = db.accuracy[evaluate].copy()
    db.accuracy[evaluate] = np.nan
    try:
        second = DatabaseZeroShot.fit(db, fit)
        after = second.predict(task.support_x, task.support_y, probe), second.alphas(task.support_x, task.support_y)
    finally:
        db.accuracy[evaluate] = saved
    np.testing.assert_array_equal(before[0], after[0])
    for label in before[1]:
        np.testing.assert_array_equal(before[1][label], after[1][label])
