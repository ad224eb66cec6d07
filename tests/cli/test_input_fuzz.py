"""Property tests of what users hand the command line: trial parameters and architecture (arch.json) files.

Any JSON value is either accepted or refused with ``ValueError`` (``FileNotFoundError`` for a missing file): no
``TypeError``, ``KeyError`` or ``RuntimeError`` from deep inside."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from nni_base.cli.retrain.network import canonical_sample, load_arch
from nni_base.cli.trial import DEFAULT_PARAMS, validate_params

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.sampled_from(['~', '~nobody_here/x', '', '.', 'digits', 'ddp', 'cpu']),
)
_json = st.recursive(
    _scalar,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=10,
)


@SETTINGS
@given(st.dictionaries(st.one_of(st.sampled_from(sorted(DEFAULT_PARAMS)), st.text(max_size=10)), _json, max_size=6))
@example({'prior': '~nobody_here/prior.pt'})  # found by this test: expanduser raised RuntimeError
@example({'data_root': 'a\x00b', 'dataset': 'cifar10'})
def test_trial_parameters_are_accepted_or_refused_with_value_error(params):
    try:
        merged = validate_params(params)
    except ValueError:
        return
    assert set(merged) == set(DEFAULT_PARAMS)
    json.dumps(merged)  # what the trial hands the DDP ranks must stay JSON


_keys = st.sampled_from(
    [
        f'{cell}/{kind}_{node}_{k}'
        for cell in ('normal', 'reduce')
        for kind in ('op', 'input')
        for node in (2, 3, 4, 5, 9)
        for k in (0, 1, 2)
    ]
    + ['x', '']
)


@SETTINGS
@given(st.one_of(_json, st.dictionaries(_keys, _json, max_size=40)))
def test_architecture_samples_are_accepted_or_refused_with_value_error(sample):
    try:
        canonical_sample(sample)
    except ValueError:
        pass


@SETTINGS
@given(st.one_of(_json.map(json.dumps), st.text(max_size=200)))
def test_architecture_files_are_read_or_refused_with_value_error(tmp_path, text):
    path = tmp_path / 'arch.json'
    path.write_text(text)
    try:
        load_arch(path)
    except ValueError:
        pass
