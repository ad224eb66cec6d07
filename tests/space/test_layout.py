"""The supernet's channels-last layout: what is converted, what is guarded, and that the guarded case runs."""

import subprocess
import sys
import textwrap

import torch
import torch.nn as nn

from nni_base import BaseStrategy, DartsTaskSpace
from nni_base.api import build_supernet
from nni_base.config_groups import SupernetConfig
from nni_base.space.layout import unsafe_in_channels_last


def convolutions(supernet) -> list[nn.Conv2d]:
    return [m for m in supernet.training_module.model.modules() if isinstance(m, nn.Conv2d)]


def test_channels_last_by_default_with_strided_pointwise_convolutions_kept_contiguous():
    supernet = build_supernet(DartsTaskSpace(width=4, num_cells=3, num_classes=5), BaseStrategy())
    convs = convolutions(supernet)
    guarded = [c for c in convs if unsafe_in_channels_last(c)]
    dense = [c for c in convs if c.kernel_size != (1, 1) and c.in_channels // c.groups > 1]
    assert guarded and dense  # the DARTS space has both kinds
    assert all(c.weight.is_contiguous() for c in guarded)
    assert all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in dense)
    seen = []
    hooks = [c.register_forward_pre_hook(lambda m, args: seen.append(args[0].is_contiguous())) for c in guarded]
    supernet.training_module.model.train()
    supernet.resample()
    supernet.model_loss(torch.randn(4, 3, 16, 16), torch.arange(4))
    for hook in hooks:
        hook.remove()
    assert seen and all(seen)  # the guarded convolution's input arrives contiguous


def test_channels_last_off_leaves_the_model_contiguous():
    supernet = build_supernet(
        DartsTaskSpace(width=4, num_cells=3, num_classes=5), BaseStrategy(supernet=SupernetConfig(channels_last=False))
    )
    assert all(c.weight.is_contiguous() for c in convolutions(supernet))


def test_the_case_torch_corrupts_the_heap_on_runs_in_a_child_process():
    # width 4 at 16 px: FactorizedReduce's 1x1 stride-2 convolutions on 4-8 channels, which crashed the process
    # ("double free or corruption") in channels-last before they were guarded
    code = textwrap.dedent(
        """
        import torch, warnings
        warnings.filterwarnings('ignore')
        from nni_base import BaseStrategy, DartsTaskSpace, Task
        from nni_base.api import build_supernet
        torch.manual_seed(0)
        supernet = build_supernet(DartsTaskSpace(width=4, num_cells=3, num_classes=5), BaseStrategy())
        x, y = torch.randn(25, 3, 16, 16), torch.randint(0, 5, (25,))
        supernet.adapt(Task(x, y, x, y), 60, supernet.model_state(), where='layout test')
        print('done')
        """
    )
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0 and 'done' in result.stdout, result.stderr[-2000:]
