"""Single-task search to the end (no ``freeze_architecture_after``) must fit the cell it exports.

One step's alpha gradient is ~3e-3 per logit, so with a small alpha step (SGD at ``inner_lr_alpha`` 0.5, or Adam
at 3e-3) alpha stays uniform, every step trains another random sub-network and no network gets fitted. Measured
here (seeds 0-2): the old default ends with alpha's mean max probability 0.13 (uniform 0.125) and the derived
cell at 0.32-0.53 validation accuracy; the logit-sized default (Adam 0.3) at 0.84-0.92 and 0.75-0.79.
"""

from __future__ import annotations

import torch

from nni_base import AdaptationConfig, BaseStrategy, DartsTaskSpace
from nni_base.api import build_supernet
from nni_base.search.adaptation import TaskAdapter
from nni_base.search.single_task import DEFAULT_ARC_LEARNING_RATE, SingleTaskModule
from nni_base.space.gumbel_cell import alpha_max_prob
from tests.helpers import claim_seed, run

WAYS = 5
STEPS = 100


def test_search_without_freezing_fits_the_derived_cell_on_texture():
    import nni
    from nni.nas.evaluator.pytorch import Classification
    from torch.utils.data import DataLoader, RandomSampler, TensorDataset

    from nni_base.data.families import family_splits

    # Known-answer family (avg-pool cells win), 5 classes: 400 images to search on, 500 fresh ones to validate.
    def images(seed: int, per_class: int) -> TensorDataset:
        data = family_splits('texture', image_size=16, images_per_class=per_class, seed=seed)['train']
        data = data.subset_classes(range(WAYS))
        return TensorDataset(data.images, data.labels)

    train, val = images(0, 80), images(1, 100)
    sampler = RandomSampler(
        train, replacement=True, num_samples=STEPS * 32, generator=torch.Generator().manual_seed(claim_seed())
    )
    # NNI's Classification as a user builds it: its default optimizer (Adam, 1e-3) trains the weights.
    evaluator = Classification(
        num_classes=WAYS,
        train_dataloaders=nni.trace(DataLoader)(train, batch_size=32, sampler=sampler),
        val_dataloaders=nni.trace(DataLoader)(val, batch_size=500),
        max_epochs=1,
        num_sanity_val_steps=0,
        logger=False,
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
    )
    strategy = BaseStrategy(seed=claim_seed())  # searches every step: freeze_architecture_after is None
    run(DartsTaskSpace(width=4, num_cells=3, num_classes=WAYS), evaluator, strategy)

    module = strategy.oneshot_module
    concentration = {label: round(float(alpha_max_prob(a)), 3) for label, a in module.alphas().items()}
    val_acc = float(module.trainer.callback_metrics['val_acc'])  # the derived cell, eval mode
    assert min(concentration.values()) > 0.3, f'alpha stayed near uniform (0.125): {concentration}'
    assert val_acc > 0.65, f'derived-cell val accuracy {val_acc:.3f} (chance {1 / WAYS}); alpha {concentration}'


def test_task_adapter_moves_alpha_like_the_strategy():
    strategy = BaseStrategy()
    supernet = build_supernet(DartsTaskSpace(width=4, num_cells=3, num_classes=WAYS), strategy)
    strategy_opt = SingleTaskModule(supernet.training_module, strategy.config).configure_architecture_optimizers()
    for optimizer in ('sgd', 'adam'):
        adapter_opt = TaskAdapter(supernet, optimizer=optimizer).arch_optimizer
        assert type(adapter_opt) is type(strategy_opt) is torch.optim.Adam
        assert adapter_opt.defaults['lr'] == strategy_opt.defaults['lr'] == DEFAULT_ARC_LEARNING_RATE
        assert adapter_opt.defaults['betas'] == strategy_opt.defaults['betas']


def _searched_module(recalibration_batches: int):
    import nni
    from nni.nas.evaluator.pytorch import Classification
    from torch.utils.data import DataLoader, TensorDataset

    from nni_base.data.families import family_splits

    data = family_splits('texture', image_size=16, images_per_class=40, seed=0)['train'].subset_classes(range(WAYS))
    train = TensorDataset(data.images, data.labels)
    evaluator = Classification(
        num_classes=WAYS,
        train_dataloaders=nni.trace(DataLoader)(train, batch_size=50, shuffle=False),
        val_dataloaders=nni.trace(DataLoader)(train, batch_size=200),
        max_epochs=1,
        num_sanity_val_steps=0,
        logger=False,
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
    )
    strategy = BaseStrategy(seed=0, adaptation=AdaptationConfig(bn_recalibration_batches=recalibration_batches))
    run(DartsTaskSpace(width=4, num_cells=3, num_classes=WAYS), evaluator, strategy)
    return strategy.oneshot_module, data.images[-50:]  # the last training batch


def test_validation_sees_the_derived_cell_with_statistics_of_the_latest_batches():
    from nni_base.space.gumbel_cell import derived_architecture

    def eval_vs_batch_statistics(module, x):
        net = module.training_module
        net.eval()
        with torch.no_grad():
            running = net(x)
        net.train()
        with torch.no_grad(), torch.random.fork_rng(), derived_architecture(module.architecture_modules()):
            batch = net(x)
        net.eval()
        return float((running - batch).abs().max() / batch.abs().max())

    # One remembered batch: every BatchNorm of the derived network holds exactly that batch's statistics, so the
    # eval-mode output on it is its batch-statistics output (up to the unbiased variance, 50/49).
    module, last_batch = _searched_module(1)
    assert len(module.recent_inputs) == 1 and torch.equal(module.recent_inputs[0], last_batch)
    recalibrated = eval_vs_batch_statistics(module, last_batch)
    stale = eval_vs_batch_statistics(_searched_module(0)[0], last_batch)
    assert recalibrated < 0.05, recalibrated
    assert stale > 4 * recalibrated, (stale, recalibrated)

    # Recalibrating again rewrites the derived network's statistics; operations it does not use keep theirs.
    norms = [m for m in module.training_module.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in norms:
        m.running_mean += 1.0
    marked = [m.running_mean.clone() for m in norms]
    module.recalibrate_batchnorm()
    kept = [torch.equal(b, m.running_mean) for b, m in zip(marked, norms)]
    assert any(kept) and not all(kept)
    assert eval_vs_batch_statistics(module, last_batch) < 0.05
