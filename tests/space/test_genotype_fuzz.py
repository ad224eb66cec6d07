"""Property tests of the genotype parser: any text gives a Genotype or the parser's own ValueError, never a crash of
another kind, and no text runs code."""

from __future__ import annotations

import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nni_base.space.genotype import DARTS_OPS, format_genotype, parse_genotype

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

_pair = st.tuples(st.sampled_from(list(DARTS_OPS) + ['none', 'conv', '__import__']), st.integers(-2, 6))
_cell = st.lists(_pair, min_size=0, max_size=10)
_code = st.sampled_from(
    [
        "__import__('os').system('touch {marker}')",
        "open('{marker}', 'w').write('x')",
        "exec(\"open('{marker}', 'w')\")",
        "(lambda: open('{marker}', 'w'))()",
        '[c for c in ().__class__.__base__.__subclasses__()]',
        'range(10**10)',
        "'a' * 10**9",
    ]
)


def _fragment(marker: str):
    pieces = st.one_of(
        _cell.map(repr),
        _code.map(lambda c: c.format(marker=marker)),
        st.sampled_from(['range(2, 6)', '[2, 3, 4, 5]', 'range(-1)', 'None', '**{}', '*x']),
    )
    fields = st.sampled_from(['normal', 'normal_concat', 'reduce', 'reduce_concat', 'other', '__class__'])
    call = st.lists(st.tuples(fields, pieces), max_size=5).map(
        lambda kws: 'Genotype(' + ', '.join(f'{k}={v}' for k, v in kws) + ')'
    )
    return st.one_of(call, st.text(string.printable, max_size=200), call.map(lambda c: c[: len(c) // 2]))


def _parse(text: str):
    try:
        return parse_genotype(text)
    except ValueError:
        return None


@SETTINGS
@given(st.text(max_size=300))
def test_any_text_parses_or_raises_value_error(text):
    _parse(text)


@SETTINGS
@given(st.data())
def test_genotype_like_text_never_runs_code(tmp_path, data):
    marker = tmp_path / 'ran'
    text = data.draw(_fragment(str(marker)))
    _parse(text)
    assert not marker.exists(), f'parsing {text!r} ran code'


@SETTINGS
@given(
    st.lists(st.tuples(st.sampled_from(DARTS_OPS), st.integers(0, 5)), min_size=8, max_size=8),
    st.lists(st.tuples(st.sampled_from(DARTS_OPS), st.integers(0, 5)), min_size=8, max_size=8),
)
def test_valid_genotypes_round_trip_through_their_text(normal, reduce):
    # a pair of node i (0-based among the 4 nodes, two pairs each) may read inputs 0..i+1
    def legal(cell):
        return [(op, min(j, 2 + k // 2 - 1)) for k, (op, j) in enumerate(cell)]

    text = (
        f'Genotype(normal={legal(normal)!r}, normal_concat=range(2, 6), reduce={legal(reduce)!r}, '
        'reduce_concat=range(2, 6))'
    )
    genotype = parse_genotype(text)
    assert parse_genotype(format_genotype(genotype)) == genotype
