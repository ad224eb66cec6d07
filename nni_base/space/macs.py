"""Model size figures for retrained networks: parameters and multiply-accumulates (MACs).

NAS papers report "params" without the auxiliary tower (it is dropped after training) and
"multiply-adds" of one image at the evaluation size, counting convolutions and fully connected
layers only (pooling, BatchNorm and additions are ignored). :func:`count_macs` follows that
convention with forward hooks, so it needs no extra dependency and works on any ``nn.Module``.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

__all__ = ['count_macs', 'count_parameters', 'layer_macs']


def count_parameters(model: nn.Module, exclude: tuple[str, ...] = ('auxiliary_head',)) -> int:
    """Number of parameters, leaving out sub-modules whose qualified name starts with one of ``exclude``."""
    return sum(p.numel() for name, p in model.named_parameters() if not name.startswith(exclude))


def _conv_macs(module: nn.Conv2d, output: torch.Tensor) -> int:
    # every output element is a dot product over (in_channels / groups) x kernel window
    per_output = (module.in_channels // module.groups) * math.prod(module.kernel_size)
    return output.numel() * per_output


def _linear_macs(module: nn.Linear, output: torch.Tensor) -> int:
    return output.numel() * module.in_features


def layer_macs(module: nn.Module, output: torch.Tensor) -> int:
    """MACs of one ``nn.Conv2d`` or ``nn.Linear`` call that produced ``output`` (0 for any other module)."""
    if isinstance(module, nn.Conv2d):
        return _conv_macs(module, output)
    if isinstance(module, nn.Linear):
        return _linear_macs(module, output)
    return 0


@torch.no_grad()
def count_macs(model: nn.Module, input_size: tuple[int, int, int]) -> int:
    """Multiply-accumulates of one forward pass on a single ``input_size`` (C, H, W) image, in eval mode.

    Counts ``nn.Conv2d`` and ``nn.Linear`` layers (NNI's mutable layers are subclasses). Modules that
    a forward pass does not reach (e.g. the auxiliary head in eval mode) count nothing.
    """
    total = 0

    def hook(module: nn.Module, _inputs, output) -> None:
        nonlocal total
        total += layer_macs(module, output)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    model.eval()
    try:
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device('cpu')
        model(torch.zeros(1, *input_size, device=device))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return int(total)
