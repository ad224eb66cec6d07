"""How a hyper-parameter is declared and checked: :func:`hparam` (default, kind, checks, tuning range) and
:func:`coerce` (one value against its declaration), used by :mod:`nni_base.config` and the nnictl trial's own
parameters (:mod:`nni_base.cli.trial_params`)."""

from __future__ import annotations

import json
import math
from dataclasses import field
from typing import Any, get_args

__all__ = ['Default', 'choice', 'coerce', 'hparam', 'passed']


def hparam(
    default: Any,
    kind: str,
    *,
    minimum: float | None = None,
    optional: bool = False,
    choices: tuple[str, ...] | None = None,
    tune: dict[str, Any] | None = None,
) -> Any:
    """Declare a hyper-parameter: its default, its kind (int/float/bool/choice/any) and its checks.

    ``tune`` is the NNI search-space entry (``{'_type': ..., '_value': ...}``) of a knob worth tuning.
    """
    return field(
        default=default,
        metadata={'kind': kind, 'minimum': minimum, 'optional': optional, 'choices': choices, 'tune': tune},
    )


def choice(options: Any, default: str, **kwargs: Any) -> Any:
    """Declare a choice whose accepted values are those of the ``Literal`` alias ``options`` (declared once)."""
    values = get_args(options)
    if default not in values:
        raise ValueError(f'default {default!r} is not one of {values}')
    return hparam(default, 'choice', choices=values, **kwargs)


def coerce(name: str, value: Any, metadata: Any, *, json_spelling: bool = False) -> Any:
    """Check one value against its declaration; integral floats (as tuners send) become ints.

    Raises ``ValueError`` naming the parameter and what it accepts, spelt as in Python (``True``, ``None``) or, with
    ``json_spelling`` (the nnictl trial's parameters come as JSON), as in JSON (``true``, ``null``).
    """
    kind, minimum = metadata['kind'], metadata['minimum']
    if value is None and metadata['optional']:
        return None
    none = (' or null' if json_spelling else ' or None') if metadata['optional'] else ''
    shown = _spelt(value, json_spelling)
    if kind == 'int':
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f'{name} must be an integer{none}, got {shown}.')
    elif kind == 'float':
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f'{name} must be a finite number{none}, got {shown}.')
        value = float(value)
    elif kind == 'bool':
        if not isinstance(value, bool):
            raise ValueError(f'{name} must be {"true or false" if json_spelling else "True or False"}, got {shown}.')
    elif kind == 'choice':
        if value not in metadata['choices']:
            accepted = ', '.join(_spelt(c, json_spelling) for c in metadata['choices'])
            raise ValueError(f'{name} must be one of {accepted}, got {shown}.')
    if minimum is not None and kind in ('int', 'float') and value < minimum:
        raise ValueError(f'{name} must be >= {minimum}, got {value}.')
    return value


def _spelt(value: Any, json_spelling: bool) -> str:
    """``value`` as the user wrote it: JSON for the trial's parameters, ``repr`` otherwise."""
    if json_spelling:
        try:
            return json.dumps(value)
        except (TypeError, ValueError):
            pass
    return repr(value)


class Default:
    """A keyword argument's default, marked so a function can tell it from the same value passed explicitly: with
    a prior, only the arguments a caller passed override the prior's stored settings. Shows as the plain value in a
    signature (``help(BaseStrategy)``: ``inner_steps=5``)."""

    __slots__ = ('value',)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        return repr(self.value)


def passed(arguments: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``arguments`` (a function's parameters) that its caller passed: those that are not a
    :class:`Default`."""
    return {name: value for name, value in arguments.items() if not isinstance(value, Default)}
