import logging
import os
import warnings

import pytest
import torch

warnings.filterwarnings('ignore', message='.*is found to be not a nn.Module.*')
# 2 threads (the CI machine's cores) unless OMP_NUM_THREADS says otherwise, e.g. beside another job.
torch.set_num_threads(int(os.environ.get('OMP_NUM_THREADS') or 2))


@pytest.fixture(autouse=True)
def _environment_put_back():
    """Whatever a test sets in os.environ (Lightning's seed variables, a trial's thread count) ends with it: the
    DDP tests' ranks inherit the session's environment."""
    before = dict(os.environ)
    yield
    if dict(os.environ) != before:
        os.environ.clear()
        os.environ.update(before)


@pytest.fixture(scope='module')
def fixed_fit_threads():
    """nni-base's fits on this session's thread count whatever else runs: on a busy machine the thread rule would
    give a fit fewer threads, which sums in another order, and a bit-for-bit comparison of two runs would fail."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv('NNI_BASE_THREADS', str(torch.get_num_threads()))
        yield


@pytest.fixture(autouse=True)
def _quiet_nni():
    logging.getLogger('nni').setLevel(logging.WARNING)
    yield
