"""Adapting a supernet to one task: search steps, then training of the derived (frozen) architecture."""

from __future__ import annotations

import pytest
import torch

from nni_base import AdaptationConfig, BaseStrategy
from nni_base.api import build_supernet
from nni_base.search.adaptation import TaskAdapter
from tests.helpers import digits_tasks, run, tiny_space


def _task():
    _, test = digits_tasks(shots=5, queries=5)
    torch.manual_seed(0)
    return test.sample()


def _adapter(search_steps, seed=0, **kwargs):
    torch.manual_seed(seed)
    return TaskAdapter(build_supernet(tiny_space(), BaseStrategy(seed=seed)), search_steps=search_steps, **kwargs)


def _derived_op_params(supernet) -> set[int]:
    """ids of the parameters inside the operations the derived cells use."""
    ids = set()
    for cell in supernet.cells():
        for node, edges in cell._derived_edges().items():
            for pred, op in edges:
                module = cell.ops[node - cell.num_predecessors][pred][cell.op_names[op]]
                ids |= {id(p) for p in module.parameters()}
    return ids


def test_frozen_steps_train_only_the_derived_cell_and_fit_the_support_set():
    task = _task()
    adapter = _adapter(search_steps=0)
    supernet = adapter.supernet
    alpha = {k: v.detach().clone() for k, v in supernet.alphas().items()}
    derived = _derived_op_params(supernet)
    cell_params = {id(p) for cell in supernet.cells() for p in cell.ops.parameters()}
    before = {id(p): p.detach().clone() for p in supernet.weight_parameters()}
    losses = [adapter.step(task.support_x, task.support_y) for _ in range(8)]
    assert adapter.frozen and adapter.steps_taken == 8
    for label, value in supernet.alphas().items():
        assert torch.equal(value.detach(), alpha[label]), 'a frozen architecture must not move alpha'
    changed = {id(p) for p in supernet.weight_parameters() if not torch.equal(p.detach(), before[id(p)])}
    assert changed & derived, 'the derived operations must be trained'
    assert not (changed & cell_params) - derived, 'operations outside the derived cell must stay untouched'
    assert losses[-1] < 0.5 * losses[0]
    assert adapter.accuracy(task.support_x, task.support_y) >= 0.8  # one fixed network fits 25 images


def test_search_steps_move_alpha_then_the_architecture_freezes():
    task = _task()
    adapter = _adapter(search_steps=2, arc_lr=0.05)
    supernet = adapter.supernet
    start = supernet.alphas()['normal'].detach().clone()
    adapter.step(task.support_x, task.support_y)
    adapter.step(task.support_x, task.support_y)
    searched = supernet.alphas()['normal'].detach().clone()
    assert not torch.equal(searched, start) and adapter.frozen
    adapter.step(task.support_x, task.support_y)
    assert torch.equal(supernet.alphas()['normal'].detach(), searched)


def test_adaptation_is_reproducible_with_a_seed():
    task = _task()

    def final(seed):
        adapter = _adapter(search_steps=2, seed=seed)
        torch.manual_seed(seed)
        losses = [adapter.step(task.support_x, task.support_y) for _ in range(4)]
        return losses, [p.detach().clone() for p in adapter.supernet.weight_parameters()]

    (la, pa), (lb, pb) = final(0), final(0)
    assert la == lb and all(torch.equal(a, b) for a, b in zip(pa, pb))
    assert final(1)[0] != la


def test_bad_adapter_arguments_are_refused():
    supernet = build_supernet(tiny_space(), BaseStrategy())
    with pytest.raises(ValueError, match='search_steps'):
        TaskAdapter(supernet, search_steps=-1)
    with pytest.raises(ValueError, match='weight_lr'):
        TaskAdapter(supernet, weight_lr=float('nan'))
    with pytest.raises(ValueError, match='freeze_architecture_after'):
        BaseStrategy(adaptation=AdaptationConfig(freeze_architecture_after=-2))


def test_freeze_architecture_after_in_a_single_task_nas_experiment():
    """Through NasExperiment with NNI's Classification: alpha moves only during the first steps."""
    import nni
    from nni.nas.evaluator.pytorch import Classification
    from torch.utils.data import DataLoader, TensorDataset

    task = _task()
    data = TensorDataset(task.support_x, task.support_y)

    def alpha_after(freeze, arc_lr=0.05):
        evaluator = Classification(
            num_classes=5,
            learning_rate=0.01,
            train_dataloaders=nni.trace(DataLoader)(data, batch_size=5, shuffle=False),
            val_dataloaders=nni.trace(DataLoader)(data, batch_size=25),
            max_epochs=1,
            logger=False,
            enable_progress_bar=False,
            enable_checkpointing=False,
            enable_model_summary=False,
        )
        strategy = BaseStrategy(
            seed=0, adaptation=AdaptationConfig(freeze_architecture_after=freeze), arc_learning_rate=arc_lr
        )
        run(tiny_space(), evaluator, strategy)
        return strategy.oneshot_module.alphas()['normal'].detach().clone()

    initial = alpha_after(None, arc_lr=0.0)  # alpha as initialised: a search whose alpha step size is 0
    assert torch.equal(alpha_after(0), initial), 'frozen from the first step, alpha must never move'
    two = alpha_after(2)
    full = alpha_after(None)
    assert not torch.equal(two, initial) and not torch.equal(full, two)
