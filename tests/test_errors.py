"""Bad input is refused early with a message that names the problem and the fix."""

import pytest
import torch
import torch.nn as nn
from nni.nas.evaluator import FunctionalEvaluator
from nni.nas.nn.pytorch import ModelSpace

from nni_base import BaseStrategy, MetaTrainingConfig, MetaTrainingDiverged, TaskDistribution, load_prior
from nni_base.data import digits_splits
from tests.helpers import digits_tasks, episodic_evaluator, run, tiny_space


class NoChoices(ModelSpace):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(x)


def test_space_without_choices():
    train, _ = digits_tasks()
    with pytest.raises(ValueError, match='has no choices: there is nothing to search'):
        run(NoChoices(), episodic_evaluator(train), BaseStrategy())


def test_evaluator_that_is_not_lightning():
    with pytest.raises(TypeError, match='needs a Lightning evaluator'):
        BaseStrategy().mutate_evaluator(FunctionalEvaluator(lambda model: None))


def test_alpha_averaging_needs_an_episodic_evaluator():
    from nni.nas.evaluator.pytorch import Classification

    with pytest.raises(TypeError, match='EpisodicClassification'):
        BaseStrategy(meta_training=MetaTrainingConfig(average_alpha_tasks=2)).mutate_evaluator(
            Classification(num_classes=5)
        )


def test_more_ways_than_classes_and_too_few_samples():
    test_split = digits_splits()['test']  # 8 classes
    with pytest.raises(ValueError, match='ways'):
        TaskDistribution(test_split, ways=10, shots=1, queries=1)
    with pytest.raises(ValueError, match='shots'):
        TaskDistribution(test_split, ways=5, shots=150, queries=100)


def test_bad_hyper_parameters():
    with pytest.raises(ValueError, match='inner_steps'):
        BaseStrategy(inner_steps=0)
    with pytest.raises(ValueError, match='outer_lr'):
        BaseStrategy(outer_lr=float('nan'))


def test_divergence_names_the_step_and_keeps_the_last_good_prior(tmp_path):
    train, _ = digits_tasks()
    path = tmp_path / 'prior.pt'
    run(tiny_space(), episodic_evaluator(train, steps_per_epoch=1), BaseStrategy(inner_steps=1, save_prior_to=path))
    good = path.read_bytes()
    strategy = BaseStrategy(prior=path, inner_steps=2, inner_lr=1e30, save_prior_to=path)
    with pytest.raises(MetaTrainingDiverged, match=r'meta-step 0 .*inner step'):
        run(tiny_space(), episodic_evaluator(train, steps_per_epoch=2), strategy)
    assert path.read_bytes() == good
    assert torch.isfinite(load_prior(path)['alpha']['normal']).all()


def test_episodic_evaluator_with_nni_darts_says_what_to_use():
    from nni.nas.oneshot.pytorch.strategy import DARTS as NniDarts

    train, test = digits_tasks()
    with pytest.raises(TypeError, match='only nni_base.BaseStrategy can train'):
        run(tiny_space(), episodic_evaluator(train, test, steps_per_epoch=1), NniDarts())


@pytest.mark.parametrize(
    ('kwargs', 'message'),
    [
        (
            {'width': 0},
            r'width must be at least 1 .*got width=0: pass a positive width such as DartsTaskSpace\(width=16\)',
        ),
        ({'width': -4}, r'width must be at least 1 .*got width=-4'),
        (
            {'num_cells': 0},
            r'num_cells must be at least 3 .*got num_cells=0: pass e\.g\. DartsTaskSpace\(num_cells=3\)',
        ),
        ({'num_cells': 2}, r'num_cells must be at least 3 \(one cell per stage'),
    ],
)
def test_darts_task_space_sizes(kwargs, message):
    from nni_base.space.darts import DartsTaskSpace

    with pytest.raises(ValueError, match=message):
        DartsTaskSpace(num_classes=5, **kwargs)


def test_darts_task_space_smallest_sizes_build():
    from nni_base.space.darts import DartsTaskSpace

    assert DartsTaskSpace(width=1, num_cells=3, num_classes=5).num_cells == 3
