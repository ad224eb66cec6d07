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
from tests.helpers import WAYS, claim_seed, digits_tasks, paired_ci95, run

pytestmark = pytest.mark.e2e


def space():
    return DartsTaskSpace(width=8, num_cells=3, num_classes=WAYS)


@pytest.fixture(scope='module')
def meta_trained(tmp_path_factory):
    out = tmp_path_factory.mktemp('meta')
    train, test = digits_tasks()
    strategy = BaseStrategy(inner_steps=5, save_prior_to=out / 'prior.pt', seed=claim_seed())
    exp = run(space(), _with_tasks_per_step(train, test, 4), strategy)
    return out / 'prior.pt', strategy, exp, test


def _with_tasks_per_step(train, test, k):
    from nni_base import EpisodicClassification

    return EpisodicClassification(
        train,
        test,
        tasks_per_step=k,
        steps_per_epoch=10,
        val_episodes=4,
        max_epochs=3,
        logger=False,
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        seed=claim_seed(),
    )


def test_meta_training_writes_a_prior_and_logs_metrics(meta_trained):
    path, strategy, exp, _ = meta_trained
    prior = load_prior(path)
    assert prior['tasks']['ways'] == WAYS and prior['meta']['steps'] == 30
    assert set(prior['alpha']) == {'normal', 'reduce'}
    metrics = strategy.oneshot_module.last_metrics
    assert set(metrics) >= {'outer_loss', 'query_acc_before', 'query_acc_after', 'temperature'}
    callback_metrics = strategy.oneshot_module.trainer.callback_metrics
    assert 'val_acc' in callback_metrics and 'val_acc_before' in callback_metrics


HELDOUT_TASKS = 24


def test_prior_beats_random_initialisation_on_heldout_tasks(meta_trained):
    """The same inner loop from the prior and from an un-meta-trained supernet, on the same held-out tasks: the
    per-task difference must be positive with 95% confidence (not one noisy mean against a margin)."""
    path, strategy, _, test = meta_trained
    tasks = sample_tasks(test, HELDOUT_TASKS, seed=1234 + claim_seed())
    steps = strategy.config.inner_steps
    torch.manual_seed(claim_seed())
    from_prior = adaptation_accuracy(build_supernet(space(), BaseStrategy(prior=path, inner_steps=steps)), tasks, steps)
    torch.manual_seed(claim_seed())
    from_scratch = adaptation_accuracy(build_supernet(space(), BaseStrategy(inner_steps=steps)), tasks, steps)
    gain, low, high = paired_ci95(from_prior['per_task_after'], from_scratch['per_task_after'])
    assert low > 0, f'prior - scratch after adaptation: {gain:.3f} [{low:.3f}, {high:.3f}] over {len(tasks)} tasks'
    # ... and adaptation itself helps the prior (same tasks, before vs after)
    gain, low, high = paired_ci95(from_prior['per_task_after'], from_prior['per_task_before'])
    assert low > 0, f'prior after - before adaptation: {gain:.3f} [{low:.3f}, {high:.3f}]'


def _darts_rule(probs: dict[str, dict[str, float]], label: str) -> dict[str, object]:
    """The DARTS export rule written out again, from the probabilities alone: per edge its best non-none op, per
    node the two edges whose best op is most probable."""
    sample: dict[str, object] = {}
    for node in range(2, 6):
        best = []
        for pred in range(node):
            ops = {op: p for op, p in probs[f'{label}/{node}_{pred}'].items() if op != 'none'}
            op = max(ops, key=ops.get)
            best.append((ops[op], pred, op))
        for k, (_, pred, op) in enumerate(sorted(best, reverse=True)[:2]):
            sample[f'{label}/op_{node}_{k}'] = op
            sample[f'{label}/input_{node}_{k}'] = [pred]
    return sample


def test_adapt_prior_to_heldout_dataset_and_export(meta_trained):
    path, _, _, test = meta_trained
    data = test.dataset.subset_classes(list(range(WAYS)))
    generator = torch.Generator().manual_seed(0)
    train_set, val_set = torch.utils.data.random_split(data, [0.8, 0.2], generator=generator)
    train_loader = nni.trace(DataLoader)(train_set, batch_size=32, shuffle=True)
    val_loader = nni.trace(DataLoader)(val_set, batch_size=64)
    evaluator = Classification(
        learning_rate=0.01,
        optimizer=torch.optim.SGD,
        num_classes=WAYS,
        train_dataloaders=train_loader,
        val_dataloaders=val_loader,
        max_epochs=1,
        limit_train_batches=5,
        logger=False,
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
    )
    strategy = BaseStrategy(prior=path, arc_learning_rate=0.05, seed=0)
    exp = run(space(), evaluator, strategy)
    sample = exp.export_top_models(formatter='dict')[0]
    probs = strategy.export_probs()
    assert abs(sum(probs['normal/2_0'].values()) - 1) < 1e-5 and 'none' in probs['normal/2_0']
    # What NNI exports is the DARTS rule applied to the adapted alpha (order of the two inputs aside).
    expected = {**_darts_rule(probs, 'normal'), **_darts_rule(probs, 'reduce')}
    assert _as_edges(sample) == _as_edges(expected)

    # Adaptation moved the architecture distribution and the weights away from the prior.
    prior = load_prior(path)
    adapted = strategy.oneshot_module
    for label, alpha in adapted.alphas().items():
        assert (alpha.detach() - prior['alpha'][label]).abs().max() > 1e-3, f'{label} alpha did not move'
    weights = adapted.training_module.model.state_dict()
    moved = [
        k
        for k, v in prior['state_dict'].items()
        if k in weights and v.is_floating_point() and not torch.allclose(v, weights[k])
    ]
    assert any('.ops.' in k for k in moved) and any(k.startswith('classifier') for k in moved), moved
    assert 0.0 <= float(strategy.oneshot_module.trainer.callback_metrics['val_acc']) <= 1.0

    # The sample is a standard NNI DARTS sample: full size, and retrain mode with auxiliary head.
    full = DARTS(width=36, num_cells=20).freeze(sample)
    assert sum(p.numel() for p in full.parameters()) > 1_000_000
    with model_context(sample):
        retrain = DARTS(width=16, num_cells=8, auxiliary_loss=True, drop_path_prob=0.2)
    retrain.train()
    logits, aux = retrain(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 10) and aux.shape == (2, 10)


def _as_edges(sample: dict) -> dict[str, set]:
    """Per cell node, the set of (input, op) pairs: the architecture without the order of a node's two inputs."""
    edges: dict[str, set] = {}
    for key, value in sample.items():
        if '/op_' in key:
            label, rest = key.split('/op_')
            node, k = rest.split('_')
            edges.setdefault(f'{label}/{node}', set()).add((sample[f'{label}/input_{node}_{k}'][0], value))
    return edges
