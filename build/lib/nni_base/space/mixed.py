"""BASE on any NNI choice: NNI's differentiable supermodules driven by BASE's Gumbel-softmax.

Where this sits in the workflow: :meth:`BaseStrategy.mutate_model <nni_base.BaseStrategy.mutate_model>` turns
the user's model space into a supernet with the mutation hooks of :func:`mutation_hooks`. DARTS-style cells
(an NNI ``Cell`` built from a list or dict of op factories) take the sparse single-path fast path,
:class:`~nni_base.space.gumbel_cell.GumbelMixedCell`. Every other choice goes to the supermodule NNI's own
``DARTS`` / ``GumbelDARTS`` strategies use for it:

========================================  ==============================================================
choice in the space                       supernet module (NNI's, from ``nni.nas.oneshot.pytorch``)
========================================  ==============================================================
``LayerChoice``                           ``DifferentiableMixedLayer``
``InputChoice`` (``sum`` / ``mean``)      ``DifferentiableMixedInput``
``Repeat`` with a depth choice            ``DifferentiableMixedRepeat``
``Cell`` of op *modules*, ``loose_end``   ``DifferentiableMixedCell``
``Cell`` of op modules / plain callable   stays a ``Cell``; its ``LayerChoice`` / ``InputChoice`` as above
``nni.choice`` in ``MutableConv2d`` etc.  ``MixedConv2d``, ``MixedLinear``, ... (``MixedOpDifferentiablePolicy``)
========================================  ==============================================================

Each of those modules weights its candidates with a ``softmax`` module it is given at mutation; BASE gives
it an :class:`ArchSoftmax`, which draws a (hard, straight-through, by default) Gumbel-softmax sample on each
training forward (one per label and forward, shared by the modules of that label), runs the most probable
choice in evaluation (as the cells do), and reports plain probabilities for ``export_probs``. The logits
are NNI's: one parameter per choice label, created by the strategy before mutation as NNI's ``DARTS`` does;
:func:`architecture_logits` reads them back by label for :class:`~nni_base.search.base.BaseSearchModule`
(inner-loop step size, outer optimizer group, prior).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from nni.mutable import Categorical, CategoricalMultiple, Mutable
from nni.nas.nn.pytorch import Cell, InputChoice
from nni.nas.oneshot.pytorch.strategy import no_default_hook
from nni.nas.oneshot.pytorch.supermodule.base import BaseSuperNetModule
from nni.nas.oneshot.pytorch.supermodule.differentiable import (
    DifferentiableMixedCell,
    DifferentiableMixedInput,
    DifferentiableMixedLayer,
    DifferentiableMixedRepeat,
    MixedOpDifferentiablePolicy,
)
from nni.nas.oneshot.pytorch.supermodule.operation import NATIVE_MIXED_OPERATIONS, NATIVE_SUPPORTED_OP_NAMES

from .gumbel_cell import GumbelMixedCell
from .sampled_cell import SampledCell
from .slot_cell import SlotGumbelCell

__all__ = [
    'choice_logits',
    'ArchSoftmax',
    'architecture_logits',
    'fixed_choices',
    'mutation_hooks',
    'new_sample_each_forward',
    'reported_probabilities',
    'SUPPORTED_CHOICES',
]

SUPPORTED_CHOICES = (
    'LayerChoice, InputChoice (reduction sum or mean), Repeat with a depth choice, Cell, and '
    f'nni.choice values in the arguments of {", ".join(NATIVE_SUPPORTED_OP_NAMES)}'
)


class ArchSoftmax(nn.Module):
    """The ``softmax`` BASE gives NNI's differentiable supermodules: candidate weights from their logits.

    * training forward: a Gumbel-softmax sample at temperature ``tau``; with ``hard`` the one-hot (top-``k``
      for an ``InputChoice`` choosing ``k`` inputs) of the sample in value, with the relaxed sample's
      gradient (straight-through). ``relaxation='softmax'``: plain ``softmax(logits)`` (the DARTS ablation).
    * evaluation (``eval()`` or ``use_derived``): the exported choice, the top-``k`` logits, as a constant.
    * ``report``: plain probabilities, for ``export_probs``.

    ``mean`` divides a top-``k`` selection by ``k`` (an ``InputChoice`` with ``reduction='mean'``).
    """

    def __init__(
        self,
        top_k: int = 1,
        mean: bool = False,
        hard: bool = True,
        relaxation: str = 'gumbel',
        draws: dict[int, tuple[torch.Tensor, torch.Tensor]] | None = None,
    ):
        super().__init__()
        # Shared by every sampler of a supernet and emptied at each forward of the whole model
        # (:func:`new_sample_each_forward`): the modules of one label draw one sample per forward, so a sample
        # is one architecture, as in the cells.
        self.draws: dict[int, tuple[torch.Tensor, torch.Tensor]] = {} if draws is None else draws
        if relaxation not in ('gumbel', 'softmax'):
            raise ValueError(f"relaxation must be 'gumbel' or 'softmax', got {relaxation!r}.")
        self.top_k = max(int(top_k), 1)
        self.mean = mean
        self.hard = hard
        self.relaxation = relaxation
        self.tau: float = 1.0
        self.use_derived = False
        self.report = False

    def _select(self, scores: torch.Tensor) -> torch.Tensor:
        k = min(self.top_k, scores.shape[-1])
        chosen = torch.zeros_like(scores).scatter(-1, scores.topk(k, dim=-1).indices, 1.0)
        return chosen / k if self.mean else chosen

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        if self.report:
            return F.softmax(logits.detach(), dim=-1)
        if self.use_derived or not self.training:
            return self._select(logits.detach())
        if self.relaxation == 'softmax':
            return F.softmax(logits, dim=-1)
        drawn = self.draws.get(id(logits))
        if drawn is not None and drawn[0] is logits:
            soft = drawn[1]
        else:
            soft = F.gumbel_softmax(logits, tau=self.tau, hard=False, dim=-1)
            self.draws[id(logits)] = (logits, soft)  # keeps `logits` alive, so its id is not reused meanwhile
        if not self.hard:
            return soft
        # The top-k of one Gumbel perturbation is a sample of k choices without replacement.
        return self._select(soft.detach()) + (soft - soft.detach())  # exactly the selection in value

    def extra_repr(self) -> str:
        return f'top_k={self.top_k}, hard={self.hard}, relaxation={self.relaxation!r}, tau={self.tau}'


def _forget_draws(module: nn.Module, args: Any) -> None:
    for m in module.modules():
        if isinstance(m, ArchSoftmax):
            m.draws.clear()


def new_sample_each_forward(model: nn.Module) -> None:
    """Make every forward of ``model`` (and of its copies) draw a fresh sample for its :class:`ArchSoftmax`.

    A no-op for a model without samplers (DARTS-style cells sample in ``resample()``).
    """
    if any(isinstance(m, ArchSoftmax) for m in model.modules()):
        model.register_forward_pre_hook(_forget_draws)  # a module-level function: the model stays picklable


@contextlib.contextmanager
def fixed_choices(
    softmaxes: Iterable[ArchSoftmax],
    alphas: dict[str, nn.Parameter],
    sample: dict[str, Any],
    choices: dict[str, list[Any]],
) -> Iterator[None]:
    """Inside the block, the choices outside the cells run ``sample``'s values (``choices``: label → values).

    Each choice's logits are replaced by the one-hot of its value (restored after) and the samplers run their
    exported choice, so every module of a label runs that value, in train mode too. Used to score sampled
    architectures with the supernet's weights (the predictor's records, :mod:`nni_base.database`).
    """
    softmaxes = list(softmaxes)
    saved = {label: alphas[label].detach().clone() for label in choices}
    with torch.no_grad():
        for label, values in choices.items():
            alphas[label].zero_()[list(values).index(sample[label])] = 1.0
    for s in softmaxes:
        s.use_derived = True
    try:
        yield
    finally:
        for s in softmaxes:
            s.use_derived = False
        with torch.no_grad():
            for label, value in saved.items():
                alphas[label].copy_(value)


@contextlib.contextmanager
def reported_probabilities(softmaxes: Iterable[ArchSoftmax]) -> Iterator[None]:
    """Inside the block, ``softmaxes`` return plain probabilities (what NNI's ``export_probs`` reports)."""
    softmaxes = list(softmaxes)
    for s in softmaxes:
        s.report = True
    try:
        yield
    finally:
        for s in softmaxes:
            s.report = False


def architecture_logits(module: nn.Module) -> dict[str, nn.Parameter]:
    """The architecture logits of one supernet module, by choice label.

    :class:`~nni_base.space.gumbel_cell.GumbelMixedCell`: its cell label. NNI's differentiable supermodules
    expose their logits publicly only as an unlabelled ``arch_parameters()`` iterator.

    ADAPTER, the one place nni_base reads an NNI convention that is not public API: those modules keep the
    logits under the attribute ``_arch_alpha`` (their ``_arch_parameter_names``), either as one parameter for
    the module's own ``label`` (``DifferentiableMixedLayer`` / ``DifferentiableMixedInput``) or as a
    ``ParameterDict`` keyed by choice label (``MixedOperation``, ``DifferentiableMixedRepeat``, and the
    per-edge logits ``'{cell}/{i}_{j}'`` of ``DifferentiableMixedCell``). We read the names through torch's
    public ``named_parameters`` and keep only what ``arch_parameters()`` yields, so a change in NNI shows as
    a missing label, which ``tests/space/test_any_space.py::test_architecture_logits_adapter`` catches.
    """
    if isinstance(module, SampledCell):
        return {module.label: module.alpha}
    arch_parameters = getattr(module, 'arch_parameters', None)
    if not isinstance(module, BaseSuperNetModule) or arch_parameters is None:
        return {}
    own = {id(p) for p in arch_parameters()}
    logits: dict[str, nn.Parameter] = {}
    for name, p in module.named_parameters(remove_duplicate=False):
        if id(p) not in own:
            continue
        if name == '_arch_alpha':
            logits[str(module.label)] = p  # type: ignore[attr-defined]
        elif name.startswith('_arch_alpha.'):
            logits[name[len('_arch_alpha.') :]] = p
    missing = len(own) - len({id(p) for p in logits.values()})
    if missing:
        raise RuntimeError(
            f'{type(module).__name__} has {missing} architecture parameter(s) that nni_base cannot '
            'label: this NNI version stores its logits differently; see '
            'nni_base.space.mixed.architecture_logits.'
        )
    return logits


# ---- mutation hooks ---------------------------------------------------------------------------------------
def _softmax_kwargs(mutate_kwargs: dict[str, Any], **softmax: Any) -> dict[str, Any]:
    """NNI's mutate kwargs with a fresh :class:`ArchSoftmax` (one per supermodule, like NNI's strategies)."""
    return {
        **mutate_kwargs,
        'mixed_op_sampling': MixedOpDifferentiablePolicy,
        'softmax': ArchSoftmax(
            hard=mutate_kwargs.get('hard', True),
            relaxation=mutate_kwargs.get('relaxation', 'gumbel'),
            draws=mutate_kwargs.get('draws'),
            **softmax,
        ),
    }


def cell_hook(module: nn.Module, name: str, memo: dict[str, Any], mutate_kwargs: dict[str, Any]) -> nn.Module | None:
    """Route an NNI ``Cell``: op factories → the sparse GumbelMixedCell; op modules with ``loose_end`` →
    NNI's DifferentiableMixedCell; anything else stays a ``Cell`` whose choices are mutated one by one."""
    if type(module) is not Cell:
        return None
    if isinstance(module.op_candidates_factory, (list, dict)):
        cell = SlotGumbelCell if mutate_kwargs.get('parameterization', 'darts') == 'slot' else GumbelMixedCell
        return cell.mutate(module, name, memo, mutate_kwargs)
    if module.op_candidates_factory is None and module.merge_op == 'loose_end':
        return DifferentiableMixedCell.mutate(module, name, memo, _softmax_kwargs(mutate_kwargs))
    return None


def input_hook(module: nn.Module, name: str, memo: dict[str, Any], mutate_kwargs: dict[str, Any]) -> nn.Module | None:
    """``InputChoice`` → NNI's DifferentiableMixedInput, whose evaluation keeps its ``n_chosen`` inputs."""
    if type(module) is not InputChoice:
        return None
    if module.reduction not in ('sum', 'mean'):
        raise TypeError(
            f'InputChoice {module.label!r} ({name}) reduces its inputs with {module.reduction!r}; '
            "BaseStrategy mixes candidate inputs by weight and supports reduction='sum' or 'mean'. "
            "Build it with reduction='sum' (or 'mean'), or fix the choice."
        )
    return DifferentiableMixedInput.mutate(
        module, name, memo, _softmax_kwargs(mutate_kwargs, top_k=module.n_chosen or 1, mean=module.reduction == 'mean')
    )


def _differentiable(hook):
    def run(module: nn.Module, name: str, memo: dict[str, Any], mutate_kwargs: dict[str, Any]):
        return hook(module, name, memo, _softmax_kwargs(mutate_kwargs))

    run.__name__ = getattr(hook, '__qualname__', 'hook')
    return run


def _with_choices(hook):
    """Only modules with a choice in their arguments: NNI's ``MixedOperation.mutate`` also rebuilds fixed ones
    (e.g. every ``nni.nas.nn.pytorch.Conv2d`` of a DARTS space), re-initialising their weights for nothing."""

    def run(module: nn.Module, name: str, memo: dict[str, Any], mutate_kwargs: dict[str, Any]):
        if isinstance(module, Mutable) and not module.simplify():
            return None
        return hook(module, name, memo, mutate_kwargs)

    run.__name__ = hook.__name__
    return run


def unsupported_hook(module: nn.Module, name: str, memo: dict[str, Any], mutate_kwargs: dict[str, Any]) -> bool:
    """Last hook: a module whose choices no earlier hook handled is refused, naming it and the fix."""
    try:
        return no_default_hook(module, name, memo, mutate_kwargs)
    except TypeError as e:
        labels = sorted(str(label) for label in getattr(module, 'simplify', dict)())
        raise TypeError(
            f'BaseStrategy cannot search module {name!r} ({type(module).__name__}, choices {labels}): '
            f'{e} BaseStrategy searches {SUPPORTED_CHOICES}. Fix these choices to single values, '
            'rewrite the module with the supported primitives, or pass BaseStrategy(mutation_hooks=[...]) '
            'with a hook that returns a differentiable supermodule for it.'
        ) from None


def mutation_hooks() -> list:
    """BaseStrategy's mutation hooks, in order (see the module docstring for what each choice becomes)."""
    hooks: list = [
        cell_hook,
        _differentiable(DifferentiableMixedLayer.mutate),
        input_hook,
        _differentiable(DifferentiableMixedRepeat.mutate),
    ]
    hooks += [_with_choices(_differentiable(op.mutate)) for op in NATIVE_MIXED_OPERATIONS]
    hooks.append(unsupported_hook)
    return hooks


def choice_logits(choices: dict[str, Any], seed: int) -> dict[str, nn.Parameter]:
    """One logit vector per choice label of a simplified space (NNI's DARTS does the same), shared by every module
    with that label; a choice that is not categorical is refused with what to use instead."""
    # A generator of their own: drawing them from torch's global one would shift every seeded initialisation
    # after them (the weights and cell logits of DARTS spaces would differ from earlier versions).
    generator = torch.Generator().manual_seed(seed)
    logits = {}
    for label, mutable in choices.items():
        if not isinstance(mutable, (Categorical, CategoricalMultiple)):
            raise TypeError(
                f'BaseStrategy keeps one categorical distribution per choice, but choice {label!r} is '
                f'a {type(mutable).__name__} ({mutable!r}). Use nni.choice({label!r}, [...]) over a '
                'few values instead, or fix it to one value.'
            )
        logits[label] = nn.Parameter(torch.randn(len(mutable.values), generator=generator) * 1e-3)
    return logits
