"""The ground-truth architecture database: its file (schema, checksum, refusals), its build (resumable, the same
in one process or several), and the scores it gives a pick."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nni_base.database.build import build_database, journal_path, task_order
from nni_base.database.ground_truth import (
    DEFAULT_DATABASE,
    ArchitectureDatabase,
    DatabaseError,
    DatabaseSpec,
    _checksum,
    empty_database,
    load_database,
    save_database,
)

TINY = DatabaseSpec(families=('peaks', 'digits'), train_tasks=1, test_tasks=1, architectures=2, seeds=(0,), steps=1)


@pytest.fixture(scope='module')
def tiny(tmp_path_factory) -> tuple[ArchitectureDatabase, object]:
    path = tmp_path_factory.mktemp('db') / 'db.json'
    return build_database(TINY, path, progress=False), path


def test_build_fills_every_pair_and_round_trips(tiny):
    db, path = tiny
    assert db.complete and db.accuracy.shape == (4, 2, 1)
    assert ((db.accuracy >= 0) & (db.accuracy <= 1)).all()
    loaded = load_database(path)
    assert loaded.spec == TINY and loaded.architectures == db.architectures
    np.testing.assert_allclose(loaded.accuracy, db.accuracy, atol=1e-6)
    assert [(e.family, e.split) for e in loaded.tasks] == [
        ('peaks', 'train'),
        ('peaks', 'test'),
        ('digits', 'train'),
        ('digits', 'test'),
    ]
    assert loaded.meta['measured'] == 4 * 2 and loaded.meta['cpu_seconds'] >= 0


def test_a_build_stores_positive_costs_per_architecture_and_writes_version_2(tiny):
    db, path = tiny
    data = json.loads(path.read_text())
    assert data['version'] == 2 and db.costs['machine']['cpus'] >= 1
    for column in ('params', 'macs', 'latency_ms'):
        assert len(db.costs[column]) == TINY.architectures and min(db.costs[column]) > 0
    net = TINY.space().freeze(db.architectures[0])
    assert db.costs['params'][0] == sum(p.numel() for p in net.parameters())


def test_a_version_1_file_keeps_loading_without_costs(tiny, tmp_path):
    path = tmp_path / 'v1.json'
    v1 = load_database(tiny[1])
    v1.costs = None
    save_database(v1, path)
    assert json.loads(path.read_text())['version'] == 1 and 'costs' not in json.loads(path.read_text())
    loaded = load_database(path)
    assert loaded.costs is None
    np.testing.assert_allclose(loaded.accuracy, tiny[0].accuracy, atol=1e-6)


def test_build_in_pieces_and_in_two_processes_equals_one_build(tiny, tmp_path):
    db, _ = tiny
    pieces = tmp_path / 'pieces.json'
    first = build_database(TINY, pieces, max_trainings=3, progress=False)
    assert np.isnan(first.accuracy).sum() == 8 - 3
    resumed = build_database(TINY, pieces, progress=False)
    np.testing.assert_allclose(resumed.accuracy, db.accuracy, atol=1e-6)
    parallel = build_database(TINY, tmp_path / 'parallel.json', workers=2, progress=False)
    np.testing.assert_allclose(parallel.accuracy, db.accuracy, atol=1e-6)


def test_resume_reads_the_journal_when_the_file_lags_behind(tiny, tmp_path):
    db, _ = tiny
    path = tmp_path / 'db.json'
    build_database(TINY, path, save_every=10**6, max_trainings=2, progress=False)
    # the file was saved at the end; rewind it to nothing measured, as if the build had died before any save
    save_database(empty_database(TINY), path)
    lines = journal_path(path).read_text().splitlines()
    journal_path(path).write_text('\n'.join(lines) + '\n{"t": 0, "a"')  # a line cut short by the crash
    resumed = build_database(TINY, path, max_trainings=0, progress=False)
    assert np.isfinite(resumed.accuracy).sum() == 2
    np.testing.assert_allclose(resumed.accuracy[np.isfinite(resumed.accuracy)], db.accuracy.ravel()[:2], atol=1e-6)


def test_a_journal_of_another_spec_is_refused(tiny, tmp_path):
    path = tmp_path / 'db.json'
    journal_path(path).write_text(json.dumps({'spec': DatabaseSpec(architectures=3).as_dict()}) + '\n')
    with pytest.raises(DatabaseError, match='another spec; delete it'):
        build_database(TINY, path, progress=False)


def _recheck(edit):
    """``edit``, then a checksum that matches again: damage the checksum cannot see, the validation must."""

    def edited(d):
        edit(d)
        d['checksum'] = _checksum({k: d[k] for k in ('spec', 'tasks', 'architectures', 'accuracy', 'costs')})

    return edited


def _rewrite(path, edit) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(
    'edit, message',
    [
        (lambda d: d['accuracy'][0][0].__setitem__(0, 0.123), 'does not match its checksum'),
        (lambda d: d.__setitem__('format', 'something-else'), 'not an nni-base architecture database'),
        (lambda d: d.__setitem__('version', 99), 'version 99; this nni-base reads versions 1, 2: upgrade'),
        (lambda d: d.pop('architectures'), 'lacks architectures'),
        (lambda d: d.pop('costs'), 'lacks costs'),
        (lambda d: d['costs']['macs'].pop(), 'does not match its checksum'),
        (_recheck(lambda d: d['costs']['macs'].pop()), "cost column 'macs' must hold one number per architecture"),
        (_recheck(lambda d: d['costs']['latency_ms'].__setitem__(0, float('nan'))), "'latency_ms' has non-positive"),
    ],
    ids=['edited', 'foreign', 'version', 'missing', 'no-costs', 'costs-edited', 'costs-short', 'costs-nan'],
)
def test_a_damaged_or_foreign_file_is_refused_with_what_is_wrong(tiny, tmp_path, edit, message):
    path = tmp_path / 'db.json'
    path.write_text(tiny[1].read_text())
    _rewrite(path, edit)
    with pytest.raises(DatabaseError, match=message):
        load_database(path)


def test_not_json_and_no_file_are_refused(tmp_path):
    (tmp_path / 'cut.json').write_text('{"format": "nni-base-arch')
    with pytest.raises(DatabaseError, match='not JSON'):
        load_database(tmp_path / 'cut.json')
    with pytest.raises(DatabaseError, match='python -m nni_base.cli.database --output'):
        load_database(tmp_path / 'none.json')


def test_a_task_that_regenerates_differently_is_refused(tiny, tmp_path):
    path = tmp_path / 'db.json'
    path.write_text(tiny[1].read_text())

    _rewrite(path, _recheck(lambda d: d['tasks'][1].__setitem__('fingerprint', '0' * 16)))
    db = load_database(path)
    with pytest.raises(DatabaseError, match='regenerates differently.*rebuild the database'):
        db.task(0)


def test_tasks_regenerate_and_splits_keep_their_classes(tiny):
    db, _ = tiny
    task = db.task(1)
    assert task.support_x.shape == (TINY.ways * TINY.shots, 3, TINY.image_size, TINY.image_size)
    assert db.task_indices('digits') == [2, 3] and db.task_indices(split='test') == [1, 3]


def test_score_is_the_share_beaten_and_the_gap_to_the_best():
    db = empty_database(DatabaseSpec(families=('peaks',), train_tasks=1, test_tasks=0, architectures=4, seeds=(0, 1)))
    db.accuracy[0] = [[0.2, 0.4], [0.5, 0.5], [0.6, 0.8], [0.9, np.nan]]  # means 0.3, 0.5, 0.7, 0.9
    assert db.score(0, 0.7) == pytest.approx({'accuracy': 0.7, 'percentile': 75.0, 'regret': 0.2})
    assert db.index_of(db.architectures[2]) == 2


def test_spec_errors_name_the_field():
    with pytest.raises(DatabaseError, match='families must be distinct, some of'):
        DatabaseSpec(families=('nope',))
    with pytest.raises(DatabaseError, match='exceed images_per_class'):
        DatabaseSpec(shots=80, queries=40)
    with pytest.raises(DatabaseError, match='unknown fields'):
        DatabaseSpec.from_dict({'families': ['peaks'], 'colour': 'red'})


@pytest.mark.skipif(not DEFAULT_DATABASE.is_file(), reason='the shipped database is not built yet')
def test_the_shipped_database_loads_and_is_of_the_promised_size():
    db = load_database()
    spec = db.spec
    assert len(spec.families) >= 3 and spec.train_tasks + spec.test_tasks >= 8
    assert spec.architectures >= 100 and len(spec.seeds) >= 2
    assert np.isfinite(db.accuracy).mean() == 1.0, 'the shipped database is incomplete'


def test_a_build_fills_every_family_s_first_tasks_before_any_family_s_later_ones():
    db = empty_database(DatabaseSpec(families=('peaks', 'texture', 'pairs'), train_tasks=3, test_tasks=2))
    order = task_order(db)
    assert sorted(order) == list(range(len(db.tasks)))
    first_round = [(db.tasks[t].family, db.tasks[t].split) for t in order[:6]]
    assert first_round == [(f, s) for s in ('train', 'test') for f in ('peaks', 'texture', 'pairs')]
