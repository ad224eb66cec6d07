"""The oversubscription warning: when it fires and what it tells the user to do."""

import pytest

from nni_base.callbacks import oversubscription


@pytest.mark.parametrize('threads, load, cores', [(1, 8.0, 2), (2, 0.1, 2), (4, 3.0, 8)])
def test_no_warning_when_the_threads_fit(threads, load, cores):
    assert oversubscription(threads, load, cores) is None


def test_a_busy_machine_gets_the_fix_named():
    message = oversubscription(2, 2.0, 2)
    assert message is not None and 'torch.set_num_threads(1)' in message and '2 cores' in message
