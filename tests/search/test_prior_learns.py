"""The prior's α learns a known answer through the real meta-training path (NNI experiment, BaseStrategy defaults).

On the ``peaks`` family (classes = positions of a few sparse bright maxima) max pooling is the best
reduction-cell operation by exhaustive evaluation (``benchmarks/known_answer.py --per-cell-type``:
0.794 ± 0.058 against 0.703 ± 0.054 for the runner-up, average pooling). A short meta-training at the
library's defaults must put max pooling on top of the reduction cell's α and raise its probability well above
uniform. Probed over meta-training seeds 0–3 at this size: max pooling on top in all four, with mean
probability 0.23–0.36 against at most 0.17 for any other op (uniform over 7 ops: 0.14).

Broken variants this test catches (seed 0, measured): α without pool normalisation
(``pool_batchnorm=False``: max pooling 0.02, dil_conv_5x5 on top) and the plain SGD outer step on α of
earlier releases (``outer_optimizer_alpha='sgd'``: every op 0.12–0.13). The gate-only straight-through
estimator passes at this size (max pooling 0.25); where it fails is pinned by ``tests/space/test_alpha_learns.py``.

Second-order MAML (few-shot BASE) takes the same test: max pooling 0.43 / 0.41 (seeds 0 / 1) at its default
Adam step of 0.1 on α; at the earlier 3e-3 every op stayed at 0.12–0.13.
"""

from __future__ import annotations

import pytest
import torch

from nni_base import BaseStrategy, DartsTaskSpace, EpisodicClassification, MetaTrainingConfig, TaskDistribution
from nni_base.data.families import family_splits
from nni_base.search.evaluation import DARTS_OPS
from tests.helpers import run

pytestmark = pytest.mark.e2e  # about a minute of meta-training

pytestmark = pytest.mark.e2e


def _meta_train_peaks(seed: int, **strategy_kwargs) -> dict[str, torch.Tensor]:
    tasks = TaskDistribution(family_splits('peaks', image_size=16)['train'], 5, 20, 10, name='peaks')
    evaluator = EpisodicClassification(
        tasks,
        None,
        tasks_per_step=2,
        steps_per_epoch=30,
        seed=seed,
        max_epochs=1,
        logger=False,
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
    )
    strategy = BaseStrategy(
        inner_steps=5, meta_training=MetaTrainingConfig(inner_batch_size=32), seed=seed, **strategy_kwargs
    )
    run(DartsTaskSpace(width=4, num_cells=3, num_classes=5), evaluator, strategy)
    return {
        label: torch.softmax(a.detach(), -1)[:, : len(DARTS_OPS)].mean(0)
        for label, a in strategy.oneshot_module.alphas().items()
    }


# The second seed and few-shot BASE (four minutes of MAML meta-training) run with `make test-slow`: the rule they
# guard (MAML's inner step, Reptile's outer step) is checked in the fast lane by tests/search/test_*_rule.py.
@pytest.mark.parametrize(
    'meta_algorithm, seed',
    [
        ('reptile', 0),
        pytest.param('reptile', 1, marks=pytest.mark.slow),
        pytest.param('maml', 0, marks=pytest.mark.slow),
    ],
)
def test_meta_training_puts_the_known_winner_on_top_of_the_reduction_cell(meta_algorithm, seed):
    per_op = dict(zip(DARTS_OPS, _meta_train_peaks(seed, meta_algorithm=meta_algorithm)['reduce'].tolist()))
    top = max(per_op, key=per_op.get)
    assert top == 'max_pool_3x3', f'reduction-cell α prefers {top}: {per_op}'
    runner_up = max(v for op, v in per_op.items() if op != 'max_pool_3x3')
    assert per_op['max_pool_3x3'] > 0.2 and per_op['max_pool_3x3'] > runner_up + 0.05, per_op
