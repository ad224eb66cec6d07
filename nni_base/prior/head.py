"""Which classifier heads of a model a prior's tensors fit except in their class count (the head to rebuild).

Where it sits: read by :func:`nni_base.prior.apply_prior` when a prior meets a dataset with another class count;
how a rebuilt head is initialised is adaptation's business (:mod:`nni_base.search.head`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

__all__ = ['head_mismatch', 'head_modules']


def head_modules(model: nn.Module, names: Sequence[str]) -> list[nn.Linear]:
    """The ``nn.Linear`` layers of ``model`` called ``names``."""
    modules = dict(model.named_modules())
    return [modules[name] for name in names]  # type: ignore[misc]


def head_mismatch(model: nn.Module, saved: dict[str, torch.Tensor]) -> list[str]:
    """Names of the linear layers whose saved tensors differ from the model's in the output size only.

    Those are classifier heads of another class count (the main classifier, an auxiliary one); any other
    difference is left for the caller to refuse.
    """
    own = model.state_dict()
    heads = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear):
            continue
        prefix = f'{name}.' if name else ''
        weight = saved.get(f'{prefix}weight')
        if weight is None or weight.ndim != 2 or weight.shape == own[f'{prefix}weight'].shape:
            continue
        if weight.shape[1] != module.in_features:
            continue  # another feature width: the body differs, not only the head
        bias = saved.get(f'{prefix}bias')
        if (bias is None) != (module.bias is None) or (bias is not None and bias.shape != (weight.shape[0],)):
            continue
        heads.append(name)
    return heads
