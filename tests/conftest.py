import logging
import warnings

import pytest
import torch

warnings.filterwarnings('ignore', message='.*is found to be not a nn.Module.*')
torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _quiet_nni():
    logging.getLogger('nni').setLevel(logging.WARNING)
    yield
