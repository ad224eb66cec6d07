"""Single-task search to the end (no ``freeze_architecture_after``) must fit the cell it exports (issue #11).

One step's alpha gradient is ~3e-3 per logit, so with a small alpha step (SGD at ``inner_lr_alpha`` 0.5, or Adam
at 3e-3) alpha stays uniform, every step trains another random sub-network and no network gets fitted. Measured
here (seeds 0-2): the old default ends with alpha's mean max probability 0.13 (uniform 0.125) and the derived
cell at 0.32-0.53 validation accuracy; the logit-sized default (Adam 0.3) at 0.84-0.92 and 0.75-0.79.
"""

from __future__ import annotations

import torch

from nni_base import BaseStrategy, DartsTaskSpace
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
    sampler = RandomSampler(train, replacement=True, num_samples=STEPS * 32,
                            generator=torch.Generator().manual_seed(claim_seed()))
    # NNI's Classification as a user builds it: its default optimizer (Adam, 1e-3) trains the weights.
    evaluator = Classification(num_classes=WAYS,
                               train_dataloaders=nni.trace(DataLoader)(train, batch_size=32, sampler=sampler),
                               val_dataloaders=nni.trace(DataLoader)(val, batch_size=500), max_epochs=1,
                               num_sanity_val_steps=0, logger=False, enable_progress_bar=False,
                               enable_checkpointing=False, enable_model_summary=False)
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
