"""Tests for nni_base.space.genotype: conversions, safe parsing, validation, compatibility with NNI's DARTS space."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nni_base.space.genotype import (
    DARTS_OPS,
    DARTS_V2,
    Genotype,
    as_genotype,
    format_genotype,
    genotype_to_sample,
    parse_genotype,
    sample_keys,
    sample_to_genotype,
    validate_genotype,
)

# PC-DARTS (Xu et al., 2020) as printed in its genotypes.py: range() concats and a different op mix.
PC_DARTS_TEXT = (
    "Genotype(normal=[('sep_conv_3x3', 1), ('skip_connect', 0), ('sep_conv_3x3', 0), ('dil_conv_3x3', 1), "
    "('sep_conv_5x5', 0), ('sep_conv_3x3', 1), ('avg_pool_3x3', 0), ('dil_conv_3x3', 1)], normal_concat=range(2, 6), "
    "reduce=[('sep_conv_5x5', 1), ('max_pool_3x3', 0), ('sep_conv_5x5', 1), ('sep_conv_5x5', 2), "
    "('sep_conv_3x3', 0), ('sep_conv_3x3', 3), ('sep_conv_3x3', 1), ('sep_conv_3x3', 2)], reduce_concat=range(2, 6))"
)


def _with_pair(genotype: Genotype, cell: str, index: int, pair: tuple) -> Genotype:
    pairs = list(getattr(genotype, cell))
    pairs[index] = pair
    return genotype._replace(**{cell: pairs})


def test_ops_match_nni():
    from nni.nas.hub.pytorch import DARTS

    assert list(DARTS_OPS) == DARTS.DARTS_OPS


def test_sample_has_nni_keys_and_forms():
    sample = genotype_to_sample(DARTS_V2)
    assert len(sample) == 32
    assert set(sample) == set(sample_keys())
    assert sample['normal/op_5_1'] == 'dil_conv_3x3'
    assert sample['normal/input_5_1'] == [2]


@pytest.mark.parametrize('genotype', [DARTS_V2, parse_genotype(PC_DARTS_TEXT)])
def test_round_trip_through_sample(genotype):
    assert sample_to_genotype(genotype_to_sample(genotype)) == genotype


@pytest.mark.parametrize('genotype', [DARTS_V2, parse_genotype(PC_DARTS_TEXT)])
def test_round_trip_through_text(genotype):
    assert parse_genotype(format_genotype(genotype)) == genotype


def test_sample_to_genotype_accepts_bare_and_numpy_inputs_and_ignores_extra_keys():
    sample = genotype_to_sample(DARTS_V2)
    sample = {k: (v[0] if k.startswith('normal/input') else v) for k, v in sample.items()}
    sample['reduce/input_5_0'] = [np.int64(2)]
    sample['width'] = 16
    assert sample_to_genotype(sample) == DARTS_V2


def test_parse_accepts_lists_tuples_and_missing_concat():
    text = format_genotype(DARTS_V2).replace('range(2, 6)', '[2, 3, 4, 5]', 1)
    assert parse_genotype(text) == DARTS_V2
    no_concat = f'Genotype(normal={tuple(DARTS_V2.normal)!r}, reduce={[list(p) for p in DARTS_V2.reduce]!r})'
    assert parse_genotype(no_concat) == DARTS_V2


def test_darts_v2_equals_nni_darts_v2(monkeypatch):
    from nni.nas.hub.pytorch import DARTS

    # Capture the arch that load_searched_model builds instead of constructing the 20-cell network.
    captured = {}

    def fake_frozen_factory(arch):
        captured.update(arch)
        return lambda **kwargs: None

    monkeypatch.setattr(DARTS, 'frozen_factory', classmethod(lambda cls, arch: fake_frozen_factory(arch)))
    DARTS.load_searched_model('darts-v2')
    assert captured == genotype_to_sample(DARTS_V2)
    assert sample_to_genotype(captured) == DARTS_V2


def test_sample_freezes_into_nni_space():
    from nni.nas.hub.pytorch import DARTS

    torch.manual_seed(0)
    model = DARTS(width=16, num_cells=8).freeze(genotype_to_sample(parse_genotype(PC_DARTS_TEXT)))
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10)


# --- validation errors -----------------------------------------------------------------------------------------


def test_unknown_op_lists_valid_ops():
    bad = _with_pair(DARTS_V2, 'normal', 3, ('conv_7x1_1x7', 1))
    with pytest.raises(ValueError, match=r"unknown op 'conv_7x1_1x7'.*valid ops are max_pool_3x3, avg_pool_3x3"):
        genotype_to_sample(bad)


def test_none_op_refused():
    bad = _with_pair(DARTS_V2, 'reduce', 0, ('none', 0))
    with pytest.raises(ValueError, match=r"op 'none' is not allowed; DARTS genotypes never contain 'none'"):
        validate_genotype(bad)


@pytest.mark.parametrize(('index', 'j', 'node'), [(0, 2, 2), (3, 3, 3), (7, -1, 5)])
def test_input_out_of_range(index, j, node):
    bad = _with_pair(DARTS_V2, 'normal', index, ('skip_connect', j))
    with pytest.raises(ValueError, match=rf'input index {j} out of range for node {node}; must be in 0\.\.{node - 1}'):
        validate_genotype(bad)


def test_input_out_of_range_in_sample():
    sample = genotype_to_sample(DARTS_V2)
    sample['reduce/input_3_1'] = [3]
    with pytest.raises(ValueError, match=r'input index 3 out of range for node 3'):
        sample_to_genotype(sample)


@pytest.mark.parametrize('n', [7, 9])
def test_wrong_number_of_pairs(n):
    pairs = (DARTS_V2.normal * 2)[:n]
    with pytest.raises(ValueError, match=rf"cell 'normal' has {n} \(op, input\) pairs; expected 8"):
        validate_genotype(DARTS_V2._replace(normal=pairs))
    text = format_genotype(DARTS_V2).replace(repr(DARTS_V2.normal[0]) + ', ', '', 1)
    with pytest.raises(ValueError, match=r'has 7 \(op, input\) pairs; expected 8'):
        parse_genotype(text)


def test_missing_sample_keys():
    sample = genotype_to_sample(DARTS_V2)
    del sample['normal/op_4_1'], sample['reduce/input_2_0']
    with pytest.raises(ValueError, match=r'sample is missing 2 key\(s\): normal/op_4_1, reduce/input_2_0'):
        sample_to_genotype(sample)


def test_malformed_input_value():
    sample = genotype_to_sample(DARTS_V2)
    sample['normal/input_2_0'] = [0, 1]
    with pytest.raises(ValueError, match=r'normal/input_2_0 must be a one-element list'):
        sample_to_genotype(sample)


def test_concat_must_be_all_nodes():
    with pytest.raises(ValueError, match=r'normal_concat must be \[2, 3, 4, 5\]'):
        validate_genotype(DARTS_V2._replace(normal_concat=[2, 3, 4]))


# --- parser safety ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ('text', 'match'),
    [
        ("__import__('os').system('x')", r'expected a call of the form Genotype'),
        ("Genotype(normal=__import__('os').system('x'), reduce=[])", r'normal must be a literal'),
        ("Genotype(normal=[], normal_concat=exec('x'), reduce=[])", r'normal_concat must be range'),
        ('Genotype(normal=[], normal_concat=range(10**12), reduce=[])', r'normal_concat must be a literal'),
        ('Genotype(normal=[], normal_concat=range(10000000000), reduce=[])', r'far too long'),
        ('Genotype([], [2], [], [2])', r'keyword arguments only'),
        ('Genotype(normal=[], foo=1)', r"unknown Genotype field 'foo'"),
        ('Genotype(normal=[], normal=[], reduce=[])', r'given more than once'),
        ('Genotype(**x)', r'must not use \*\*kwargs'),
        ("Genotype(normal=[('a', 0)])", r"missing the 'reduce' cell"),
        ("Genotype(normal=[('a', '0')], reduce=[])", r'must contain \(str, int\) pairs'),
        ('Genotype(normal=[', r'not a valid genotype expression'),
        ('os.Genotype(normal=[], reduce=[])', r'expected a call of the form Genotype'),
    ],
)
def test_parse_refuses_non_literals(text, match):
    with pytest.raises(ValueError, match=match):
        parse_genotype(text)


def test_parse_refuses_code_without_running_it(tmp_path):
    marker = tmp_path / 'pwned'
    with pytest.raises(ValueError):
        parse_genotype(f"Genotype(normal=open({str(marker)!r}, 'w'), reduce=[])")
    assert not marker.exists()


# --- foreign genotype forms ---------------------------------------------------------------------------------


def _darts_repo_genotype():
    """DARTS_V2 as DARTS-family repositories ship it: their own namedtuple class, tuple pairs, range concats."""
    from collections import namedtuple

    DartsGenotype = namedtuple('Genotype', 'normal normal_concat reduce reduce_concat')  # noqa: PYI024
    return DartsGenotype(
        normal=[tuple(p) for p in DARTS_V2.normal],
        normal_concat=range(2, 6),
        reduce=[tuple(p) for p in DARTS_V2.reduce],
        reduce_concat=range(2, 6),
    )


class _PlainGenotype:
    def __init__(self, **fields):
        self.__dict__.update(fields)


def _foreign_forms():
    fields = {
        'normal': list(DARTS_V2.normal),
        'normal_concat': [2, 3, 4, 5],
        'reduce': list(DARTS_V2.reduce),
        'reduce_concat': [2, 3, 4, 5],
    }
    return {
        'namedtuple': _darts_repo_genotype(),
        'dict': dict(fields),
        'object': _PlainGenotype(**fields),
        'string': format_genotype(DARTS_V2),
    }


@pytest.mark.parametrize('form', ['namedtuple', 'dict', 'object', 'string'])
def test_foreign_genotype_forms_give_the_same_sample(form):
    genotype = _foreign_forms()[form]
    assert type(genotype) is not Genotype
    sample = genotype_to_sample(genotype)
    assert sample == genotype_to_sample(DARTS_V2)
    assert sample['normal/op_5_1'] == 'dil_conv_3x3' and sample['reduce/input_3_0'] == [2]
    assert as_genotype(genotype) == DARTS_V2
    assert parse_genotype(format_genotype(genotype)) == DARTS_V2
    validate_genotype(genotype)


def test_foreign_genotype_is_still_validated():
    bad = _darts_repo_genotype()._replace(normal=[('conv_7x1_1x7', 0)] + list(DARTS_V2.normal[1:]))
    with pytest.raises(ValueError, match=r"unknown op 'conv_7x1_1x7'"):
        genotype_to_sample(bad)


@pytest.mark.parametrize('form', ['dict', 'object'])
def test_missing_genotype_field_is_named(form):
    genotype = _foreign_forms()[form]
    if form == 'dict':
        del genotype['reduce_concat']
    else:
        del genotype.reduce_concat
    with pytest.raises(
        ValueError,
        match=r'lacks the (key|attribute)\(s\) reduce_concat; a genotype needs normal, '
        r'normal_concat, reduce, reduce_concat',
    ):
        genotype_to_sample(genotype)


def test_non_genotype_lists_every_missing_field():
    with pytest.raises(
        ValueError,
        match=r'int is not a genotype: it lacks the attribute\(s\) normal, normal_concat, '
        r'reduce, reduce_concat',
    ):
        genotype_to_sample(3)
