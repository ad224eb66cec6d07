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


def test_plain_search_on_nni_hub_darts_with_nni_classification():
    """Without a prior, BaseStrategy is a single-task Gumbel search usable like NNI's DARTS."""
    import nni
    from nni.nas.evaluator.pytorch import Classification
    from nni.nas.hub.pytorch import DARTS
    from torch.utils.data import DataLoader, random_split

    from nni_base.data import digits_splits

    # All ten digits, unrotated: the rotation-0 classes of both splits.
    splits = digits_splits(rotations=1, heldout_digits=(9,))
    test = splits['test']
    data = torch.utils.data.ConcatDataset([splits['train'], torch.utils.data.TensorDataset(test.images,
                                                                                            test.labels + 9)])
    train_set, val_set = random_split(data, [0.8, 0.2], generator=torch.Generator().manual_seed(0))
    evaluator = Classification(num_classes=10, learning_rate=0.01,
                               train_dataloaders=nni.trace(DataLoader)(train_set, batch_size=32, shuffle=True),
                               val_dataloaders=nni.trace(DataLoader)(val_set, batch_size=128), max_epochs=1,
                               limit_train_batches=4, logger=False, enable_progress_bar=False,
                               enable_checkpointing=False, enable_model_summary=False)
    strategy = BaseStrategy(seed=0)
    exp = run(DARTS(width=4, num_cells=3), evaluator, strategy)
    sample = exp.export_top_models(formatter='dict')[0]
    assert len(sample) == 32
    assert float(strategy.oneshot_module.trainer.callback_metrics['val_acc']) >= 0.0
    model = DARTS(width=4, num_cells=3).freeze(sample)
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, 10)

