"""The BASE prior on disk: meta-trained weights + architecture logits + the space they belong to.

A prior is a plain dict of tensors and JSON-like values saved with ``torch.save``; it is read with
``torch.load(..., weights_only=True)`` so loading one never runs code from the file. Writes are
atomic (:func:`nni_base.io.write_torch`) and refuse non-finite tensors.
"""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from nni.mutable import Categorical, CategoricalMultiple

from ..errors import CorruptPriorError, PriorMismatchError
from ..io import UnusablePathError, check_file_target, describe_path, write_torch
from ..space.mixed import architecture_logits
from ..space.sampled_cell import SampledCell
from ..space.slot_cell import SlotGumbelCell
from .head import head_mismatch
from .shipped import SHIPPED_PRIORS, is_prior_name, resolve_prior_path

PRIOR_FORMAT = 'nni-base-prior'
PRIOR_VERSION = 1

__all__ = ['space_signature', 'build_prior', 'save_prior', 'load_prior', 'apply_prior', 'space_arguments']


def space_signature(model: nn.Module) -> dict[str, list[Any]]:
    """Every choice label of a model space with its candidate values (JSON-like)."""
    signature: dict[str, list[Any]] = {}
    for label, mutable in model.simplify().items():  # type: ignore[operator]
        # Plain built-in types only (NNI's labels are str subclasses), so weights_only loading accepts them.
        if isinstance(mutable, (Categorical, CategoricalMultiple)):
            signature[str(label)] = [_plain(v) for v in mutable.values]
        else:
            signature[str(label)] = [repr(mutable)]
    return signature


def _plain(value: Any) -> Any:
    for kind in (bool, int, float, str):
        if isinstance(value, kind):
            return kind(value)
    return repr(value)


def build_prior(
    model: nn.Module,
    alphas: dict[str, torch.Tensor],
    *,
    config: dict[str, Any],
    tasks: dict[str, Any] | None = None,
    meta: dict[str, Any] | None = None,
    conditioning: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Collect everything a prior holds, detached and on CPU.

    ``conditioning``: the dataset encoder, α generator and predictor of a dataset-conditioned prior
    (:meth:`nni_base.database.Conditioner.state`, plain tensors); priors without it load as before.
    """
    prior = {
        'format': PRIOR_FORMAT,
        'version': PRIOR_VERSION,
        'space': {
            'class': f'{type(model).__module__}.{type(model).__qualname__}',
            'signature': space_signature(model),
            'arguments': space_arguments(model),
        },
        'state_dict': {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        'alpha': {str(label): a.detach().cpu().clone() for label, a in alphas.items()},
        'config': dict(config),
        'tasks': dict(tasks or {}),
        'meta': dict(meta or {}),
    }
    if conditioning is not None:
        prior['conditioning'] = conditioning
    return prior


def save_prior(prior: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write a prior atomically; a prior with NaN/inf tensors is refused and nothing is written."""
    bad = [
        k
        for k, v in {**prior['state_dict'], **{f'alpha/{k}': v for k, v in prior['alpha'].items()}}.items()
        if v.is_floating_point() and not bool(torch.isfinite(v).all())
    ]
    if bad:
        raise FloatingPointError(
            f'Refusing to save a prior with non-finite values in {bad[:5]}; '
            f'the previous file at {path} (if any) is left untouched.'
        )
    check_file_target(path, 'prior', suggest='prior.pt')  # its message is the right one: no advice to free space
    try:
        return write_torch(prior, path)
    except UnusablePathError:
        raise
    except OSError as e:  # a full disk (ENOSPC), a quota, a read-only or vanished folder
        raise OSError(
            e.errno,
            f'Could not write the prior to {path}: {e.strerror or e}. The previous file there (if '
            'any) is left untouched and no partial file remains; free space or choose another '
            'folder (save_prior_to=...) and save again.',
        ) from e


def load_prior(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check a prior file (never executes code from it); ``path`` may name a shipped prior (``'default'``,
    :data:`~nni_base.prior.shipped.SHIPPED_PRIORS`).

    Raises
    ------
    TypeError
        ``path`` is not a path (a str or ``os.PathLike``).
    FileNotFoundError
        Nothing is at ``path``.
    UnusablePathError
        ``path`` is a directory, FIFO, device node or socket.
    CorruptPriorError
        The file is not a prior nni-base wrote, or is damaged.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(
            f'A prior is given as the path of a prior file (a str or os.PathLike such as '
            f"'runs/quickstart/prior.pt') or a shipped prior's name ('default'), got {type(path).__name__} "
            f'{path!r}. Meta-training writes one: '
            "BaseStrategy(save_prior_to='prior.pt') with an EpisodicClassification evaluator."
        )
    name, path = path, resolve_prior_path(path)
    kind = describe_path(path)
    if kind is None and isinstance(name, str) and name in SHIPPED_PRIORS:
        raise FileNotFoundError(
            f'The shipped prior {name!r} is not in this installation ({path} is missing). Build it with '
            f'`python -m nni_base.cli.shipped_prior --name {name}`, or reinstall nni-base.'
        )
    if kind is None:
        named = (
            f' and is not a shipped prior ({", ".join(map(repr, sorted(SHIPPED_PRIORS)))})'
            if is_prior_name(name)
            else ''
        )
        raise FileNotFoundError(
            f'Prior file {path} does not exist{named}. Name a shipped prior (prior={sorted(SHIPPED_PRIORS)[0]!r}) '
            'or meta-train one first (BaseStrategy with an EpisodicClassification evaluator, or '
            'examples/quickstart.py).'
        )
    if not path.is_file():  # reading a FIFO or a device would block or never end
        inside = path / 'prior.pt'
        hint = f'; pass {inside}' if path.is_dir() and inside.is_file() else ''
        raise UnusablePathError(
            f'Prior {path} is {kind}, not a prior file{hint}. Give the path of the file meta-training wrote '
            "(BaseStrategy(save_prior_to='prior.pt'), e.g. runs/quickstart/prior.pt)."
        )
    prior = _read_tensors(path)
    if not isinstance(prior, dict) or prior.get('format') != PRIOR_FORMAT:
        raise CorruptPriorError(_not_a_prior(path, prior))
    if prior.get('version') != PRIOR_VERSION:
        raise CorruptPriorError(
            f'{path} has prior format version {prior.get("version")}, this nni-base reads '
            f'version {PRIOR_VERSION}; re-run meta-training with this version.'
        )
    missing = [k for k in ('space', 'state_dict', 'alpha', 'config') if k not in prior]
    if missing:
        raise CorruptPriorError(f'Prior {path} lacks entries {missing}; it is incomplete or damaged.')
    malformed = _malformed_entries(prior)
    if malformed:
        raise CorruptPriorError(
            f'Prior {path} has malformed entries: {"; ".join(malformed)}. It is damaged or was '
            'not written by nni-base; meta-train again or point to another prior.'
        )
    return prior


def _read_tensors(path: Path) -> Any:
    """The file's contents through the weights-only unpickler, or the reason it refused them."""
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as e:  # refused by the weights-only unpickler: not tensors and plain values
        raise CorruptPriorError(
            f'Refusing to read prior {path}: it holds something other than tensors and plain values '
            f'({_refusal(e)}). Priors written by nni-base never do, so the file is damaged, is not a prior, or was '
            'made to run code when loaded; nothing in it was run. Meta-train again (BaseStrategy(save_prior_to=...)) '
            'or point to a prior file that nni-base wrote.'
        ) from e
    except Exception as e:  # torch raises many types for truncated or foreign files
        raise CorruptPriorError(
            f'Cannot read prior {path}: {type(e).__name__}: {_refusal(e)}. The file is damaged '
            '(cut off or overwritten) or was not written by nni-base; meta-train again or point '
            'to another prior.'
        ) from e


def _not_a_prior(path: Path, content: Any) -> str:
    """Why a torch file that loaded is not a prior, and how to make one."""
    if isinstance(content, dict):
        keys = sorted(map(str, content))
        held = f'a dict with keys {keys[:6]}' + (' ...' if len(keys) > 6 else '')
    else:
        held = f'a {type(content).__name__}'
    lightning = isinstance(content, dict) and 'pytorch-lightning_version' in content
    return (
        f'{path} is not an nni-base prior: it holds {held}, without the {PRIOR_FORMAT!r} format marker. '
        + (
            'It is a Lightning checkpoint: pass it as BaseStrategy(resume_from=...) to continue meta-training. '
            if lightning
            else ''
        )
        + 'A prior is the file BaseStrategy(save_prior_to=...) writes while meta-training on an '
        'EpisodicClassification evaluator (examples/quickstart.py writes runs/quickstart/prior.pt); '
        'meta-train one that way and pass its path as prior=.'
    )


def _malformed_entries(prior: dict[str, Any]) -> list[str]:
    """What is wrong with the types of a prior's required entries (nothing for a prior nni-base wrote)."""

    def tensors(value: Any) -> bool:
        return isinstance(value, dict) and all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items()
        )

    problems = []
    space = prior['space']
    signature = space.get('signature') if isinstance(space, dict) else None
    if not (
        isinstance(signature, dict) and all(isinstance(k, str) and isinstance(v, list) for k, v in signature.items())
    ):
        problems.append("'space' must hold a 'signature' mapping choice labels to lists of candidates")
    elif not isinstance(space.get('class', ''), str):
        problems.append("'space'/'class' must be a string")
    for key in ('state_dict', 'alpha'):
        if not tensors(prior[key]):
            problems.append(f'{key!r} must map names to tensors')
    if not isinstance(prior['config'], dict):
        problems.append("'config' must be a dict")
    return problems


def space_arguments(model: nn.Module) -> dict[str, int]:
    """The size arguments of a DARTS-like space (``width``, ``num_cells``, ``num_classes``) that it has."""
    return {
        k: int(getattr(model, k))
        for k in ('width', 'num_cells', 'num_classes')
        if isinstance(getattr(model, k, None), int)
    }


def _describe(arguments: dict[str, Any]) -> str:
    return ', '.join(f'{k}={v}' for k, v in arguments.items()) or 'unknown arguments'


def _prior_arguments(prior: dict[str, Any]) -> dict[str, Any]:
    """The prior's space arguments: stored since they were recorded, else read off its tensors."""
    stored = prior['space'].get('arguments')
    if stored:
        return dict(stored)
    state = prior['state_dict']
    found: dict[str, Any] = {}
    if 'stem.0.weight' in state:  # NNI's DARTS stem: Conv2d(3, width * 3)
        found['width'] = int(state['stem.0.weight'].shape[0]) // 3
    blocks = {tuple(k.split('.')[:4]) for k in state if k.startswith('stages.') and '.blocks.' in k}
    if blocks:  # NNI's DARTS: stages.<stage>.blocks.<cell>
        found['num_cells'] = len(blocks)
    ways = prior.get('tasks', {}).get('ways')
    if ways:
        found['num_classes'] = int(ways)
    return found


def _refusal(error: BaseException) -> str:
    """What torch's loader objected to, without its advice to load with ``weights_only=False`` (unsafe, and no fix
    for a file nni-base did not write)."""
    text = str(error)
    found = re.search(r'WeightsUnpickler error:\s*([^\n]+)', text)
    if found:  # e.g. 'Unsupported global: GLOBAL builtins.exec was not an allowed global by default. Please ...'
        return found.group(1).split('. ')[0].strip().rstrip('.')
    lines = [line.strip() for line in text.splitlines() if line.strip() and 'weights_only' not in line]
    return (lines[0] if lines else type(error).__name__).rstrip('.')


def apply_prior(model: nn.Module, prior: dict[str, Any], alpha_scale: float = 1.0) -> list[str]:
    """Load a prior into a supernet, after checking that both describe the same space.

    A classifier with another number of outputs than the prior's (a dataset with another class count) is
    not refused: everything else is loaded and the names of those heads are returned, for
    :func:`.head.initialise_head` to initialise before adaptation. The prior file keeps its own head.
    The architecture logits are multiplied by ``alpha_scale`` once loaded (``prior_alpha_scale``: 0 keeps only
    the prior's weights).
    """
    expected = prior['space']['signature']
    actual = space_signature(model)
    if expected != actual:
        only_prior = sorted(set(expected) - set(actual))
        only_space = sorted(set(actual) - set(expected))
        differ = sorted(k for k in set(expected) & set(actual) if expected[k] != actual[k])
        raise PriorMismatchError(
            f'The prior was meta-trained on another search space ({prior["space"]["class"]}): '
            f'choices only in the prior: {only_prior[:5]}, only in this space: {only_space[:5]}, '
            f'with other candidates: {differ[:5]}. Build the space with the same arguments as for meta-training.'
        )
    _check_parameterization(model, prior)
    own = model.state_dict()
    saved = prior['state_dict']
    heads = head_mismatch(model, saved)
    head_keys = {f'{name}.{kind}' for name in heads for kind in ('weight', 'bias')}
    problems = [f'{k}: missing in prior' for k in own if k not in saved]
    problems += [f'{k}: not in this space' for k in saved if k not in own]
    problems += [
        f'{k}: prior {tuple(saved[k].shape)} vs space {tuple(own[k].shape)}'
        for k in own
        if k in saved and saved[k].shape != own[k].shape and k not in head_keys
    ]
    if problems:
        theirs, ours = _prior_arguments(prior), space_arguments(model)
        raise PriorMismatchError(
            f'The prior does not fit this space ({len(problems)} tensors differ): {problems[:5]}. The prior was '
            f'meta-trained on a space with {_describe(theirs)}; this space has {_describe(ours)}. Build the space '
            'with the width and num_cells of meta-training (num_classes may differ: the head is rebuilt).'
        )
    model.load_state_dict({k: v for k, v in saved.items() if k not in head_keys}, strict=False)
    if alpha_scale != 1.0:
        with torch.no_grad():
            for logits in {id(p): p for m in model.modules() for p in architecture_logits(m).values()}.values():
                logits.mul_(alpha_scale)
    return heads


def _check_parameterization(model: nn.Module, prior: dict[str, Any]) -> None:
    """Refuse a prior whose alpha layout (``'darts'`` per edge, ``'slot'`` per input slot) is not the model's."""
    cells = [m for m in model.modules() if isinstance(m, SampledCell)]
    if not cells:
        return
    own = 'slot' if isinstance(cells[0], SlotGumbelCell) else 'darts'
    saved = prior['config'].get('parameterization', 'darts')  # priors written before the option are 'darts'
    if saved != own:
        raise PriorMismatchError(
            f'The prior was meta-trained with parameterization={saved!r}, this supernet uses {own!r}: their '
            f'architecture logits do not correspond. Build the strategy with parameterization={saved!r} '
            '(nni_base.api.load_strategy(prior) takes it from the prior).'
        )
