"""Hot paths follow their inputs' dtype (the CPU stand-in for following their device), and looked-up state
follows a module moved to another dtype."""

import traceback

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from nni_base import BaseStrategy, DartsTaskSpace, Task
from nni_base.api import build_supernet
from nni_base.search.loop import adapt_each
from nni_base.search.meta_update import ModelState, inner_sgd_step

# Where a float32 tensor is made on purpose: the exported architecture is decided in float32 (derive_cell), metrics
# and the per-task loss readout are float32 host numbers.
ALLOWED = ('derive_cell', 'alpha_entropy', 'alpha_max_prob', '.tolist()')


class CreatedDtypes(TorchDispatchMode):
    """Records every floating-point tensor an operation returns in a dtype other than ``expected``, with its caller."""

    def __init__(self, expected: torch.dtype):
        super().__init__()
        self.expected = expected
        self.other: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor) and t.is_floating_point() and t.dtype != self.expected:
                stack = traceback.extract_stack()
                if any(
                    f.name in ALLOWED or 'torchmetrics' in f.filename or '.tolist()' in (f.line or '') for f in stack
                ):
                    continue
                ours = [f for f in stack if 'nni_base' in f.filename]
                where = f'{ours[-1].filename.split("nni_base")[-1]}:{ours[-1].lineno}' if ours else '?'
                self.other.append(f'{func} -> {t.dtype} at {where}')
        return out


def test_the_inner_loop_and_query_follow_a_bfloat16_model_and_task():
    torch.manual_seed(0)
    supernet = build_supernet(DartsTaskSpace(width=4, num_cells=3, num_classes=5), BaseStrategy(inner_steps=2))
    supernet = supernet.to(torch.bfloat16)
    x, y = torch.randn(10, 3, 16, 16, dtype=torch.bfloat16), torch.randint(0, 5, (10,))
    before = [p.detach().clone() for p in supernet.model_state().params]
    mode = CreatedDtypes(torch.bfloat16)
    with mode:
        results = adapt_each(supernet, [Task(x, y, x, y)], 2, where='dtype test')
    assert mode.other == []
    assert results.after and all(0 <= a <= 1 for a in results.after)
    # the supernet was restored in its own dtype
    after = supernet.model_state().params
    assert all(p.dtype == torch.bfloat16 and torch.equal(p, b) for p, b in zip(after, before))


def test_model_state_reads_the_buffers_a_dtype_move_replaced():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    state = ModelState(net)
    net.to(torch.float64)
    assert [b.dtype for b in state.buffers] == [torch.float64, torch.float64]
    assert all(b is n for b, n in zip(state.buffers, [net[1].running_mean, net[1].running_var]))


def test_the_structure_is_looked_up_once_and_again_after_forget():
    supernet = build_supernet(DartsTaskSpace(width=4, num_cells=3, num_classes=5), BaseStrategy())
    first = supernet.structure()
    assert supernet.structure() is first
    assert supernet.cells() == list(first.cells) and len(first.cells) == 3
    supernet.forget_structure()
    assert supernet.structure() is not first


def test_the_fused_sgd_step_is_the_per_parameter_update():
    torch.manual_seed(0)
    params = [torch.randn(3, 4), torch.randn(5), torch.randn(2, 2)]
    grads = [torch.randn(3, 4), None, torch.randn(2, 2)]
    lrs = [0.1, 0.5, 0.0]
    expected = [p - lr * g if g is not None else p.clone() for p, g, lr in zip(params, grads, lrs)]
    inner_sgd_step(params, grads, lrs.__getitem__)
    assert all(torch.equal(p, e) for p, e in zip(params, expected))


def test_float16_meta_training_is_refused_with_the_precision_that_works():
    from types import SimpleNamespace

    import pytest

    from nni_base.evaluator import EpisodicModule
    from nni_base.search.reptile import ReptileModule

    training = EpisodicModule()
    training.set_model(DartsTaskSpace(width=4, num_cells=3, num_classes=5))
    module = ReptileModule(training, BaseStrategy().config)
    module.trainer = SimpleNamespace(precision_plugin=SimpleNamespace(scaler=object()))  # Lightning's fp16 plugin
    with pytest.raises(ValueError, match="precision='bf16-mixed'"):
        module.on_fit_start()
