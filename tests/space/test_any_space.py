"""BaseStrategy on every space shape NNI's own one-shot strategies search (#13 §1).

Each space meta-trains for two meta-steps, then: the exported sample freezes the space, ``export_probs``
covers every choice, the prior (with its space signature) round-trips, and a choice BASE cannot search
is refused naming it and the fix.
"""

from __future__ import annotations

from functools import partial

import nni
import pytest
import torch
import torch.nn as nn
from nni.mutable import Categorical, CategoricalMultiple
from nni.nas.evaluator.pytorch import Classification, DataLoader
from nni.nas.execution import SequentialExecutionEngine
from nni.nas.hub.pytorch import NasBench201
from nni.nas.nn.pytorch import InputChoice, ModelSpace, MutableDropout
from nni.nas.oneshot.pytorch.supermodule.differentiable import (
    DifferentiableMixedCell,
    DifferentiableMixedInput,
    DifferentiableMixedLayer,
    DifferentiableMixedRepeat,
)
from nni.nas.oneshot.pytorch.supermodule.operation import MixedOperation
from nni.nas.space import RawFormatModelSpace
from pytorch_lightning.callbacks import Callback, ModelCheckpoint

from nni_base import BaseStrategy, EpisodicClassification, PriorMismatchError, load_prior
from nni_base.api import build_supernet
from nni_base.data import digits_splits
from nni_base.space.gumbel_cell import GumbelMixedCell
from nni_base.space.mixed import ArchSoftmax, architecture_logits
from tests.any_space_spaces import (
    CellMixSpace,
    LayerInputSpace,
    LooseEndCellSpace,
    MnistStyleSpace,
    RepeatSpace,
    WidthKernelSpace,
)
from tests.helpers import WAYS, digits_tasks, episodic_evaluator, run


def nasbench201() -> NasBench201:
    return NasBench201(stem_out_channels=4, num_modules_per_stack=1, num_labels=WAYS)


SPACES = {
    'layer_input': LayerInputSpace,
    'width_kernel': WidthKernelSpace,
    'repeat_depth': RepeatSpace,
    'cell_of_modules': CellMixSpace,
    'cell_of_callable': partial(CellMixSpace, plain_callable=True),
    'nasbench201': nasbench201,
    'mnist_style': MnistStyleSpace,  # LayerChoice + InputChoice + width + Repeat + op-factory Cell (GumbelMixedCell)
}


@pytest.fixture(scope='module')
def tasks():
    return digits_tasks(shots=2, queries=2)


def _meta_train(space, tasks, tmp_path, **kwargs) -> BaseStrategy:
    strategy = BaseStrategy(inner_steps=1, save_prior_to=tmp_path / 'prior.pt', **kwargs)
    run(space, episodic_evaluator(tasks[0], steps_per_epoch=2), strategy)
    return strategy


@pytest.mark.parametrize('name', list(SPACES))
def test_meta_train_export_and_prior(name, tasks, tmp_path):
    strategy = _meta_train(SPACES[name](), tasks, tmp_path)
    module = strategy.oneshot_module
    assert module.trainer.global_step == 2
    alphas = module.alphas()
    moved = [label for label, a in alphas.items() if a.numel() > 1 and a.detach().abs().max() > 0.01]
    assert moved == [label for label, a in alphas.items() if a.numel() > 1], 'the meta-steps left some alpha at init'

    # the exported sample is a valid architecture of the space
    sample = strategy.export_sample()
    network = SPACES[name]().freeze(sample)
    assert network(torch.randn(2, 3, 8, 8)).shape == (2, WAYS)

    # export_probs covers every choice (DARTS-style cells by edge, as GumbelMixedCell always did)
    probs = strategy.export_probs()
    cells = {cell.label for cell in module.cells()}
    for label, mutable in SPACES[name]().simplify().items():
        if label.split('/')[0] in cells:
            continue
        assert isinstance(mutable, (Categorical, CategoricalMultiple))
        assert set(probs[label]) == set(mutable.values), label
        assert sum(probs[label].values()) == pytest.approx(1.0, abs=1e-5)
    assert all(any(key.startswith(f'{cell}/') for key in probs) for cell in cells)

    # the prior carries the space signature and every alpha, and loads into a fresh supernet of the space
    prior = load_prior(tmp_path / 'prior.pt')
    assert set(prior['space']['signature']) == set(map(str, SPACES[name]().simplify()))
    assert set(prior['alpha']) == set(alphas)
    restored = build_supernet(SPACES[name](), BaseStrategy(prior=tmp_path / 'prior.pt'))
    for label, alpha in restored.alphas().items():
        assert torch.equal(alpha.detach(), alphas[label].detach()), label
    assert restored.export() == sample


def test_prior_of_another_space_is_refused(tasks, tmp_path):
    _meta_train(LayerInputSpace(), tasks, tmp_path)
    with pytest.raises(PriorMismatchError, match='another search space'):
        build_supernet(WidthKernelSpace(), BaseStrategy(prior=tmp_path / 'prior.pt'))


def test_nni_strategy_contract_and_single_task_adaptation(tasks, tmp_path):
    """NNI's own test protocol: ``strategy(RawFormatModelSpace(model, evaluator), engine)``, then ``list_models``;
    here BASE's adaptation of a meta-trained prior to one dataset with NNI's ``Classification``."""
    _meta_train(MnistStyleSpace(), tasks, tmp_path)
    split = digits_splits()['test']
    keep = torch.nonzero(split.labels < WAYS).flatten()
    keep = keep[torch.randperm(len(keep), generator=torch.Generator().manual_seed(0))[:64]]  # all 5 classes, not 1
    data = torch.utils.data.TensorDataset(split.images[keep], split.labels[keep])
    evaluator = Classification(
        num_classes=WAYS,
        learning_rate=0.01,
        train_dataloaders=DataLoader(data, batch_size=16, shuffle=True),
        val_dataloaders=DataLoader(data, batch_size=64),
        max_epochs=1,
        limit_train_batches=3,
        logger=False,
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
    )
    strategy = BaseStrategy(prior=tmp_path / 'prior.pt')
    before = {label: a.detach().clone() for label, a in load_prior(tmp_path / 'prior.pt')['alpha'].items()}
    strategy(RawFormatModelSpace(MnistStyleSpace(), evaluator), SequentialExecutionEngine())
    after = strategy.oneshot_module.alphas()
    assert any(not torch.equal(before[label], after[label].detach()) for label in before)  # alpha adapted
    exported = next(iter(strategy.list_models()))
    assert exported.sample == strategy.export_sample()
    # (the exported RawFormatModelSpace wraps the supernet, as with NNI's DARTS: build the network from the space)
    assert MnistStyleSpace().freeze(exported.sample)(torch.randn(2, 3, 8, 8)).shape == (2, WAYS)


class _StopAfterFirstEpoch(Callback):
    def on_train_epoch_end(self, trainer, pl_module):
        trainer.should_stop = True


def test_maml_and_resume_on_a_mixed_space(tasks, tmp_path):
    strategy = _meta_train(MnistStyleSpace(), tasks, tmp_path, meta_algorithm='maml')
    assert strategy.oneshot_module.trainer.global_step == 2
    MnistStyleSpace().freeze(strategy.export_sample())

    def evaluator(directory, *callbacks):
        return EpisodicClassification(
            tasks[0],
            None,
            tasks_per_step=2,
            steps_per_epoch=1,
            max_epochs=2,
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[ModelCheckpoint(dirpath=directory, save_last=True), *callbacks],
        )

    whole = BaseStrategy(inner_steps=1, seed=3)
    run(LayerInputSpace(), evaluator(tmp_path / 'whole'), whole)
    run(LayerInputSpace(), evaluator(tmp_path / 'first', _StopAfterFirstEpoch()), BaseStrategy(inner_steps=1, seed=3))
    resumed = BaseStrategy(inner_steps=1, seed=3, resume_from=tmp_path / 'first' / 'last.ckpt')
    run(LayerInputSpace(), evaluator(tmp_path / 'resumed'), resumed)
    assert resumed.oneshot_module.trainer.global_step == 2
    for label, alpha in whole.oneshot_module.alphas().items():
        assert torch.equal(alpha.detach(), resumed.oneshot_module.alphas()[label].detach()), label


def test_loose_end_cell_uses_nni_differentiable_cell(tasks, tmp_path):
    strategy = _meta_train(LooseEndCellSpace(), tasks, tmp_path)
    assert any(isinstance(m, DifferentiableMixedCell) for m in strategy.supernet.modules())
    assert set(strategy.oneshot_module.alphas()) == {'loose/1_0', 'loose/2_0', 'loose/2_1'}
    LooseEndCellSpace().freeze(strategy.export_sample())


def test_darts_space_keeps_its_modules():
    """In a DARTS-style space only the cells are replaced: fixed convolutions stay the space's own modules."""
    from nni_base import DartsTaskSpace

    model = build_supernet(DartsTaskSpace(width=4, num_cells=3, num_classes=WAYS), BaseStrategy()).training_module.model
    assert not any(isinstance(m, (MixedOperation, ArchSoftmax)) for m in model.modules())
    assert {type(m) for m in model.modules() if isinstance(m, GumbelMixedCell)} == {GumbelMixedCell}


def test_architecture_logits_adapter():
    """Pins the one adapter over NNI internals: every supermodule's ``arch_parameters()``, labelled."""
    supernet = build_supernet(MnistStyleSpace(), BaseStrategy())
    model = supernet.training_module.model
    kinds = {}
    for module in model.modules():
        logits = architecture_logits(module)
        if hasattr(module, 'arch_parameters'):
            assert {id(p) for p in module.arch_parameters()} == {id(p) for p in logits.values()}
        for label in logits:
            kinds[label] = type(module)
    assert issubclass(kinds['conv1'], DifferentiableMixedLayer)
    assert issubclass(kinds['skip'], DifferentiableMixedInput)
    assert issubclass(kinds['depth'], DifferentiableMixedRepeat)
    assert issubclass(kinds['width'], MixedOperation)
    assert issubclass(kinds['cell'], GumbelMixedCell)  # the op-factory cell takes the sparse fast path
    # one logit vector per label, shared by every module that uses it; all of them are arch_parameters
    assert supernet.alphas()['width'].shape == (2,)
    assert {id(p) for p in supernet.arch_parameters()} == {id(p) for p in supernet.alphas().values()}
    arch = {id(p) for p in supernet.arch_parameters()}
    assert not any(id(p) in arch for p in supernet.weight_parameters())
    cell = build_supernet(LooseEndCellSpace(), BaseStrategy()).training_module.model.cell
    assert set(architecture_logits(cell)) == {'loose/1_0', 'loose/2_0', 'loose/2_1'}


def test_one_sample_per_label_and_forward():
    """Modules sharing a label (width: conv, BatchNorm, Linear) see one Gumbel sample per forward, as cells do."""
    supernet = build_supernet(WidthKernelSpace(), BaseStrategy())
    model = supernet.training_module.model.train()
    seen: list[tuple[int, list[float]]] = []
    for m in model.modules():
        if isinstance(m, ArchSoftmax):
            m.register_forward_hook(lambda mod, args, out: seen.append((id(args[0]), out.detach().tolist())))
    samples = []
    torch.manual_seed(0)
    for _ in range(8):
        seen.clear()
        model(torch.randn(2, 3, 8, 8))
        width = supernet.alphas()['width']
        drawn = [out for key, out in seen if key == id(width)]
        assert len(drawn) >= 3 and all(out == drawn[0] for out in drawn)
        samples.append(tuple(drawn[0]))
    assert len(set(samples)) == 2  # a fresh sample each forward


def test_arch_softmax_modes():
    logits = torch.tensor([0.0, 2.0, 1.0], requires_grad=True)
    sampler = ArchSoftmax()
    weights = sampler(logits)
    assert sorted(weights.detach().tolist()) == [0.0, 0.0, 1.0]  # hard sample: one-hot in value
    (weights * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0  # straight-through gradient
    sampler.eval()
    assert sampler(logits).tolist() == [0.0, 1.0, 0.0]  # evaluation runs the exported choice
    sampler.report = True
    assert torch.allclose(sampler(logits), torch.softmax(logits.detach(), -1))
    two = ArchSoftmax(top_k=2, mean=True).eval()
    assert two(logits).tolist() == [0.0, 0.5, 0.5]
    sampler = ArchSoftmax(relaxation='softmax')
    assert torch.allclose(sampler(logits), torch.softmax(logits, -1))


class _Uniform(ModelSpace):
    def __init__(self):
        super().__init__()
        self.drop = MutableDropout(nni.uniform('rate', 0.0, 0.5))

    def forward(self, x):
        return self.drop(x)


class _Dropout(ModelSpace):
    def __init__(self):
        super().__init__()
        self.drop = MutableDropout(nni.choice('rate', [0.1, 0.5]))

    def forward(self, x):
        return self.drop(x)


class _Concat(ModelSpace):
    def __init__(self):
        super().__init__()
        self.inputs = InputChoice(3, 2, reduction='concat', label='concat_inputs')
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(self.inputs([x, x, x]))


@pytest.mark.parametrize(
    ('space', 'message'),
    [
        (_Uniform, r"choice 'rate' is a Numerical .* Use nni.choice\('rate', \[...\]\)"),
        (_Dropout, r"cannot search module 'drop' \(MutableDropout, choices \['rate'\]\).*Fix these choices"),
        (_Concat, r"InputChoice 'concat_inputs' .* reduction='sum'"),
    ],
)
def test_unsupported_choice_names_it_and_the_fix(space, message):
    with pytest.raises(TypeError, match=message):
        BaseStrategy().mutate_model(space())


@pytest.mark.parametrize(('name', 'ranks'), [('width_kernel', True), ('repeat_depth', True), ('layer_input', False)])
def test_top_k_on_choices_outside_cells(name, ranks, tasks, tmp_path):
    """Top-k ranks value / depth / layer choices beside the cells: distinct valid samples, best first; an
    InputChoice (a multi-valued choice) allows only top_k=1, with a message that says so."""
    space = SPACES[name]
    strategy = _meta_train(space(), tasks, tmp_path)
    if not ranks:
        with pytest.raises(TypeError, match='top_k=1'):
            strategy.ranked_models(3)
        assert strategy.export_top_models(1) == [strategy.export_sample()]
        return
    ranked = strategy.ranked_models(3)
    samples = [sample for sample, _ in ranked]
    assert samples[0] == strategy.export_sample()
    assert len({repr(sorted(s.items())) for s in samples}) == len(samples) == 3
    assert [score for _, score in ranked] == sorted((score for _, score in ranked), reverse=True)
    for sample in samples:
        space().freeze(sample)
