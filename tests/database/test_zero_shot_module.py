"""Zero-shot from a database through NasExperiment + NNI's Classification: no prior, nothing trained, the exports
are the database model's ranking for the images read, and a space of other cells is refused."""

from __future__ import annotations

import pytest
from torch.utils.data import TensorDataset

from nni_base import BaseStrategy, DartsTaskSpace, DatabaseZeroShotStrategy, SupernetConfig, ZeroShotConfig
from nni_base.database.build import build_database
from nni_base.database.ground_truth import DatabaseSpec, load_database
from nni_base.database.zero_shot_models import DatabaseZeroShot
from tests.helpers import classification, digits_tasks, episodic_evaluator, run, tiny_space

SPEC = DatabaseSpec(families=('peaks', 'texture'), train_tasks=1, test_tasks=1, architectures=6, seeds=(0,), steps=1)


@pytest.fixture(scope='module')
def database(tmp_path_factory):
    path = tmp_path_factory.mktemp('zero_shot_db') / 'db.json'
    return build_database(SPEC, path, progress=False), path


def test_database_zero_shot_through_nas_experiment(database):
    db, path = database
    task = db.task(1)
    x, y = task.query_x, task.query_y  # images the database never trained on
    strategy = BaseStrategy(zero_shot=ZeroShotConfig(database=str(path), images=40))
    space = DartsTaskSpace(width=6, num_cells=4, num_classes=5)  # other width and depth than the database's
    exp = run(space, classification(TensorDataset(x, y), max_epochs=3), strategy)
    module = strategy.oneshot_module
    assert module.images_read == 40 and module.trainer.global_step == 0
    stored = load_database(path)  # what the strategy reads (accuracies as the file rounds them)
    expected = DatabaseZeroShot.fit(stored, range(len(db.tasks))).top_k(x[:40], y[:40], k=3)
    assert exp.export_top_models(top_k=3, formatter='dict') == [s for s, _ in expected]
    assert strategy.export_sample() == expected[0][0]
    probs = strategy.export_probs()
    assert abs(sum(probs['normal/2_0'].values()) - 1) < 1e-5  # α holds the generator's per-edge distribution
    space.freeze(expected[0][0])  # the cell is a sample of the user's space


def test_database_zero_shot_refuses_other_cells_and_names_the_option(database):
    _, path = database
    task = database[0].task(0)
    strategy = BaseStrategy(
        zero_shot=ZeroShotConfig(database=str(path)), supernet=SupernetConfig(parameterization='slot')
    )
    with pytest.raises(ValueError, match='ranks DARTS cells of 4 nodes'):
        run(
            DartsTaskSpace(width=4, num_cells=3, num_classes=5),
            classification(TensorDataset(task.support_x, task.support_y)),
            strategy,
        )
    with pytest.raises(ValueError, match=r"zero_shot=ZeroShotConfig\(database='shipped'\)"):
        BaseStrategy(zero_shot=True)
    with pytest.raises(ValueError, match="zero_shot_database must be a database file or 'shipped'"):
        BaseStrategy(zero_shot=ZeroShotConfig(database=3))


def test_the_database_zero_shot_strategy_is_that_mode_and_refuses_meta_training(database):
    db, path = database
    task = db.task(1)
    data = TensorDataset(task.query_x, task.query_y)
    mode = DatabaseZeroShotStrategy(path, images=40)
    assert mode.config.zero_shot and mode.config.zero_shot_database == str(path) and mode.config.zero_shot_images == 40
    exported = run(DartsTaskSpace(width=6, num_cells=4, num_classes=5), classification(data), mode)
    plain = BaseStrategy(zero_shot=ZeroShotConfig(database=str(path), images=40))
    expected = run(DartsTaskSpace(width=6, num_cells=4, num_classes=5), classification(data), plain)
    assert exported.export_top_models(top_k=2, formatter='dict') == expected.export_top_models(
        top_k=2, formatter='dict'
    )
    with pytest.raises(TypeError, match=r'DatabaseZeroShotStrategy generates one dataset.*not EpisodicClassification'):
        run(tiny_space(), episodic_evaluator(digits_tasks()[0]), DatabaseZeroShotStrategy(path))


def test_a_dataset_smaller_than_the_support_set_still_reports_to_nni(database):
    """The data run out before ZeroShotConfig.images: zero-shot conditions on what it read and NNI's final report
    finds the training metrics it reads (no validation ran)."""
    db, path = database
    task = db.task(1)
    strategy = BaseStrategy(zero_shot=ZeroShotConfig(database=str(path)))  # 250 images wanted, 25 given
    exp = run(
        DartsTaskSpace(width=4, num_cells=3, num_classes=5),
        classification(TensorDataset(task.query_x[:25], task.query_y[:25]), max_epochs=1),
        strategy,
    )
    assert strategy.oneshot_module.images_read == 25
    assert 'train_acc' in strategy.oneshot_module.trainer.callback_metrics
    assert len(exp.export_top_models(top_k=2, formatter='dict')) == 2
