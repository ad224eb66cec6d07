"""Mini-ImageNet and Omniglot loaders, tested on small files written in the real on-disk formats."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nni_base import TaskDistribution
from nni_base.data import IMAGENET_MEAN, IMAGENET_STD, load_mini_imagenet, load_omniglot, omniglot_splits


def _write_mini_imagenet(root: Path, split: str, classes: list[str], per_class: int, seed: int) -> np.ndarray:
    """A learn2learn-format cache pickle: image_data (N, 84, 84, 3) uint8 + class_dict name -> row indices."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(len(classes) * per_class, 84, 84, 3), dtype=np.uint8)
    rows = rng.permutation(len(images))  # classes are not stored contiguously
    class_dict = {name: rows[i * per_class : (i + 1) * per_class].tolist() for i, name in enumerate(classes)}
    with open(root / f'mini-imagenet-cache-{split}.pkl', 'wb') as f:
        pickle.dump({'image_data': images, 'class_dict': class_dict}, f, protocol=4)
    return images


def test_load_mini_imagenet(tmp_path):
    images = _write_mini_imagenet(tmp_path, 'train', ['n01532829', 'n01558993', 'n01704323'], 4, seed=0)
    _write_mini_imagenet(tmp_path, 'validation', ['n01855672', 'n02091244'], 3, seed=1)
    train = load_mini_imagenet(tmp_path, 'train')
    assert len(train) == 12 and train.class_names == ['n01532829', 'n01558993', 'n01704323']
    record = pickle.loads((tmp_path / 'mini-imagenet-cache-train.pkl').read_bytes())
    for label, name in enumerate(train.class_names):
        for row in record['class_dict'][name]:
            x, y = train[row]
            assert y == label
            expected = (
                torch.from_numpy(images[row]).permute(2, 0, 1).float() / 255 - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
            ) / torch.tensor(IMAGENET_STD).view(3, 1, 1)
            assert torch.allclose(x, expected, atol=1e-5)
    val = load_mini_imagenet(tmp_path, 'val', image_size=32)  # 'val' is accepted for 'validation'
    assert val[0][0].shape == (3, 32, 32) and val.num_classes == 2
    task = TaskDistribution(train, ways=3, shots=2, queries=2).sample()
    assert task.support_x.shape == (6, 3, 84, 84)


class _RunsCode:
    def __reduce__(self):
        return (os.system, ('echo pwned > pwned.txt',))


def test_mini_imagenet_pickle_cannot_run_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with open(tmp_path / 'mini-imagenet-cache-test.pkl', 'wb') as f:
        pickle.dump({'image_data': _RunsCode(), 'class_dict': {}}, f)
    with pytest.raises(pickle.UnpicklingError, match='refusing to load .*system'):
        load_mini_imagenet(tmp_path, 'test')
    assert not (tmp_path / 'pwned.txt').exists()


def test_dataset_pickles_are_read_without_running_code(tmp_path, monkeypatch):
    from nni_base.data.safe_pickle import load_array_pickle

    monkeypatch.chdir(tmp_path)
    good = {'data': np.arange(6, dtype=np.uint8).reshape(2, 3), 'labels': [1, 2], 'name': b'batch'}
    (tmp_path / 'good.pkl').write_bytes(pickle.dumps(good, protocol=2))
    loaded = load_array_pickle(tmp_path / 'good.pkl')
    assert np.array_equal(loaded['data'], good['data']) and loaded['labels'] == [1, 2]
    (tmp_path / 'bad.pkl').write_bytes(pickle.dumps({'data': _RunsCode()}))
    with pytest.raises(pickle.UnpicklingError, match='refusing to load'):
        load_array_pickle(tmp_path / 'bad.pkl')
    assert not (tmp_path / 'pwned.txt').exists()


def test_mini_imagenet_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r'mini-imagenet-cache-train\.pkl does not exist(.|\n)*Fix: download'):
        load_mini_imagenet(tmp_path, 'train')
    with pytest.raises(ValueError, match='split must be one of'):
        load_mini_imagenet(tmp_path, 'dev')
    with open(tmp_path / 'mini-imagenet-cache-test.pkl', 'wb') as f:
        pickle.dump({'image_data': np.zeros((2, 84, 84, 3), np.uint8), 'class_dict': {'a': [0]}}, f)
    with pytest.raises(ValueError, match='1 images belong to no class'):
        load_mini_imagenet(tmp_path, 'test')


def _write_omniglot(root: Path, layout: dict[str, dict[str, int]], drawings: int = 3) -> None:
    """torchvision's extracted layout: omniglot-py/images_<subset>/<alphabet>/<character>/<id>_<n>.png."""
    rng = np.random.default_rng(0)
    for subset, alphabets in layout.items():
        for alphabet, characters in alphabets.items():
            for c in range(1, characters + 1):
                folder = root / 'omniglot-py' / f'images_{subset}' / alphabet / f'character{c:02d}'
                folder.mkdir(parents=True)
                for d in range(drawings):
                    pixels = (rng.random((105, 105)) > 0.5).astype(np.uint8) * 255
                    Image.fromarray(pixels, mode='L').save(folder / f'{c:04d}_{d + 1:02d}.png')


def test_load_omniglot_and_splits(tmp_path):
    _write_omniglot(tmp_path, {'background': {'Greek': 2, 'Latin': 2}, 'evaluation': {'Tengwar': 2}})
    data = load_omniglot(tmp_path, image_size=28)
    assert data.class_names == [
        'Greek/character01',
        'Greek/character02',
        'Latin/character01',
        'Latin/character02',
        'Tengwar/character01',
        'Tengwar/character02',
    ]
    x, y = data[0]
    assert x.shape == (3, 28, 28) and y == 0 and float(x.min()) >= -1 and float(x.max()) <= 1
    assert torch.bincount(data.labels).tolist() == [3] * 6

    background = load_omniglot(tmp_path / 'omniglot-py', subsets=('background',))  # root may be omniglot-py itself
    assert background.num_classes == 4

    splits = omniglot_splits(tmp_path, image_size=20, num_train=3, num_val=1)
    assert [s.num_classes for s in splits.values()] == [3, 1, 2]
    assert splits['test'].class_names == ['Tengwar/character01', 'Tengwar/character02']
    task = TaskDistribution(splits['train'], ways=3, shots=1, queries=2).sample()
    assert task.support_x.shape == (3, 3, 20, 20) and task.query_x.shape == (6, 3, 20, 20)


def test_omniglot_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r'omniglot-py does not exist(.|\n)*images_background\.zip'):
        load_omniglot(tmp_path)
    _write_omniglot(tmp_path, {'background': {'Greek': 2}})
    with pytest.raises(FileNotFoundError, match='images_evaluation does not exist'):
        load_omniglot(tmp_path)
    _write_omniglot(tmp_path, {'evaluation': {'Tengwar': 1}})
    with pytest.raises(ValueError, match='found 3 Omniglot characters, too few'):
        omniglot_splits(tmp_path, num_train=2, num_val=1)
    # 3 drawings per character cannot give 2 shots + 2 queries
    with pytest.raises(ValueError, match=r'has only 3 images but shots \+ queries = 2 \+ 2'):
        TaskDistribution(load_omniglot(tmp_path, subsets=('background',)), ways=2, shots=2, queries=2)
