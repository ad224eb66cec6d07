"""DARTS-style genotypes and their conversion to and from NNI samples.

DARTS-family papers publish cell architectures as ``Genotype(normal=[...], normal_concat=..., reduce=[...],
reduce_concat=...)``, where each cell is a list of 8 ``(op, input)`` pairs, two per intermediate node in node
order 2, 3, 4, 5. NNI's :class:`nni.nas.hub.pytorch.DARTS` space expresses the same architecture as a flat sample
with keys ``'{cell}/op_{i}_{k}'`` (op name) and ``'{cell}/input_{i}_{k}'`` (``[j]``), which is what strategies
export and what :meth:`~nni.nas.hub.pytorch.DARTS.freeze` consumes.

This module converts between the two forms, and parses the published string form without ``eval`` so that
genotypes copied from papers or logs can be loaded safely.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any, NamedTuple

from .genotype_literal import genotype_fields

__all__ = [
    'CELLS',
    'CONCAT',
    'DARTS_OPS',
    'DARTS_V2',
    'Genotype',
    'NODES',
    'as_genotype',
    'cell_from_sample',
    'format_genotype',
    'genotype_to_sample',
    'parse_genotype',
    'sample_keys',
    'sample_to_genotype',
    'validate_genotype',
]

#: Operator candidates of NNI's DARTS space (``DARTS.DARTS_OPS``), copied so this module does not import torch.
DARTS_OPS: tuple[str, ...] = (
    'max_pool_3x3',
    'avg_pool_3x3',
    'skip_connect',
    'sep_conv_3x3',
    'sep_conv_5x5',
    'dil_conv_3x3',
    'dil_conv_5x5',
)

#: Cell labels used by NNI's DARTS space.
CELLS: tuple[str, str] = ('normal', 'reduce')

#: Intermediate node indices; nodes 0 and 1 are the cell inputs c_{k-2} and c_{k-1}.
NODES: tuple[int, ...] = (2, 3, 4, 5)

#: NNI's DARTS space (``merge_op='all'``) always concatenates every intermediate node.
CONCAT: tuple[int, ...] = NODES

_PAIRS_PER_CELL = 2 * len(NODES)

#: Fields every genotype form must provide, named as in the original DARTS code.
_FIELDS: tuple[str, ...] = ('normal', 'normal_concat', 'reduce', 'reduce_concat')


class Genotype(NamedTuple):
    """A DARTS cell architecture, with the same field names as the original DARTS code.

    Attributes
    ----------
    normal
        Eight ``(op, input)`` pairs of the normal cell, two per node in node order 2, 3, 4, 5.
    normal_concat
        Nodes concatenated into the normal cell's output; always ``[2, 3, 4, 5]`` in NNI's DARTS space.
    reduce
        Eight ``(op, input)`` pairs of the reduction cell.
    reduce_concat
        Nodes concatenated into the reduction cell's output.
    """

    normal: list[tuple[str, int]]
    normal_concat: list[int]
    reduce: list[tuple[str, int]]
    reduce_concat: list[int]


#: The published DARTS (second order) genotype from Liu et al., 2019; equals NNI's ``'darts-v2'`` architecture.
DARTS_V2 = Genotype(
    normal=[
        ('sep_conv_3x3', 0),
        ('sep_conv_3x3', 1),
        ('sep_conv_3x3', 0),
        ('sep_conv_3x3', 1),
        ('sep_conv_3x3', 1),
        ('skip_connect', 0),
        ('skip_connect', 0),
        ('dil_conv_3x3', 2),
    ],
    normal_concat=[2, 3, 4, 5],
    reduce=[
        ('max_pool_3x3', 0),
        ('max_pool_3x3', 1),
        ('skip_connect', 2),
        ('max_pool_3x3', 1),
        ('max_pool_3x3', 0),
        ('skip_connect', 2),
        ('skip_connect', 2),
        ('max_pool_3x3', 1),
    ],
    reduce_concat=[2, 3, 4, 5],
)


def sample_keys(cell: str | None = None) -> list[str]:
    """List the sample keys of NNI's DARTS space, in node order.

    Parameters
    ----------
    cell
        ``'normal'`` or ``'reduce'``; ``None`` lists the keys of both cells (32 in all).

    Returns
    -------
    list of str
        Keys ``'{cell}/op_{i}_{k}'`` and ``'{cell}/input_{i}_{k}'``.
    """
    cells = CELLS if cell is None else (_check_cell(cell),)
    return [f'{c}/{kind}_{i}_{k}' for c in cells for i in NODES for k in (0, 1) for kind in ('op', 'input')]


def as_genotype(genotype: Any) -> Genotype:
    """Convert any common genotype form into a validated :class:`Genotype`.

    Parameters
    ----------
    genotype
        One of: this module's :class:`Genotype`; DARTS's own ``Genotype`` namedtuple (or any other object) with
        attributes ``normal``, ``normal_concat``, ``reduce`` and ``reduce_concat``; a mapping with those keys; or
        the published string form (parsed by :func:`parse_genotype`, never evaluated).

    Returns
    -------
    Genotype
        The genotype, with cells as lists of ``(op, input)`` tuples and concats as ``[2, 3, 4, 5]``.

    Raises
    ------
    ValueError
        If a field is missing or the genotype is invalid (see :func:`validate_genotype`).
    """
    if isinstance(genotype, Genotype):
        _validate_fields(genotype)
        return genotype
    if isinstance(genotype, str):
        return parse_genotype(genotype)
    if isinstance(genotype, Mapping):
        missing = [field for field in _FIELDS if field not in genotype]
        values = {} if missing else {field: genotype[field] for field in _FIELDS}
        form = 'key'
    else:
        missing = [field for field in _FIELDS if not hasattr(genotype, field)]
        values = {} if missing else {field: getattr(genotype, field) for field in _FIELDS}
        form = 'attribute'
    if missing:
        raise ValueError(
            f'{type(genotype).__name__} is not a genotype: it lacks the {form}(s) {", ".join(missing)}; a genotype '
            f"needs {', '.join(_FIELDS)} (as attributes, e.g. DARTS's Genotype namedtuple, or as mapping keys), or "
            "can be given as the string 'Genotype(normal=[...], normal_concat=..., reduce=[...], reduce_concat=...)'"
        )
    _validate_fields(Genotype(**values))
    # Validated: every pair is a 2-element list/tuple and every concat equals CONCAT.
    return Genotype(
        normal=[(op, j) for op, j in values['normal']],
        normal_concat=list(CONCAT),
        reduce=[(op, j) for op, j in values['reduce']],
        reduce_concat=list(CONCAT),
    )


def validate_genotype(genotype: Any) -> None:
    """Check that a genotype can be expressed in NNI's DARTS space.

    Parameters
    ----------
    genotype
        The genotype to check, in any form accepted by :func:`as_genotype`.

    Raises
    ------
    ValueError
        If a field is missing, a cell does not have exactly 8 pairs, a pair is malformed, an op is ``'none'`` or
        unknown, an input index is out of range for its node, or a concat list is not ``[2, 3, 4, 5]``.
    """
    as_genotype(genotype)


def _validate_fields(genotype: Genotype) -> None:
    for cell in CELLS:
        _validate_pairs(getattr(genotype, cell), cell)
        concat = getattr(genotype, f'{cell}_concat')
        try:
            concat_list = list(concat)
        except TypeError:
            concat_list = None
        if concat_list != list(CONCAT):
            raise ValueError(
                f"{cell}_concat must be [2, 3, 4, 5] (NNI's DARTS space concatenates every intermediate node), "
                f'got {concat!r}'
            )


def genotype_to_sample(genotype: Any) -> dict[str, Any]:
    """Convert a genotype into an NNI sample for :class:`nni.nas.hub.pytorch.DARTS`.

    Parameters
    ----------
    genotype
        A valid DARTS genotype in any form accepted by :func:`as_genotype` (a ``Genotype``, DARTS's own, a
        mapping, the published string).

    Returns
    -------
    dict
        The 32-key sample, with op names as strings and inputs as one-element lists ``[j]``, in the same form as
        NNI's exported architectures, so it can be passed to ``DARTS(...).freeze(sample)``.

    Raises
    ------
    ValueError
        If a field is missing or the genotype is invalid (see :func:`validate_genotype`).
    """
    genotype = as_genotype(genotype)
    sample: dict[str, Any] = {}
    for cell in CELLS:
        pairs = getattr(genotype, cell)
        for p, (op, j) in enumerate(pairs):
            i, k = NODES[p // 2], p % 2
            sample[f'{cell}/op_{i}_{k}'] = op
            sample[f'{cell}/input_{i}_{k}'] = [j]
    return sample


def cell_from_sample(sample: Mapping[str, Any], cell: str) -> list[tuple[str, int]]:
    """Extract one cell's ``(op, input)`` pairs from an NNI sample.

    Parameters
    ----------
    sample
        An NNI sample of the DARTS space. Keys of the other cell and unrelated keys (e.g. ``width``) are ignored.
    cell
        ``'normal'`` or ``'reduce'``.

    Returns
    -------
    list of (str, int)
        Eight pairs in node order 2, 3, 4, 5.

    Raises
    ------
    ValueError
        If keys are missing or a value is malformed or out of range.
    """
    keys = sample_keys(cell)
    missing = [key for key in keys if key not in sample]
    if missing:
        raise ValueError(f'sample is missing {len(missing)} key(s) of cell {cell!r}: {", ".join(missing)}')
    pairs: list[tuple[str, int]] = []
    for i in NODES:
        for k in (0, 1):
            op = sample[f'{cell}/op_{i}_{k}']
            pairs.append((op, _unwrap_input(sample[f'{cell}/input_{i}_{k}'], f'{cell}/input_{i}_{k}')))
    _validate_pairs(pairs, cell)
    return pairs


def sample_to_genotype(sample: Mapping[str, Any]) -> Genotype:
    """Convert an NNI sample of the DARTS space into a genotype.

    Parameters
    ----------
    sample
        A sample with the 32 cell keys; inputs may be ``[j]`` (NNI's form) or a bare ``j``. Other keys are ignored.

    Returns
    -------
    Genotype
        The genotype, with ``normal_concat = reduce_concat = [2, 3, 4, 5]``.

    Raises
    ------
    ValueError
        If keys are missing or values are invalid.
    """
    missing = [key for key in sample_keys() if key not in sample]
    if missing:  # every missing key at once, not one cell at a time
        raise ValueError(f'sample is missing {len(missing)} key(s): {", ".join(missing)}')
    normal, reduce = cell_from_sample(sample, 'normal'), cell_from_sample(sample, 'reduce')
    return Genotype(normal=normal, normal_concat=list(CONCAT), reduce=reduce, reduce_concat=list(CONCAT))


def format_genotype(genotype: Any) -> str:
    """Format a genotype in the published string form, readable by :func:`parse_genotype`.

    Parameters
    ----------
    genotype
        A valid genotype, in any form accepted by :func:`as_genotype`.

    Returns
    -------
    str
        e.g. ``"Genotype(normal=[('sep_conv_3x3', 0), ...], normal_concat=range(2, 6), reduce=[...], ...)"``.
    """
    genotype = as_genotype(genotype)

    def pairs(cell: str) -> str:
        return '[' + ', '.join(f'({op!r}, {int(j)})' for op, j in getattr(genotype, cell)) + ']'

    # Concat is always nodes 2..5 after validation; papers print it as range(2, 6).
    concat = f'range({CONCAT[0]}, {CONCAT[-1] + 1})'
    return (
        f'Genotype(normal={pairs("normal")}, normal_concat={concat}, reduce={pairs("reduce")}, reduce_concat={concat})'
    )


def parse_genotype(text: str) -> Genotype:
    """Parse a published genotype string without evaluating it.

    Only ``Genotype(normal=..., normal_concat=..., reduce=..., reduce_concat=...)`` with keyword arguments is
    accepted; cells must be lists or tuples of ``(str, int)`` literals and concats ``range(a[, b])`` or a list of
    ints. Anything else (names, attribute access, other calls) is refused, so untrusted text is safe to parse.

    Parameters
    ----------
    text
        The genotype string, e.g. copied from a paper's ``genotypes.py`` or a search log.

    Returns
    -------
    Genotype
        The validated genotype, with cells as lists of tuples and concats as lists.

    Raises
    ------
    ValueError
        If the text is not a genotype literal or the genotype is invalid.
    """
    fields = genotype_fields(text, Genotype._fields)
    for cell in CELLS:
        if cell not in fields:
            raise ValueError(f'Genotype(...) is missing the {cell!r} cell')
        # Some logs omit concat; NNI's space fixes it to all intermediate nodes anyway.
        fields.setdefault(f'{cell}_concat', list(CONCAT))
    genotype = Genotype(**fields)
    _validate_fields(genotype)
    return genotype


def _check_cell(cell: str) -> str:
    if cell not in CELLS:
        raise ValueError(f'unknown cell {cell!r}; expected one of {", ".join(CELLS)}')
    return cell


def _unwrap_input(value: Any, key: str) -> int:
    """Accept NNI's ``[j]`` as well as a bare ``j`` for an input choice."""
    if isinstance(value, list | tuple):
        if len(value) != 1:
            raise ValueError(f'{key} must be a one-element list [j], got {value!r}')
        value = value[0]
    # Samples built with numpy (e.g. from a sampler's argmax) carry np.int64, which is not an int subclass.
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    return value


def _validate_pairs(pairs: Any, cell: str) -> None:
    if not isinstance(pairs, list | tuple):
        raise ValueError(f'cell {cell!r} must be a list of (op, input) pairs, got {type(pairs).__name__}')
    if len(pairs) != _PAIRS_PER_CELL:
        raise ValueError(
            f'cell {cell!r} has {len(pairs)} (op, input) pairs; expected {_PAIRS_PER_CELL} (2 per node for nodes 2..5)'
        )
    for p, pair in enumerate(pairs):
        node = NODES[p // 2]
        where = f'cell {cell!r} pair {p} (node {node})'
        if not (isinstance(pair, list | tuple) and len(pair) == 2):
            raise ValueError(f'{where}: expected an (op, input) pair, got {pair!r}')
        op, j = pair
        if op == 'none':
            raise ValueError(
                f"{where}: op 'none' is not allowed; DARTS genotypes never contain 'none' (it is dropped when a "
                'genotype is derived)'
            )
        if op not in DARTS_OPS:
            raise ValueError(f'{where}: unknown op {op!r}; valid ops are {", ".join(DARTS_OPS)}')
        # bool is an int subclass, but True/False as an input index is surely a mistake.
        if isinstance(j, bool) or not isinstance(j, int):
            raise ValueError(f'{where}: input index must be an int, got {j!r}')
        if not 0 <= j < node:
            raise ValueError(f'{where}: input index {j} out of range for node {node}; must be in 0..{node - 1}')
