"""A prior adapts to a dataset with any class count: the head is rebuilt, everything else comes from the prior."""

import logging

import nni
import pytest
import torch
from nni.nas.evaluator.pytorch import Classification
from nni.nas.experiment import NasExperiment
from torch.utils.data import DataLoader, TensorDataset

from nni_base import AdaptationConfig, BaseStrategy, TaskAdapter
from nni_base.api import adaptation_accuracy, build_supernet
from nni_base.prior import build_prior, head_mismatch, save_prior
from nni_base.search.head import initialise_head
from nni_base.tasks import Task
from tests.helpers import run as run_and_stop  # stops the experiment, even when it raises
from tests.helpers import tiny_space


@pytest.fixture()
def prior_path(tmp_path):
    torch.manual_seed(0)
    strategy = BaseStrategy()
    net = build_supernet(tiny_space(5), strategy)
    with torch.no_grad():
        net.alphas()['normal'][0, 1] = 4.0
    data = build_prior(net.training_module.model, net.alphas(), config=strategy.config.to_dict(), tasks={'ways': 5})
    return save_prior(data, tmp_path / 'prior.pt')


def _data(classes: int, n: int = 48):
    g = torch.Generator().manual_seed(classes)
    return torch.randn(n, 3, 8, 8, generator=g), torch.arange(n) % classes


def _classification(x, y, classes, **kwargs):
    loader = nni.trace(DataLoader)(TensorDataset(x, y), batch_size=16)
    return Classification(
        num_classes=classes,
        train_dataloaders=loader,
        val_dataloaders=loader,
        max_epochs=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        logger=False,
        enable_checkpointing=False,
        **kwargs,
    )


@pytest.mark.parametrize('classes', [3, 10, 37])
def test_nas_experiment_adapts_a_5_way_prior_to_another_class_count(prior_path, classes, caplog):
    x, y = _data(classes)
    strategy = BaseStrategy(prior=prior_path)  # head_init='zero'
    with caplog.at_level(logging.INFO, logger='nni_base'):
        exp = NasExperiment(tiny_space(classes), _classification(x, y, classes), strategy)
        exp.run()
    sample = exp.export_top_models(formatter='dict')[0]
    exp.stop()
    assert strategy.rebuilt_heads == ['classifier']
    assert any(f'classifier ({classes} classes), initialised: zero' in r.getMessage() for r in caplog.records)
    net = tiny_space(classes).freeze(sample)
    assert net(x[:2]).shape == (2, classes)


def test_head_rows_are_the_class_prototypes(prior_path):
    supernet = build_supernet(tiny_space(4), BaseStrategy(prior=prior_path))
    x, y = _data(4, 16)
    initialise_head(supernet, ['classifier'], x, y, 'class_means')
    features = []
    head = supernet.training_module.model.classifier
    hook = head.register_forward_hook(lambda _m, i, _o: features.append(i[0]))
    from nni_base.space.gumbel_cell import derived_architecture

    with torch.no_grad(), derived_architecture(supernet.architecture_modules()):
        supernet.training_module.model.train()(x)
    hook.remove()
    means = torch.stack([features[0][y == k].mean(0) for k in range(4)])
    torch.testing.assert_close(head.weight, 2 * means, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(head.bias, -(means**2).sum(1), rtol=1e-4, atol=1e-5)


def test_zero_and_random_head_inits(prior_path):
    supernet = build_supernet(tiny_space(4), BaseStrategy(prior=prior_path))
    initialise_head(supernet, ['classifier'], None, None, 'zero')
    assert not supernet.training_module.model.classifier.weight.any()
    initialise_head(supernet, ['classifier'], None, None, 'random')
    assert supernet.training_module.model.classifier.weight.abs().sum() > 0
    with pytest.raises(ValueError, match="head_init must be one of 'zero', 'class_means', 'random'"):
        initialise_head(supernet, ['classifier'], None, None, 'prototypes')


def test_only_the_head_may_differ(prior_path):
    supernet = build_supernet(tiny_space(7), BaseStrategy(prior=prior_path))
    saved = torch.load(prior_path, weights_only=True)['state_dict']
    assert head_mismatch(supernet.training_module.model, saved) == ['classifier']
    assert head_mismatch(build_supernet(tiny_space(5), BaseStrategy()).training_module.model, saved) == []


def test_task_adapter_and_adaptation_accuracy_at_another_class_count(prior_path):
    x, y = _data(3, 30)
    supernet = build_supernet(tiny_space(3), BaseStrategy(prior=prior_path))
    head = supernet.training_module.model.classifier
    adapter = TaskAdapter(supernet, search_steps=1)
    adapter.step(x, y)  # the first step initialises the rebuilt head from its batch, then trains
    assert supernet.rebuilt_heads == []
    adapter.step(x, y)
    assert adapter.frozen and head.out_features == 3
    result = adaptation_accuracy(
        build_supernet(tiny_space(3), BaseStrategy(prior=prior_path)), [Task(x, y, x, y)] * 2, steps=2
    )
    assert result['per_task_before'][0] == result['per_task_before'][1]  # every task starts from the same prior


def test_meta_training_refuses_a_head_that_is_not_ways_wide():
    from nni_base import EpisodicClassification
    from tests.helpers import digits_tasks

    train, val = digits_tasks()
    evaluator = EpisodicClassification(train, val, max_epochs=1, logger=False, enable_progress_bar=False)
    with pytest.raises(ValueError, match=r'5-way tasks needs a 5-output classifier.*has 7.*num_classes=5'):
        run_and_stop(tiny_space(7), evaluator, BaseStrategy())


def test_class_means_through_nas_experiment_read_the_first_batches(prior_path, caplog):
    x, y = _data(4)
    with caplog.at_level(logging.INFO, logger='nni_base'):
        exp = NasExperiment(
            tiny_space(4),
            _classification(x, y, 4),
            BaseStrategy(prior=prior_path, adaptation=AdaptationConfig(head_init='class_means')),
        )
        exp.run()
    exp.stop()
    assert any(
        'classifier (4 classes), initialised: class-mean features of 48 images' in r.getMessage()
        for r in caplog.records
    )
