"""The classifier head when a prior meets a dataset with another class count.

Where it sits: between a prior file (:mod:`nni_base.prior`, which finds the heads to rebuild) and adaptation
(:mod:`.adaptation`). A prior is
meta-trained on N-way tasks, so its classifier has N outputs and its rows mean nothing for a new dataset
(meta-training permutes the labels of every task). Everything else of the prior — stem, cells, α — is
what transfers; the head is rebuilt with the dataset's C outputs, as transfer learning does, and
initialised before the first adaptation step by :func:`initialise_head` (``benchmarks/head_init.py`` measured the
three through NNI on novel-class datasets: at 10 classes ``'zero'`` validated +0.20 ± 0.11 above ``'class_means'``,
whose prototype logits are large; at 3 classes the difference was within its CI; retrained cells did not differ):

* ``'zero'`` (default): all zeros (uniform predictions; the body gets gradients once the head has moved);
* ``'class_means'``: each class's row is built from the mean feature of that class's images under the derived
  architecture, the prototype rule of few-shot learning (logits are then minus the squared distance to each
  prototype, up to a term common to all classes);
* ``'random'``: the layer's own ``reset_parameters`` (PyTorch's default Linear initialisation).

Example
-------
>>> heads = head_mismatch(model, prior['state_dict'])            # doctest: +SKIP
>>> initialise_head(supernet, heads, x, y, 'class_means')        # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import get_args

import torch
import torch.nn as nn

from ..config import HeadInit
from ..prior.head import head_modules
from ..space.gumbel_cell import derived_architecture
from .supernet import SearchSupernet

__all__ = ['HEAD_INITS', 'initialise_head', 'class_mean_features']

HEAD_INITS = get_args(HeadInit)

_logger = logging.getLogger('nni_base')


@torch.no_grad()
def class_mean_features(
    supernet: SearchSupernet, head: nn.Linear, x: torch.Tensor, y: torch.Tensor, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Mean input feature of ``head`` per class under the derived architecture, and which classes were seen.

    Batch statistics (train mode) as in the adaptation steps that follow; BatchNorm buffers are restored, so
    reading the images leaves no trace in the supernet. None if the forward pass does not reach ``head``.
    """
    features: list[torch.Tensor] = []
    hook = head.register_forward_hook(lambda _m, inputs, _out: features.append(inputs[0].detach()))
    model = supernet.training_module.model
    buffers = list(model.buffers())  # num_batches_tracked too: a forward pass in train mode counts itself there
    saved = [b.clone() for b in buffers]
    was_training = model.training
    try:
        model.train()
        with torch.random.fork_rng(devices=[]), derived_architecture(supernet.architecture_modules()):
            model(x)
    finally:
        hook.remove()
        model.train(was_training)
        for b, s in zip(buffers, saved):
            b.copy_(s)
    if not features:  # the layer is not on the forward path (an auxiliary head outside retrain mode)
        return None
    f = features[0].flatten(1).float()
    sums = torch.zeros(num_classes, f.shape[1], dtype=f.dtype, device=f.device).index_add_(0, y, f)
    counts = torch.bincount(y, minlength=num_classes).to(f.dtype)
    seen = counts > 0
    return sums / counts.clamp(min=1).unsqueeze(1), seen


@torch.no_grad()
def initialise_head(
    supernet: SearchSupernet, names: Sequence[str], x: torch.Tensor | None, y: torch.Tensor | None, how: str
) -> str:
    """Initialise the rebuilt heads ``names`` of the supernet in place; returns a one-line description.

    ``'class_means'`` needs labelled images ``(x, y)`` (classes with no image get a zero row, bias 0).
    """
    if how not in HEAD_INITS:
        raise ValueError(f'head_init must be one of {", ".join(map(repr, HEAD_INITS))}, got {how!r}.')
    model = supernet.training_module.model
    heads = head_modules(model, names)
    done = []
    for name, head in zip(names, heads):
        found = (
            class_mean_features(supernet, head, x, y, head.out_features)
            if how == 'class_means' and x is not None and y is not None
            else None
        )
        if how == 'random':
            head.reset_parameters()
        elif found is None:
            head.weight.zero_()
            if head.bias is not None:
                head.bias.zero_()
        else:
            means, seen = found
            # -|f - m_k|^2 = 2 m_k.f - |m_k|^2 - |f|^2, and the last term is the same for every class
            head.weight.copy_((2 * means).to(head.weight.dtype))
            if head.bias is not None:
                head.bias.copy_((-(means**2).sum(1) * seen).to(head.bias.dtype))
        done.append(f'{name} ({head.out_features} classes)')
    source = (
        f'class-mean features of {len(y)} images'
        if how == 'class_means' and y is not None
        else ('zero (no images to take class means from)' if how == 'class_means' else how)
    )
    return f'rebuilt the classifier head for this dataset: {", ".join(done)}, initialised: {source}'
