"""NNI's own one-shot searches as baselines, stepped by hand so their wall time can be compared step by step.

Used by ``run.py`` (step time, time to accuracy on digits) and ``alpha_recovery.py`` (time to accuracy on the
known-answer families). A :class:`Method` is a supernet with one training step and a query-accuracy probe.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from nni.nas.nn.pytorch import ModelSpace
from nni.nas.oneshot.pytorch.strategy import DARTS, GumbelDARTS

from nni_base.tasks.metrics import accuracy as accuracy_of

# NNI Classification's Adam for the weights (3e-3 rather than 1e-3: few steps are allowed) and DARTS's own
# architecture optimizer (Adam, betas (0.5, 0.999), weight decay 1e-3).
NNI_WEIGHT_LR = 3e-3
NNI_ARC_LR = 3e-3


class Method:
    """A supernet with one training step on a batch and a query-accuracy probe.

    Parameters
    ----------
    name
        Label used in the results.
    step
        ``step(x, y)``: one training step in place.
    accuracy
        ``accuracy(x, y)``: accuracy of the method's current prediction (no gradient).
    """

    def __init__(
        self,
        name: str,
        step: Callable[[torch.Tensor, torch.Tensor], None],
        accuracy: Callable[[torch.Tensor, torch.Tensor], float],
    ):
        self.name = name
        self.step = step
        self.accuracy = accuracy


def nni_method(
    name: str,
    kind: str,
    space: ModelSpace,
    *,
    same_work: bool,
    weight_lr: float = NNI_WEIGHT_LR,
    arc_lr: float = NNI_ARC_LR,
    device: str | torch.device = 'cpu',
    channels_last: bool = False,
) -> Method:
    """NNI's ``GumbelDARTS`` (``kind='gumbel'``) or ``DARTS`` supernet, built by the strategy's ``mutate_model``.

    ``device`` and ``channels_last`` (weights and inputs in that layout, as ``BaseStrategy`` runs its supernet by
    default) let a benchmark compare both at the same device and memory layout.

    With ``same_work`` a step is one forward/backward on the batch followed by the weight and architecture optimizer
    steps; otherwise it is what ``DartsLightningModule.training_step`` does: an architecture step on the validation
    batch, then a weight step on the training batch (here both are the given batch).
    """
    strategy = GumbelDARTS() if kind == 'gumbel' else DARTS()
    model = strategy.mutate_model(space).to(device)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=layout)
    arch: list[nn.Parameter] = []
    for module in model.modules():
        if hasattr(module, 'arch_parameters') and module is not model:
            arch += [p for p in module.arch_parameters() if all(p is not q for q in arch)]
    arch_ids = {id(p) for p in arch}
    weights = [p for p in model.parameters() if id(p) not in arch_ids]
    weight_opt = torch.optim.Adam(weights, lr=weight_lr)
    # DartsLightningModule.configure_architecture_optimizers
    arch_opt = torch.optim.Adam(arch, lr=arc_lr, betas=(0.5, 0.999), weight_decay=1e-3)
    model.train()

    def loss_of(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(model(x.contiguous(memory_format=layout)), y)

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        if same_work:
            weight_opt.zero_grad()
            arch_opt.zero_grad()
            loss_of(x, y).backward()
            weight_opt.step()
            arch_opt.step()
        else:
            arch_opt.zero_grad()
            loss_of(x, y).backward()
            arch_opt.step()
            weight_opt.zero_grad()
            loss_of(x, y).backward()
            weight_opt.step()

    @torch.no_grad()
    def accuracy(x: torch.Tensor, y: torch.Tensor) -> float:
        # Batch statistics, as BASE's query evaluation; the supernet's own (mixed) prediction.
        logits = model(x)
        return float(accuracy_of(logits, y))

    return Method(name, step, accuracy)
