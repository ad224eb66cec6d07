"""Tests for nni_base.data: embedded digits, dataset containers and loaders of the real on-disk formats."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from nni_base.data import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    DIGITS_MEAN,
    DIGITS_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    SVHN_MEAN,
    SVHN_STD,
    LabeledArrayDataset,
    LabeledTensorDataset,
    digits_splits,
    load_cifar10,
    load_cifar100,
    load_downsampled_imagenet,
    load_image_folder,
    load_svhn,
)


def _denormalize(image: torch.Tensor, mean, std) -> torch.Tensor:
    """Undo per-channel normalisation and return values on the 0..255 scale."""
    mean = torch.as_tensor(mean, dtype=torch.float32).view(-1, 1, 1)
    std = torch.as_tensor(std, dtype=torch.float32).view(-1, 1, 1)
    return (image * std + mean) * 255.0


def _rng_pixels(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


# ----------------------------------------------------------------------------------------------------------------
# Digits
# ----------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope='module')
def digits() -> dict[str, LabeledTensorDataset]:
    return digits_splits()


def test_digits_default_classes(digits):
    train, test = digits['train'], digits['test']
    assert train.num_classes == 32 and test.num_classes == 8
    assert not set(train.class_names) & set(test.class_names)
    assert len(set(train.class_names) | set(test.class_names)) == 40
    assert sorted(test.class_names) == sorted(f'digit{d}_rot{r}' for d in (8, 9) for r in (0, 90, 180, 270))
    for split in (train, test):
        assert split.labels.dtype == torch.long
        assert torch.equal(torch.unique(split.labels), torch.arange(split.num_classes))
        assert len(split) == len(split.labels) == len(split.images)
    # 1797 digits, each in 4 rotations
    assert len(train) + len(test) == 4 * 1797


def test_digits_items_and_normalisation(digits):
    image, label = digits['train'][0]
    assert image.shape == (3, 8, 8) and image.dtype == torch.float32
    assert isinstance(label, int)
    for split in digits.values():
        raw = split.images * DIGITS_STD + DIGITS_MEAN
        assert raw.min() >= -1e-5 and raw.max() <= 1 + 1e-5  # fixed stats undo to the [0, 1] range
        assert torch.equal(split.images[:, 0], split.images[:, 1])  # gray repeated over 3 channels
        assert torch.equal(split.images[:, 0], split.images[:, 2])


def test_digits_rotated_class_is_rotation_of_base(digits):
    train = digits['train']
    base = train.images[train.labels == train.class_names.index('digit3_rot0')]
    rot90 = train.images[train.labels == train.class_names.index('digit3_rot90')]
    rot180 = train.images[train.labels == train.class_names.index('digit3_rot180')]
    assert len(base) == len(rot90) > 100
    assert torch.equal(rot90, torch.rot90(base, 1, dims=(-2, -1)))
    assert torch.equal(rot180, torch.rot90(base, 2, dims=(-2, -1)))
    assert not torch.equal(rot90, base)


def test_digits_image_size_and_options():
    splits = digits_splits(image_size=16, rotations=2, heldout_digits=[0, 1, 2])
    train, test = splits['train'], splits['test']
    assert train.images.shape[1:] == (3, 16, 16) and test[0][0].shape == (3, 16, 16)
    assert train.num_classes == 14 and test.num_classes == 6
    assert test.class_names[:2] == ['digit0_rot0', 'digit0_rot90']


@pytest.mark.parametrize(
    ('kwargs', 'message'),
    [
        ({'rotations': 0}, 'rotations must be an int in 1..4'),
        ({'rotations': 5}, 'rotations must be an int in 1..4'),
        ({'image_size': 3}, 'image_size must be an int >= 4'),
        ({'heldout_digits': (3, 10)}, r'heldout_digits must be digits in 0\.\.9, got \[10\]'),
        ({'heldout_digits': ()}, 'heldout_digits is empty'),
        ({'heldout_digits': range(10)}, 'leave no digit for training'),
        ({'heldout_digits': (8, 9), 'val_digits': (7, 8)}, r'digits \[8\] are in both'),
    ],
)
def test_digits_bad_args(kwargs, message):
    with pytest.raises(ValueError, match=message):
        digits_splits(**kwargs)


# ----------------------------------------------------------------------------------------------------------------
# Dataset containers
# ----------------------------------------------------------------------------------------------------------------


def test_tensor_dataset_subset_classes():
    images = torch.arange(6, dtype=torch.float32).view(6, 1, 1, 1).expand(6, 3, 2, 2)
    ds = LabeledTensorDataset(images, [0, 1, 2, 0, 1, 2], ['a', 'b', 'c'])
    sub = ds.subset_classes([2, 0])
    assert isinstance(sub, LabeledTensorDataset)
    assert sub.class_names == ['c', 'a'] and sub.num_classes == 2
    assert sub.labels.tolist() == [1, 0, 1, 0]  # samples keep their order, labels follow the given class order
    assert [float(sub[i][0][0, 0, 0]) for i in range(4)] == [0.0, 2.0, 3.0, 5.0]
    with pytest.raises(ValueError, match='out of range'):
        ds.subset_classes([3])
    with pytest.raises(ValueError, match='got 6 images but 5 labels'):
        LabeledTensorDataset(images, [0] * 5, ['a'])


def test_array_dataset_uint8_round_trip_and_resize():
    rng = np.random.default_rng(0)
    nhwc = _rng_pixels(rng, 5, 4, 4, 3)
    ds = LabeledArrayDataset(nhwc, [0, 1, 0, 1, 1], ['x', 'y'], mean=(0.5, 0.4, 0.3), std=(0.2, 0.3, 0.4))
    assert ds.images.dtype == np.uint8  # stored compactly, converted per item
    image, label = ds[3]
    assert image.shape == (3, 4, 4) and image.dtype == torch.float32 and label == 1
    back = _denormalize(image, (0.5, 0.4, 0.3), (0.2, 0.3, 0.4))
    np.testing.assert_allclose(back.permute(1, 2, 0).numpy(), nhwc[3], atol=1e-3)
    resized = LabeledArrayDataset(nhwc, [0] * 5, ['x'], image_size=8)
    assert resized[0][0].shape == (3, 8, 8)
    sub = ds.subset_classes([1])
    assert isinstance(sub, LabeledArrayDataset) and len(sub) == 3 and sub.labels.tolist() == [0, 0, 0]
    torch.testing.assert_close(sub[1][0], ds[3][0])


# ----------------------------------------------------------------------------------------------------------------
# CIFAR
# ----------------------------------------------------------------------------------------------------------------


def _dump(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, 'wb') as f:
        pickle.dump(obj, f)


def _write_cifar10(root: Path, per_batch: int = 4) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    folder = root / 'cifar-10-batches-py'
    batches = {}
    for name in [f'data_batch_{i}' for i in range(1, 6)] + ['test_batch']:
        data = _rng_pixels(rng, per_batch, 3072)
        labels = rng.integers(0, 10, per_batch).tolist()
        # the official files, loaded the usual way, have bytes keys
        _dump(
            folder / name,
            {b'batch_label': name.encode(), b'labels': labels, b'data': data, b'filenames': [b'x.png'] * per_batch},
        )
        batches[name] = (data, labels)
    names = [b'airplane', b'automobile', b'bird', b'cat', b'deer', b'dog', b'frog', b'horse', b'ship', b'truck']
    _dump(folder / 'batches.meta', {b'num_cases_per_batch': per_batch, b'label_names': names, b'num_vis': 3072})
    return batches


def test_load_cifar10(tmp_path):
    batches = _write_cifar10(tmp_path)
    train = load_cifar10(tmp_path)
    assert len(train) == 20 and train.num_classes == 10
    assert train.class_names[0] == 'airplane' and train.class_names[9] == 'truck'
    expected_labels = sum((batches[f'data_batch_{i}'][1] for i in range(1, 6)), [])
    assert train.labels.tolist() == expected_labels
    image, label = train[6]  # 3rd image of data_batch_2
    assert image.shape == (3, 32, 32) and label == expected_labels[6]
    raw = batches['data_batch_2'][0][2].reshape(3, 32, 32)  # rows are CHW-flattened
    np.testing.assert_allclose(_denormalize(image, CIFAR10_MEAN, CIFAR10_STD).numpy(), raw, atol=1e-3)

    test = load_cifar10(tmp_path / 'cifar-10-batches-py', train=False, image_size=16)  # the folder itself works too
    assert len(test) == 4 and test[0][0].shape == (3, 16, 16)
    assert test.labels.tolist() == batches['test_batch'][1]


def test_load_cifar100(tmp_path):
    rng = np.random.default_rng(2)
    folder = tmp_path / 'cifar-100-python'
    data = _rng_pixels(rng, 6, 3072)
    fine = [0, 99, 5, 5, 42, 7]
    for name in ('train', 'test'):
        _dump(
            folder / name,
            {
                b'filenames': [b'a.png'] * 6,
                b'batch_label': b'x',
                b'fine_labels': fine,
                b'coarse_labels': [0] * 6,
                b'data': data,
            },
        )
    names = [f'name{i}'.encode() for i in range(100)]
    _dump(folder / 'meta', {b'fine_label_names': names, b'coarse_label_names': [b'c'] * 20})
    train = load_cifar100(tmp_path)
    assert len(train) == 6 and train.num_classes == 100
    assert train.labels.tolist() == fine and train[1][1] == 99
    assert train.class_names[42] == 'name42'
    image = train[4][0]
    assert image.shape == (3, 32, 32)
    back = _denormalize(image, train.mean.flatten(), train.std.flatten()).numpy()
    np.testing.assert_allclose(back, data[4].reshape(3, 32, 32), atol=1e-3)
    assert len(load_cifar100(tmp_path, train=False)) == 6


def test_cifar_missing_root_messages(tmp_path):
    with pytest.raises(FileNotFoundError, match='cifar-10-batches-py') as info:
        load_cifar10(tmp_path / 'nowhere')
    message = str(info.value)
    assert str(tmp_path / 'nowhere') in message and 'python version' in message and 'data_batch_1' in message
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / 'cifar-100-python' / 'train'))):
        load_cifar100(tmp_path)
    # an incomplete extraction names the missing batch
    _write_cifar10(tmp_path)
    (tmp_path / 'cifar-10-batches-py' / 'data_batch_4').unlink()
    with pytest.raises(FileNotFoundError, match='data_batch_4'):
        load_cifar10(tmp_path)


# ----------------------------------------------------------------------------------------------------------------
# SVHN
# ----------------------------------------------------------------------------------------------------------------


def test_load_svhn(tmp_path):
    from scipy.io import savemat

    rng = np.random.default_rng(3)
    x = _rng_pixels(rng, 32, 32, 3, 5)
    y = np.array([[10], [1], [9], [10], [3]], dtype=np.uint8)
    savemat(tmp_path / 'train_32x32.mat', {'X': x, 'y': y})
    ds = load_svhn(tmp_path)
    assert len(ds) == 5 and ds.num_classes == 10
    assert ds.labels.tolist() == [0, 1, 9, 0, 3]  # label 10 means digit 0
    image, label = ds[2]
    assert image.shape == (3, 32, 32) and label == 9
    back = _denormalize(image, SVHN_MEAN, SVHN_STD).numpy()
    np.testing.assert_allclose(back, x[:, :, :, 2].transpose(2, 0, 1), atol=1e-3)
    assert load_svhn(tmp_path, image_size=8)[0][0].shape == (3, 8, 8)
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / 'test_32x32.mat'))):
        load_svhn(tmp_path, split='test')
    with pytest.raises(ValueError, match='split must be'):
        load_svhn(tmp_path, split='validation')


# ----------------------------------------------------------------------------------------------------------------
# Downsampled ImageNet
# ----------------------------------------------------------------------------------------------------------------


def _imagenet_batch(rng: np.random.Generator, n: int, labels: list[int], resolution: int = 32) -> dict:
    data = _rng_pixels(rng, n, 3 * resolution * resolution)
    return {'data': data, 'labels': labels, 'mean': data.mean(axis=0)}


def test_load_downsampled_imagenet_pickles(tmp_path):
    rng = np.random.default_rng(4)
    b1 = _imagenet_batch(rng, 3, [1, 1000, 2])
    b2 = _imagenet_batch(rng, 2, [3, 1])
    val = _imagenet_batch(rng, 2, [500, 2])
    _dump(tmp_path / 'train_data_batch_1', b1)
    _dump(tmp_path / 'train_data_batch_2', b2)
    _dump(tmp_path / 'val_data', val)

    train = load_downsampled_imagenet(tmp_path)
    assert len(train) == 5 and train.num_classes == 1000
    assert train.labels.tolist() == [0, 999, 1, 2, 0]  # 1-based in the files
    assert train.images.dtype == np.uint8
    image, label = train[3]
    assert image.shape == (3, 32, 32) and label == 2
    back = _denormalize(image, IMAGENET_MEAN, IMAGENET_STD).numpy()
    np.testing.assert_allclose(back, b2['data'][0].reshape(3, 32, 32), atol=1e-3)

    val_ds = load_downsampled_imagenet(tmp_path, train=False, image_size=16)
    assert val_ds.labels.tolist() == [499, 1] and val_ds[0][0].shape == (3, 16, 16)

    small = load_downsampled_imagenet(tmp_path, max_classes=2)
    assert small.num_classes == 2 and small.labels.tolist() == [0, 1, 0]
    np.testing.assert_allclose(
        _denormalize(small[2][0], IMAGENET_MEAN, IMAGENET_STD).numpy(), b2['data'][1].reshape(3, 32, 32), atol=1e-3
    )


def test_load_downsampled_imagenet_npz_and_subfolder(tmp_path):
    rng = np.random.default_rng(5)
    batch = _imagenet_batch(rng, 4, [7, 8, 9, 7], resolution=8)
    folder = tmp_path / 'Imagenet8_train'
    folder.mkdir()
    np.savez(
        folder / 'train_data_batch_1.npz', data=batch['data'], labels=np.array(batch['labels']), mean=batch['mean']
    )
    ds = load_downsampled_imagenet(tmp_path, resolution=8)
    assert len(ds) == 4 and ds.labels.tolist() == [6, 7, 8, 6]
    assert ds[1][0].shape == (3, 8, 8)
    back = _denormalize(ds[1][0], IMAGENET_MEAN, IMAGENET_STD).numpy()
    np.testing.assert_allclose(back, batch['data'][1].reshape(3, 8, 8), atol=1e-3)


def test_downsampled_imagenet_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match='train_data_batch_1') as info:
        load_downsampled_imagenet(tmp_path)
    assert 'Imagenet32_train' in str(info.value)
    with pytest.raises(FileNotFoundError, match='val_data'):
        load_downsampled_imagenet(tmp_path / 'missing', train=False)
    _dump(tmp_path / 'val_data', _imagenet_batch(np.random.default_rng(6), 2, [1, 2], resolution=64))
    with pytest.raises(ValueError, match=r'\(N, 3072\) for 32x32.*64x64'):
        load_downsampled_imagenet(tmp_path, resolution=32, train=False)
    _dump(tmp_path / 'val_data', _imagenet_batch(np.random.default_rng(6), 2, [0, 1]))
    with pytest.raises(ValueError, match='1-based'):
        load_downsampled_imagenet(tmp_path, train=False)


# ----------------------------------------------------------------------------------------------------------------
# Image folder
# ----------------------------------------------------------------------------------------------------------------


def test_load_image_folder(tmp_path):
    from PIL import Image

    colors = {'cat': (255, 0, 0), 'dog': (0, 128, 255)}
    for name, color in colors.items():
        (tmp_path / name).mkdir()
        for i in range(3):
            Image.new('RGB', (6, 5), color).save(tmp_path / name / f'{i}.png')
    Image.new('L', (4, 4), 200).save(tmp_path / 'dog' / 'gray.png')  # gray files are converted to RGB
    (tmp_path / 'empty').mkdir()  # folders without images are not classes
    (tmp_path / 'cat' / 'notes.txt').write_text('not an image')

    ds = load_image_folder(tmp_path, image_size=8)
    assert ds.class_names == ['cat', 'dog'] and ds.num_classes == 2
    assert ds.labels.tolist() == [0, 0, 0, 1, 1, 1, 1]
    image, label = ds[4]
    assert image.shape == (3, 8, 8) and label == 1
    back = _denormalize(image, IMAGENET_MEAN, IMAGENET_STD)
    torch.testing.assert_close(
        back, torch.tensor(colors['dog'], dtype=torch.float32).view(3, 1, 1).expand(3, 8, 8), atol=1e-3, rtol=0
    )
    gray = _denormalize(ds[6][0], IMAGENET_MEAN, IMAGENET_STD)
    torch.testing.assert_close(gray, torch.full((3, 8, 8), 200.0), atol=1e-3, rtol=0)


def test_image_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match='one sub-folder per class') as info:
        load_image_folder(tmp_path / 'nope')
    assert str(tmp_path / 'nope') in str(info.value)
    with pytest.raises(FileNotFoundError, match='no class sub-folder with images'):
        load_image_folder(tmp_path)
