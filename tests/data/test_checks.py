"""Data forms a user has get a message that names the fix, at the boundary, before any step."""

import nni
import pytest
import torch
from nni.nas.evaluator.pytorch import Classification
from torch.utils.data import DataLoader, TensorDataset

from nni_base import BaseStrategy, TaskAdapter, TaskDistribution
from nni_base.api import build_supernet
from nni_base.data.checks import check_batch
from tests.helpers import run as run_and_stop  # stops the experiment, even when it raises
from tests.helpers import tiny_space

X = torch.randn(20, 3, 8, 8)
Y = torch.arange(20) % 5


@pytest.mark.parametrize(
    ('x', 'y', 'message'),
    [
        (X.permute(0, 2, 3, 1), Y, r'channels-last .*permute\(0, 3, 1, 2\)'),
        ((X * 50).clamp(0, 255).to(torch.uint8), Y, r'uint8 tensors.*\.float\(\) / 255'),
        (X[:, :1], Y, r"1 channel but the space's stem reads 3.*repeat"),
        (X[:, 0], Y, r'2-D .*unsqueeze\(1\)'),
        (X.clone().index_fill_(0, torch.tensor([3]), float('nan')), Y, r'1 of 20 images contain NaN'),
        (X, Y + 3, r'a label is 7 but .*classifier has 5 outputs.*num_classes=8'),
        (X, Y.float(), r'labels are float32.*\.long\(\)'),
        (X, Y - 1, r'labels must be class indices from 0'),
    ],
)
def test_bad_batches_name_the_fix(x, y, message):
    with pytest.raises(ValueError, match=message):
        check_batch((x, y), where='the first training batch', channels=3, num_classes=5)


def _run(x, y, classes=5, space_classes=5):
    loader = nni.trace(DataLoader)(TensorDataset(x, y), batch_size=10)
    evaluator = Classification(
        num_classes=classes,
        train_dataloaders=loader,
        val_dataloaders=loader,
        max_epochs=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        logger=False,
        enable_checkpointing=False,
    )
    run_and_stop(tiny_space(space_classes), evaluator, BaseStrategy())


def test_nas_experiment_refuses_channels_last_before_training():
    with pytest.raises(ValueError, match='channels-last'):
        _run(X.permute(0, 2, 3, 1), Y)


def test_nas_experiment_refuses_a_label_outside_the_head():
    with pytest.raises(ValueError, match='num_classes=8'):
        _run(X, Y + 3)


def test_nas_experiment_refuses_a_classification_of_another_size():
    with pytest.raises(ValueError, match=r"accuracy counts 10 classes but the space's classifier has 5"):
        _run(X, Y, classes=10)


def test_nas_experiment_refuses_an_empty_loader():
    with pytest.raises(ValueError, match='yields no batches: its dataset is empty'):
        _run(X[:0], Y[:0])


def test_nan_images_during_adaptation_are_reported_as_data():
    supernet = build_supernet(tiny_space(), BaseStrategy())
    x = X.clone()
    x[0, 0, 0, 0] = float('nan')
    with pytest.raises(ValueError, match='contain NaN or inf values: the data, not the learning rates'):
        TaskAdapter(supernet).step(x, Y)


@pytest.mark.parametrize(
    ('images', 'message'),
    [
        (X.permute(0, 2, 3, 1), 'channels-last'),
        ((X * 50).clamp(0, 255).to(torch.uint8), 'uint8'),
        (X[:, 0], '2-D'),
    ],
)
def test_task_distribution_refuses_bad_images(images, message):
    with pytest.raises(ValueError, match=message):
        TaskDistribution(TensorDataset(images, Y), ways=2, shots=1, queries=1)
