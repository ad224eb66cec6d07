"""A trial given a shared prior names the user's file in its errors and leaves no copy of a prior it cannot use."""

from __future__ import annotations

import pytest

from nni_base import BaseStrategy, CorruptPriorError, PriorMismatchError, save_prior
from nni_base.api import build_supernet
from nni_base.cli.trial import run_trial, validate_params
from nni_base.prior import build_prior
from tests.helpers import tiny_space


@pytest.fixture()
def user_prior(tmp_path):
    """An untrained prior of the tiny space (width 4, 3 cells, 5 ways), in a folder of the user's."""
    net = build_supernet(tiny_space(), BaseStrategy())
    data = build_prior(
        net.training_module.model, net.alphas(), config=BaseStrategy().config.to_dict(), tasks={'ways': 5}
    )
    return save_prior(data, tmp_path / 'mine' / 'shared.pt')


def test_a_damaged_user_prior_is_named_and_not_copied(tmp_path, user_prior):
    user_prior.write_bytes(user_prior.read_bytes()[:200])
    out = tmp_path / 'trial'
    params = validate_params({'prior': str(user_prior), 'width': 4, 'num_cells': 3, 'eval_tasks': 1})
    with pytest.raises(CorruptPriorError) as info:
        run_trial(params, out)
    message = str(info.value)
    assert f"parameter 'prior' ({user_prior})" in message and str(out) not in message, message
    assert not (out / 'prior.pt').exists()
    assert [p.name for p in out.iterdir()] == []


def test_a_user_prior_of_another_space_is_named_and_its_copy_removed(tmp_path, user_prior):
    out = tmp_path / 'trial'
    params = validate_params({'prior': str(user_prior), 'width': 6, 'num_cells': 3, 'eval_tasks': 1})
    with pytest.raises(PriorMismatchError) as info:
        run_trial(params, out)
    message = str(info.value)
    assert f"parameter 'prior' ({user_prior}) does not fit this trial's space (width=6, num_cells=3" in message
    assert not (out / 'prior.pt').exists(), 'the trial left its copy of an unusable prior behind'
    assert user_prior.is_file()  # the user's own file stays
