"""BaseStrategy behaviours a user relies on beyond the basic run: seeding and alpha averaging."""

import pytest
import torch

from nni_base import AdaptationConfig, BaseStrategy, MetaTrainingConfig
from tests.helpers import claim_seed, digits_tasks, episodic_evaluator, paired_ci95, run, tiny_space


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
    strategy = meta_train(0, meta_training=MetaTrainingConfig(average_alpha_tasks=3))
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


TRAIN_BATCHES = 48


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
    train = splits['train']  # both parts as (image, label tensor) pairs, so any batch collates
    data = torch.utils.data.ConcatDataset(
        [
            torch.utils.data.TensorDataset(train.images, train.labels),
            torch.utils.data.TensorDataset(test.images, test.labels + 9),
        ]
    )
    train_set, val_set = random_split(data, [0.8, 0.2], generator=torch.Generator().manual_seed(0))
    evaluator = Classification(
        num_classes=10,
        learning_rate=0.01,
        train_dataloaders=nni.trace(DataLoader)(train_set, batch_size=32, shuffle=True),
        val_dataloaders=nni.trace(DataLoader)(val_set, batch_size=128),
        max_epochs=1,
        limit_train_batches=TRAIN_BATCHES,
        logger=False,
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
    )
    # search for half the steps, then train the derived cell (freeze_architecture_after, as the README shows)
    strategy = BaseStrategy(
        seed=claim_seed(), adaptation=AdaptationConfig(freeze_architecture_after=TRAIN_BATCHES // 2)
    )
    exp = run(DARTS(width=4, num_cells=3), evaluator, strategy)
    sample = exp.export_top_models(formatter='dict')[0]
    assert len(sample) == 32

    # Control: the same space, not searched (its initial weights), scored on the same validation images.
    from nni_base.api import build_supernet

    torch.manual_seed(claim_seed())
    untrained = build_supernet(DARTS(width=4, num_cells=3), BaseStrategy(seed=claim_seed())).training_module.model
    searched = strategy.oneshot_module.training_module.model
    correct: dict[str, list[float]] = {'searched': [], 'untrained': []}
    with torch.no_grad():
        # In the validation loader's batches: pooling is normalised with batch statistics while searching.
        for x, y in DataLoader(val_set, batch_size=128):
            for name, model in (('searched', searched), ('untrained', untrained)):
                model.eval()
                correct[name] += (model(x).argmax(-1) == y).float().tolist()
    val_acc = float(strategy.oneshot_module.trainer.callback_metrics['val_acc'])
    assert val_acc == pytest.approx(sum(correct['searched']) / len(val_set), abs=1e-6)  # the logged metric
    gain, low, high = paired_ci95(correct['searched'], correct['untrained'])
    # > 0.25, not > 0: BatchNorm running statistics alone (no weight step at all) already give about +0.05.
    assert low > 0.25, f'searched - untrained val accuracy: {gain:.3f} [{low:.3f}, {high:.3f}], {len(val_set)} images'
    model = DARTS(width=4, num_cells=3).freeze(sample)
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, 10)
