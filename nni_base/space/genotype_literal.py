"""The published genotype string, ``Genotype(normal=[...], normal_concat=range(2, 6), ...)``, read without ``eval``.

Only literals are read (``ast.literal_eval`` and a ``range(a, b)`` call checked by hand), so text from a paper, a
log or a stranger is safe to parse; :func:`nni_base.space.genotype.parse_genotype` validates what comes out.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from typing import Any

__all__ = ['genotype_fields']


def genotype_fields(text: str, names: Sequence[str]) -> dict[str, Any]:
    """The keyword arguments of a ``Genotype(...)`` call in ``text``, each one of ``names``, as plain values.

    Fields ending in ``_concat`` are ``range(a[, b])`` or a list of ints, the others lists of ``(str, int)`` pairs.
    Raises ValueError on anything else (positional arguments, ``**kwargs``, names, other calls, repeated fields).
    """
    if not isinstance(text, str):
        raise ValueError(f'expected a genotype string, got {type(text).__name__}')
    try:
        tree = ast.parse(text.strip(), mode='eval')
    except SyntaxError as exc:
        raise ValueError(f'not a valid genotype expression: {exc.msg}') from None
    call = tree.body
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == 'Genotype'):
        raise ValueError('expected a call of the form Genotype(normal=..., reduce=...); nothing else is accepted')
    if call.args:
        raise ValueError('Genotype(...) must use keyword arguments only (normal=..., normal_concat=..., ...)')

    fields: dict[str, Any] = {}
    for kw in call.keywords:
        if kw.arg is None:
            raise ValueError('Genotype(...) must not use **kwargs')
        if kw.arg not in names:
            raise ValueError(f'unknown Genotype field {kw.arg!r}; expected {", ".join(names)}')
        if kw.arg in fields:
            raise ValueError(f'Genotype field {kw.arg!r} given more than once')
        if kw.arg.endswith('_concat'):
            fields[kw.arg] = _parse_concat(kw.value, kw.arg)
        else:
            fields[kw.arg] = _parse_pairs(kw.value, kw.arg)
    return fields


def _literal(node: ast.expr, field: str) -> Any:
    try:
        # literal_eval only builds literals (no names, calls or attribute access), so it is safe on untrusted text.
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise ValueError(f'{field} must be a literal, got {ast.unparse(node)!r}') from None


def _parse_pairs(node: ast.expr, field: str) -> list[tuple[str, int]]:
    value = _literal(node, field)
    if not isinstance(value, list | tuple):
        raise ValueError(f'{field} must be a list of (op, input) pairs, got {ast.unparse(node)!r}')
    pairs: list[tuple[str, int]] = []
    for pair in value:
        if not (
            isinstance(pair, list | tuple)
            and len(pair) == 2
            and isinstance(pair[0], str)
            and isinstance(pair[1], int)
            and not isinstance(pair[1], bool)
        ):
            raise ValueError(f'{field} must contain (str, int) pairs, got {pair!r}')
        pairs.append((pair[0], pair[1]))
    return pairs


def _parse_concat(node: ast.expr, field: str) -> list[int]:
    if isinstance(node, ast.Call):
        if not (isinstance(node.func, ast.Name) and node.func.id == 'range' and not node.keywords):
            raise ValueError(f'{field} must be range(a, b) or a list of ints, got {ast.unparse(node)!r}')
        args = [_literal(arg, field) for arg in node.args]
        if not (1 <= len(args) <= 2 and all(isinstance(a, int) and not isinstance(a, bool) for a in args)):
            raise ValueError(f'{field} must be range(a, b) with int bounds, got {ast.unparse(node)!r}')
        bounds = range(*args)
        if len(bounds) > 64:
            # Refuse before materialising: a hostile range(10**12) would otherwise exhaust memory.
            raise ValueError(f'{field} is far too long: {ast.unparse(node)!r}')
        return list(bounds)
    value = _literal(node, field)
    if not (isinstance(value, list | tuple) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
        raise ValueError(f'{field} must be range(a, b) or a list of ints, got {ast.unparse(node)!r}')
    return list(value)
