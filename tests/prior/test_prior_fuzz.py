"""Property tests of the prior reader and of the readers behind top-k: any plain content of a prior file is either
a prior with well-typed entries or ``CorruptPriorError``; a signature gives cell shapes or ``ValueError``."""

from __future__ import annotations

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nni_base import CorruptPriorError, load_prior
from nni_base.prior import PRIOR_FORMAT, PRIOR_VERSION
from nni_base.search.top_k import check_top_k, shapes_from_signature

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.builds(torch.zeros, st.integers(0, 3)),
)
_value = st.recursive(
    _scalar,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=12), inner, max_size=3)),
    max_leaves=8,
)
_label = st.one_of(
    st.text(max_size=16),
    st.sampled_from(
        ['normal/op_2_0', 'reduce/op_3_1', 'normal/op_x', 'op_2_0', 'normal/op_2', 'normal/input_2_0', 'a/b/op_4_0']
    ),
)
_signature = st.dictionaries(_label, st.one_of(st.lists(_scalar, max_size=4), _scalar), max_size=6)
_prior = st.fixed_dictionaries(
    {'format': st.sampled_from([PRIOR_FORMAT, 'other']), 'version': st.sampled_from([PRIOR_VERSION, 2, '1'])},
    optional={
        'space': st.one_of(_value, st.fixed_dictionaries({'class': _scalar, 'signature': _signature})),
        'state_dict': st.one_of(_value, st.dictionaries(st.text(max_size=5), _scalar, max_size=3)),
        'alpha': st.one_of(_value, st.dictionaries(st.text(max_size=5), _scalar, max_size=3)),
        'config': _value,
        'tasks': _value,
        'meta': _value,
    },
)


@SETTINGS
@given(st.one_of(_value, _prior))
def test_prior_files_load_well_typed_or_raise_corrupt_prior_error(tmp_path, content):
    path = tmp_path / 'prior.pt'
    torch.save(content, path)
    try:
        prior = load_prior(path)
    except CorruptPriorError:
        return
    assert all(isinstance(v, torch.Tensor) for v in [*prior['state_dict'].values(), *prior['alpha'].values()])
    try:
        shapes_from_signature(prior['space']['signature'])
    except ValueError:
        pass


@SETTINGS
@given(_signature.filter(lambda s: all(isinstance(v, list) for v in s.values())))
def test_signatures_give_cell_shapes_or_value_error(signature):
    try:
        shapes = shapes_from_signature(signature)
    except ValueError:
        return
    assert shapes and all(shape.num_nodes >= 1 for shape in shapes)


@SETTINGS
@given(_value)
def test_top_k_is_a_positive_int_or_value_error(value):
    try:
        assert check_top_k(value) >= 1
    except ValueError:
        pass
