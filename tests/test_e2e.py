"""End to end on CPU: meta-train on digits tasks -> prior -> adapt to held-out classes -> export -> freeze."""

import nni
import pytest
import torch
from nni.nas.evaluator.pytorch import Classification
from nni.nas.hub.pytorch import DARTS
from nni.nas.space import model_context
from torch.utils.data import DataLoader

from nni_base import BaseStrategy, DartsTaskSpace, load_prior
from nni_base.api import adaptation_accuracy, build_supernet, sample_tasks
from tests.helpers import WAYS, digits_tasks, run

pytestmark = pytest.mark.e2e


def space():
    return DartsTaskSpace(width=8, num_cells=3, num_classes=WAYS)


@pytest.fixture(scope='module')
def meta_trained(tmp_path_factory):
    out = tmp_path_factory.mktemp('meta')
    train, test = digits_tasks()
    strategy = BaseStrategy(inner_steps=5, save_prior_to=out / 'prior.pt', seed=0)
    exp = run(space(), _with_tasks_per_step(train, test, 4), strategy)
    return out / 'prior.pt', strategy, exp, test


def _with_tasks_per_step(train, test, k):
    from nni_base import EpisodicClassification
    return EpisodicClassification(train, test, tasks_per_step=k, steps_per_epoch=10, val_episodes=4, max_epochs=3,
                                  logger=False, enable_progress_bar=False, enable_checkpointing=False,
                                  enable_model_summary=False, seed=0)


def test_meta_training_writes_a_prior_and_logs_metrics(meta_trained):
    path, strategy, exp, _ = meta_trained
    prior = load_prior(path)
    assert prior['tasks']['ways'] == WAYS and prior['meta']['steps'] == 30
    assert set(prior['alpha']) == {'normal', 'reduce'}
    metrics = strategy.oneshot_module.last_metrics
    assert set(metrics) >= {'outer_loss', 'query_acc_before', 'query_acc_after', 'temperature'}
    callback_metrics = strategy.oneshot_module.trainer.callback_metrics
    assert 'val_acc' in callback_metrics and 'val_acc_before' in callback_metrics


def test_prior_beats_random_initialisation_on_heldout_tasks(meta_trained):
    path, strategy, _, test = meta_trained
    tasks = sample_tasks(test, 8, seed=1234)
    steps = strategy.config.inner_steps
    torch.manual_seed(0)
    from_prior = adaptation_accuracy(build_supernet(space(), BaseStrategy(prior=path, inner_steps=steps)), tasks, steps)
    torch.manual_seed(0)
    from_scratch = adaptation_accuracy(build_supernet(space(), BaseStrategy(inner_steps=steps)), tasks, steps)
    assert from_prior['after'] > from_scratch['after'] + 0.05, (from_prior, from_scratch)
    assert from_prior['after'] > from_prior['before']


def test_adapt_prior_to_heldout_dataset_and_export(meta_trained):
    path, _, _, test = meta_trained
    data = test.dataset.subset_classes(list(range(WAYS)))
    generator = torch.Generator().manual_seed(0)
    train_set, val_set = torch.utils.data.random_split(data, [0.8, 0.2], generator=generator)
    train_loader = nni.trace(DataLoader)(train_set, batch_size=32, shuffle=True)
    val_loader = nni.trace(DataLoader)(val_set, batch_size=64)
    evaluator = Classification(learning_rate=0.01, optimizer=torch.optim.SGD, num_classes=WAYS,
                               train_dataloaders=train_loader, val_dataloaders=val_loader, max_epochs=1,
                               limit_train_batches=5, logger=False, enable_progress_bar=False,
                               enable_checkpointing=False, enable_model_summary=False)
    strategy = BaseStrategy(prior=path, arc_learning_rate=0.05, seed=0)
    exp = run(space(), evaluator, strategy)
    sample = exp.export_top_models(formatter='dict')[0]
    assert sample == strategy.export_sample()
    assert sorted(k for k in sample if k.startswith('normal/op_')) == [f'normal/op_{i}_{k}' for i in range(2, 6)
                                                                      for k in range(2)]
    probs = strategy.export_probs()
    assert abs(sum(probs['normal/2_0'].values()) - 1) < 1e-5 and 'none' in probs['normal/2_0']
    assert 0.0 <= float(strategy.oneshot_module.trainer.callback_metrics['val_acc']) <= 1.0

    # The sample is a standard NNI DARTS sample: full size, and retrain mode with auxiliary head.
    full = DARTS(width=36, num_cells=20).freeze(sample)
    assert sum(p.numel() for p in full.parameters()) > 1_000_000
    with model_context(sample):
        retrain = DARTS(width=16, num_cells=8, auxiliary_loss=True, drop_path_prob=0.2)
    retrain.train()
    logits, aux = retrain(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 10) and aux.shape == (2, 10)
