"""The memory layout a supernet or a retrained network runs in: channels-last, with one guarded exception.

Channels-last is the layout CPU convolutions and pooling run fastest in (1.3-3x per DARTS operation at the sizes
searched here, ``benchmarks/meta_training_speed.py``) and the one tensor cores want under mixed precision.

The exception: in torch 2.14 on CPU, a 1x1 convolution with stride 2 and few channels (C <= 12; DARTS's
``FactorizedReduce``, the skip connection of reduction cells) corrupts the heap in channels-last layout (``double
free or corruption``; reproduced with a bare ``nn.Conv2d(4, 2, 1, stride=2)``). Those convolutions keep the
contiguous layout, their inputs made contiguous by a pre-hook; ``tests/space/test_layout.py`` runs the case in a
child process, so a torch that still has the bug fails a test instead of a user's run.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

__all__ = ['channels_last_inputs', 'contiguous_inputs', 'to_channels_last', 'unsafe_in_channels_last']


def channels_last_inputs(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """Forward pre-hook: 4-D tensor arguments in channels-last layout (module-level functions: models pickle)."""
    return tuple(
        a.contiguous(memory_format=torch.channels_last) if isinstance(a, torch.Tensor) and a.dim() == 4 else a
        for a in args
    )


def contiguous_inputs(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """Forward pre-hook: 4-D tensor arguments in the contiguous layout."""
    return tuple(a.contiguous() if isinstance(a, torch.Tensor) and a.dim() == 4 else a for a in args)


def unsafe_in_channels_last(module: nn.Module) -> bool:
    """Whether ``module`` is a convolution that torch's CPU kernels mishandle in channels-last (see above)."""
    return isinstance(module, nn.Conv2d) and tuple(module.kernel_size) == (1, 1) and tuple(module.stride) != (1, 1)


def to_channels_last(model: nn.Module) -> nn.Module:
    """Put ``model`` in channels-last layout in place: weights, its 4-D inputs, all but the guarded convolutions."""
    model.to(memory_format=torch.channels_last)
    model.register_forward_pre_hook(channels_last_inputs)
    for module in model.modules():
        if unsafe_in_channels_last(module):
            module.to(memory_format=torch.contiguous_format)
            module.register_forward_pre_hook(contiguous_inputs)
    return model
