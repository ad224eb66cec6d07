"""Every meta-train / held-out split has disjoint classes, of the counts its documentation states.

Held-out classes that also appear in meta-training would make every held-out result a training result; these
tests check the rule on the class names, on what the names stand for (digits, family classes) and, where the
images are generated, on the images themselves.
"""

from __future__ import annotations

import hashlib
import re

import pytest

from nni_base.data import digits_splits, omniglot_splits
from nni_base.data.families import FAMILIES, family_splits
from tests.data.test_fewshot_data import _write_omniglot


def _image_hashes(dataset) -> set[str]:
    return {hashlib.sha1(dataset[i][0].numpy().tobytes()).hexdigest() for i in range(len(dataset))}


def _assert_disjoint(splits: dict) -> None:
    names = {split: set(data.class_names) for split, data in splits.items()}
    for a in names:
        assert len(names[a]) == splits[a].num_classes, f'{a}: repeated class names'
        for b in names:
            if a < b:
                assert not names[a] & names[b], f'{a} and {b} share classes {sorted(names[a] & names[b])[:5]}'


@pytest.mark.parametrize('family', FAMILIES)
def test_family_splits_are_disjoint_11_and_5_classes_covering_the_family(family):
    splits = family_splits(family, images_per_class=3)
    assert (splits['train'].num_classes, splits['test'].num_classes) == (11, 5)
    _assert_disjoint(splits)
    index = {split: {int(name.split('/')[1]) for name in data.class_names} for split, data in splits.items()}
    assert index['train'] | index['test'] == set(range(16))
    assert index['test'] == {c for c in range(16) if c % 3 == 1}  # every third class, from the second
    assert not _image_hashes(splits['train']) & _image_hashes(splits['test']), 'a held-out image is in training'


def _digits_of(dataset) -> set[int]:
    return {int(re.fullmatch(r'digit(\d)_rot\d+', name).group(1)) for name in dataset.class_names}


@pytest.mark.parametrize(
    ('kwargs', 'counts'),
    [
        ({}, {'train': 32, 'test': 8}),
        ({'val_digits': (6, 7)}, {'train': 24, 'val': 8, 'test': 8}),
        ({'rotations': 2, 'heldout_digits': (0, 1, 2)}, {'train': 14, 'test': 6}),
    ],
)
def test_digits_splits_are_disjoint_with_rotations_times_digits_classes(kwargs, counts):
    splits = digits_splits(**kwargs)
    assert {name: data.num_classes for name, data in splits.items()} == counts
    _assert_disjoint(splits)
    heldout = set(kwargs.get('heldout_digits', (8, 9)))
    val = set(kwargs.get('val_digits', ()))
    assert _digits_of(splits['test']) == heldout
    assert _digits_of(splits['train']) == set(range(10)) - heldout - val
    if val:
        assert _digits_of(splits['val']) == val
    for data in splits.values():  # labels run 0..C-1 within each split, every class has images
        assert sorted(set(data.labels.tolist())) == list(range(data.num_classes))


def test_omniglot_splits_are_disjoint_with_the_stated_counts(tmp_path):
    _write_omniglot(tmp_path, {'background': {'Greek': 3, 'Latin': 2}, 'evaluation': {'Tengwar': 3}}, drawings=2)
    splits = omniglot_splits(tmp_path, image_size=20, num_train=4, num_val=2)
    assert {name: data.num_classes for name, data in splits.items()} == {'train': 4, 'val': 2, 'test': 2}
    _assert_disjoint(splits)
    everything = set().union(*(data.class_names for data in splits.values()))
    assert len(everything) == 8  # all characters, each in exactly one split
    assert not _image_hashes(splits['train']) & _image_hashes(splits['test'])
