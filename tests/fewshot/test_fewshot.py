"""Few-shot BASE: MAML through weights and alpha, the softmax ablation, final MAML training and evaluation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from nni.nas.hub.pytorch import DARTS

from nni_base import BaseStrategy, MetaTrainingConfig, SupernetConfig, TaskDistribution
from nni_base.api import build_supernet
from nni_base.data import LabeledTensorDataset, digits_splits
from nni_base.fewshot import (
    Conv4,
    FewShotScore,
    FixedNetworkMAML,
    count_parameters,
    evaluate_fewshot,
    full_network,
    mean_ci,
    search_cells,
    summarize_seeds,
    train_maml,
    width_for_budget,
)
from nni_base.search.optimization_embedding import WeightAlphaMAML, maml_query_loss, resample_cells
from nni_base.space.sampled_cell import SampledCell
from nni_base.tasks import EpisodeDataset
from tests.helpers import claim_seed, episodic_evaluator, paired_ci95, run, tiny_space

WAYS, SHOTS, QUERIES = 5, 1, 3
QUIET = dict(enable_progress_bar=False, logger=False, enable_checkpointing=False, enable_model_summary=False)


@pytest.fixture(scope='module')
def splits() -> dict[str, LabeledTensorDataset]:
    return digits_splits(val_digits=(6, 7))


@pytest.fixture(scope='module')
def tasks(splits) -> dict[str, TaskDistribution]:
    return {name: TaskDistribution(data, WAYS, SHOTS, QUERIES, name=f'digits-{name}') for name, data in splits.items()}


def test_fewshot_digits_split_has_disjoint_classes(splits):
    names = {k: set(v.class_names) for k, v in splits.items()}
    assert sorted(names) == ['test', 'train', 'val']
    assert len(names['train']) == 24 and len(names['val']) == 8 and len(names['test']) == 8
    assert not (names['train'] & names['val'] or names['train'] & names['test'] or names['val'] & names['test'])


def test_episode_shapes_and_label_remapping():
    # image i is filled with the value of its original class, so remapped labels can be checked against it
    labels = torch.arange(8).repeat_interleave(6)
    images = labels.float().view(-1, 1, 1, 1).expand(-1, 3, 8, 8).contiguous()
    dist = TaskDistribution(LabeledTensorDataset(images, labels, [f'c{i}' for i in range(8)]), WAYS, SHOTS, QUERIES)
    mappings = set()
    for task in EpisodeDataset(dist, tasks_per_step=10, steps=1, seed=3)[0]:
        assert task.support_x.shape == (WAYS * SHOTS, 3, 8, 8) and task.query_x.shape == (WAYS * QUERIES, 3, 8, 8)
        assert sorted(task.support_y.tolist()) == list(range(WAYS))
        assert sorted(task.query_y.tolist()) == sorted(list(range(WAYS)) * QUERIES)
        mapping = {int(x[0, 0, 0]): int(y) for x, y in zip(task.support_x, task.support_y)}
        assert len(mapping) == WAYS  # one original class per label
        # the query set uses the same class -> label assignment as the support set
        assert all(mapping[int(x[0, 0, 0])] == int(y) for x, y in zip(task.query_x, task.query_y))
        mappings.add(tuple(sorted(mapping.items())))
    assert len(mappings) > 1  # classes and their labels change from task to task


@pytest.mark.parametrize(
    'kwargs, message',
    [
        (dict(ways=10, shots=1, queries=1), r'has 8 classes but ways=10: lower ways to at most 8'),
        (dict(ways=5, shots=100, queries=100), r'has only \d+ images but shots \+ queries = 100 \+ 100'),
    ],
)
def test_bad_episode_requests_get_clear_errors(splits, kwargs, message):
    with pytest.raises(ValueError, match=message):
        TaskDistribution(splits['val'], **kwargs)


def test_bad_fewshot_options():
    with pytest.raises(ValueError, match="meta_algorithm must be one of 'reptile', 'maml'"):
        BaseStrategy(meta_algorithm='imaml')
    with pytest.raises(ValueError, match="relaxation must be one of 'gumbel', 'softmax'"):
        BaseStrategy(supernet=SupernetConfig(relaxation='sparsemax'))


def test_train_maml_rejects_a_head_of_the_wrong_width(tasks):
    with pytest.raises(ValueError, match='the model has 3 outputs but the tasks are 5-way'):
        train_maml(Conv4(ways=3, image_size=8), tasks['train'], **QUIET)


def _alpha_grad_through_inner_loop(task, first_order: bool) -> tuple[torch.Tensor | None, list]:
    torch.manual_seed(0)
    strategy = BaseStrategy(meta_algorithm='maml', meta_training=MetaTrainingConfig(first_order=first_order))
    supernet = build_supernet(tiny_space(), strategy)
    model = supernet.training_module.model
    model.train()
    alphas = supernet.arch_parameters()
    maml = WeightAlphaMAML(model, lr=0.1, lr_alpha=0.5, arch_parameters=alphas, first_order=first_order)
    learner = maml.clone()
    resample_cells(learner)
    learner.adapt(F.cross_entropy(learner(task.support_x), task.support_y))
    # The query pass runs the derived architecture: alpha is not in its forward graph, so any gradient
    # alpha receives must have come back through the inner step.
    for cell in learner.modules():
        if isinstance(cell, SampledCell):
            cell.use_derived = True
    F.cross_entropy(learner(task.query_x), task.query_y).backward()
    weights = [p for p in supernet.weight_parameters() if p.grad is not None]
    return alphas[0].grad, weights


def test_second_order_gradients_reach_alpha_through_the_inner_loop(tasks):
    task = tasks['train'].sample()
    grad, weights = _alpha_grad_through_inner_loop(task, first_order=False)
    assert weights
    assert grad is not None and float(grad.abs().sum()) > 0


def test_first_order_gradients_do_not_reach_alpha_through_the_inner_loop(tasks):
    task = tasks['train'].sample()
    grad, weights = _alpha_grad_through_inner_loop(task, first_order=True)
    assert weights  # the weights still get their first-order meta-gradient
    assert grad is None or float(grad.abs().sum()) == 0.0


def test_maml_query_loss_adapts_alpha_in_the_clone_only(tasks):
    supernet = build_supernet(tiny_space(), BaseStrategy(meta_algorithm='maml'))
    alphas = supernet.arch_parameters()
    before = [a.detach().clone() for a in alphas]
    maml = WeightAlphaMAML(supernet.training_module.model, 0.1, 0.5, alphas)
    loss, acc = maml_query_loss(maml, tasks['train'].sample(), 2, supernet.loss_of)
    loss.backward()
    assert all(torch.equal(a, b) for a, b in zip(alphas, before))  # the shared alpha is untouched ...
    assert all(a.grad is not None and bool(torch.isfinite(a.grad).all()) for a in alphas)  # ... but gets a gradient
    assert 0.0 <= float(acc) <= 1.0


def test_softmax_relaxation_mixes_every_operation_deterministically(tasks):
    strategy = BaseStrategy(meta_algorithm='maml', supernet=SupernetConfig(relaxation='softmax'))
    supernet = build_supernet(tiny_space(), strategy)
    assert not supernet.config.hard and not supernet.config.sparse
    cell = supernet.cells()[0]
    model = supernet.training_module.model
    model.train()
    x = tasks['train'].sample().support_x
    outputs = []
    for _ in range(2):
        resample_cells(model)
        outputs.append(model(x))
    assert torch.allclose(cell._weights, F.softmax(cell.alpha, dim=-1))
    assert torch.allclose(outputs[0], outputs[1])  # no sampling noise


def test_maml_meta_training_is_seeded_and_moves_the_prior(tasks, tmp_path):
    results = []
    for _ in range(2):
        strategy = BaseStrategy(
            meta_algorithm='maml', inner_steps=1, outer_lr_alpha=0.05, seed=5, save_prior_to=tmp_path / 'prior.pt'
        )
        run(tiny_space(), episodic_evaluator(tasks['train'], tasks['val'], steps_per_epoch=2), strategy)
        results.append({k: v.detach().clone() for k, v in strategy.oneshot_module.alphas().items()})
        metrics = strategy.oneshot_module.last_metrics
        assert math.isfinite(metrics['outer_loss']) and 0 <= metrics['query_acc_after'] <= 1
    assert results[0].keys() == {'normal', 'reduce'}
    assert all(torch.equal(results[0][k], results[1][k]) for k in results[0])
    assert float(results[0]['normal'].abs().max()) > 1e-2  # moved away from the 1e-3-scale initialisation
    assert (tmp_path / 'prior.pt').is_file()


def test_mean_ci_is_a_student_t_interval():
    mean, half = mean_ci([0.0, 1.0] * 50)
    assert mean == pytest.approx(0.5)
    assert half == pytest.approx(1.984217 * 0.5025189 / 10, rel=1e-5)  # t(0.975, 99 dof) * sd / sqrt(100)
    assert mean_ci([0.2, 0.4, 0.9])[1] == pytest.approx(4.302653 * 0.3605551 / 3**0.5, rel=1e-5)  # t, not z, at n=3
    assert math.isnan(mean_ci([0.3])[1])  # one value: the spread is unknown
    with pytest.raises(ValueError, match='at least one value'):
        mean_ci([])


def test_search_then_maml_training_then_evaluation_end_to_end(tasks):
    sample = search_cells(
        tasks['train'],
        tasks['val'],
        width=4,
        num_cells=3,
        steps_per_epoch=2,
        tasks_per_step=2,
        inner_steps=1,
        seed=1,
        trainer_kwargs=QUIET,
    )
    assert {k.split('/')[0] for k in sample} == {'normal', 'reduce'}
    DARTS(width=4, num_cells=3).freeze(sample)  # a plain NNI DARTS sample

    model = full_network(sample, WAYS, width=4, num_cells=3)
    start = [p.detach().clone() for p in model.parameters()]
    module = train_maml(
        model,
        tasks['train'],
        tasks['val'],
        steps_per_epoch=2,
        tasks_per_step=2,
        inner_steps=1,
        val_episodes=2,
        seed=1,
        **QUIET,
    )
    assert isinstance(module, FixedNetworkMAML)
    assert any(not torch.equal(a, b) for a, b in zip(start, model.parameters()))  # MAML trained the network

    score = evaluate_fewshot(module, tasks['test'], episodes=6, seed=2, **QUIET)
    assert score.episodes == 6 and len(score.accuracies) == 6
    assert 0.0 <= score.mean <= 1.0 and score.ci95 >= 0.0
    again = evaluate_fewshot(module, tasks['test'], episodes=6, seed=2, **QUIET)
    assert again.accuracies == score.accuracies  # same seed, same test episodes, same result
    assert len(score.episodes_digest) == 64 and again.episodes_digest == score.episodes_digest
    assert (
        evaluate_fewshot(module, tasks['test'], episodes=6, seed=3, **QUIET).episodes_digest != score.episodes_digest
    )  # the digest tells other episodes apart
    assert '±' in str(score)


def test_conv4_baseline_learns_with_maml(tasks):
    """MAML training against its control, the same initial network adapted the same way without meta-training,
    on the same test episodes: the per-episode gain must be positive with 95% confidence."""
    seed = claim_seed()

    def conv4() -> Conv4:
        torch.manual_seed(seed)
        return Conv4(WAYS, channels=3, hidden=16, image_size=8)

    trained = train_maml(
        conv4(), tasks['train'], steps_per_epoch=60, tasks_per_step=4, inner_steps=3, meta_lr=3e-3, seed=seed, **QUIET
    )
    untrained = FixedNetworkMAML(conv4(), inner_steps=3)
    episodes = dict(episodes=100, seed=seed, **QUIET)
    after, control = (
        evaluate_fewshot(trained, tasks['test'], **episodes),
        evaluate_fewshot(untrained, tasks['test'], **episodes),
    )
    gain, low, high = paired_ci95(after.accuracies, control.accuracies)
    assert low > 0, f'MAML-trained - untrained Conv4: {gain:.3f} [{low:.3f}, {high:.3f}] ({after} vs {control})'


SAMPLE = {
    f'{cell}/{kind}_{node}_{k}': (op if kind == 'op' else [k + node - 2])
    for cell, op in (('normal', 'sep_conv_3x3'), ('reduce', 'max_pool_3x3'))
    for node in range(2, 6)
    for k in range(2)
    for kind in ('op', 'input')
}


@pytest.mark.parametrize(
    'builder, budget, widths',
    [
        (lambda w: Conv4(WAYS, channels=3, hidden=w, image_size=8), 29061, 40),  # Conv4 at 32 filters: exactly 32
        (lambda w: Conv4(WAYS, channels=3, hidden=w, image_size=8), 10000, 40),
        (lambda w: full_network(SAMPLE, WAYS, width=w, num_cells=3), 29061, 20),
        (lambda w: full_network(SAMPLE, WAYS, width=w, num_cells=3), 1000, 6),
    ],
)
def test_width_for_budget_picks_the_nearest_count_and_leaves_the_rng_alone(builder, budget, widths):
    counts = {w: count_parameters(builder(w)) for w in range(1, widths + 1)}
    torch.manual_seed(7)
    expected_next = torch.rand(3)
    torch.manual_seed(7)
    width, params = width_for_budget(builder, budget)
    assert torch.equal(torch.rand(3), expected_next)  # building the candidates drew no random numbers
    assert params == counts[width]
    assert all(abs(params - budget) <= abs(count - budget) for count in counts.values()), (width, params, counts)
    if budget == 29061 and isinstance(builder(1), Conv4):
        assert (width, params) == (32, 29061)


def test_width_for_budget_rejects_a_bad_budget():
    with pytest.raises(ValueError, match='budget must be a positive number'):
        width_for_budget(lambda w: Conv4(WAYS, hidden=w, image_size=8), 0)


def _score(accs: list[float], digest: str = 'd') -> FewShotScore:
    return FewShotScore(sum(accs) / len(accs), 0.0, len(accs), accs, digest)


def test_summarize_seeds_pools_episodes_and_measures_the_seed_spread():
    summary = summarize_seeds([_score([0.2, 0.4, 0.6]), _score([0.6, 0.8, 1.0])])
    assert summary.per_seed == pytest.approx([0.4, 0.8]) and summary.mean == pytest.approx(0.6)
    assert summary.pooled_ci95 == pytest.approx(mean_ci([0.2, 0.4, 0.6, 0.6, 0.8, 1.0])[1])
    assert summary.seed_sd == pytest.approx(0.4 / math.sqrt(2))
    assert summary.seed_ci95 == pytest.approx(12.7062 * summary.seed_sd / math.sqrt(2), rel=1e-4)
    assert summary.episode_means == pytest.approx([0.4, 0.6, 0.8])  # per episode, averaged over seeds
    one = summarize_seeds([_score([0.2, 0.4])])
    assert math.isnan(one.seed_sd) and math.isnan(one.seed_ci95) and one.mean == pytest.approx(0.3)


def test_summarize_seeds_refuses_scores_from_other_episodes():
    with pytest.raises(ValueError, match='not computed on the same test episodes'):
        summarize_seeds([_score([0.2, 0.4], 'a'), _score([0.6, 0.8], 'b')])
    with pytest.raises(ValueError, match='not computed on the same test episodes'):
        summarize_seeds([_score([0.2, 0.4]), _score([0.6, 0.8, 1.0])])
