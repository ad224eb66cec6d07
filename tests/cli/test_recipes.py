"""Mixed-resolution meta-training and the paper pipelines (meta-train -> adapt -> retrain) on real-format files."""

from __future__ import annotations

import json
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from nni.nas.hub.pytorch import DARTS

from nni_base import EpisodicClassification, TaskDistribution, load_prior
from nni_base.cli.recipes import main as recipes_main
from nni_base.cli.retrain import main as retrain_main
from nni_base.data import LabeledTensorDataset
from nni_base.tasks.mixture import ResolutionMixture
from tests.data.test_data import _write_cifar10


def _tensor_tasks(size: int, ways: int = 3, seed: int = 0) -> TaskDistribution:
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(ways * 4, 3, size, size, generator=g)
    data = LabeledTensorDataset(images, [c for c in range(ways) for _ in range(4)], [f'c{c}' for c in range(ways)])
    return TaskDistribution(data, ways, 1, 2, name=f's{size}')


# ---- the mixture --------------------------------------------------------------------------------------
def test_every_meta_step_holds_as_many_tasks_of_each_size():
    mixture = ResolutionMixture([_tensor_tasks(8), _tensor_tasks(16), _tensor_tasks(24)])
    episodes = mixture.episodes(tasks_per_step=6, steps=5, seed=1)
    for step in range(5):
        sizes = [task.support_x.shape[-1] for task in episodes[step]]
        assert sizes == [8, 16, 24, 8, 16, 24]
    # the tasks of a step depend on (seed, step) only
    again = mixture.episodes(6, 5, seed=1)[3]
    assert all(torch.equal(a.query_x, b.query_x) for a, b in zip(episodes[3], again))
    other = mixture.episodes(6, 5, seed=2)[3]
    assert not all(torch.equal(a.query_x, b.query_x) for a, b in zip(episodes[3], other))


def test_evaluator_takes_a_mixture_and_keeps_its_batches_balanced():
    mixture = ResolutionMixture([_tensor_tasks(8), _tensor_tasks(16)])
    evaluator = EpisodicClassification(
        mixture,
        mixture,
        tasks_per_step=4,
        steps_per_epoch=3,
        val_episodes=2,
        max_epochs=1,
        logger=False,
        enable_progress_bar=False,
    )
    batches = list(evaluator.train_dataloaders)
    assert len(batches) == 3
    assert all([t.support_x.shape[-1] for t in b] == [8, 16, 8, 16] for b in batches)
    val = list(evaluator.val_dataloaders)
    assert len(val) == 2 and all([t.support_x.shape[-1] for t in b] == [8, 16] for b in val)
    assert evaluator.task_config()['train'] == 's8+s16'


def test_mixture_errors_name_the_fix():
    with pytest.raises(ValueError, match=r'tasks_per_step=4 must be a positive multiple of the 3 resolutions.*3 or 6'):
        ResolutionMixture([_tensor_tasks(8), _tensor_tasks(16), _tensor_tasks(24)]).episodes(4, 2)
    with pytest.raises(ValueError, match='same ways/shots/queries'):
        ResolutionMixture([_tensor_tasks(8, ways=3), _tensor_tasks(16, ways=2)])
    with pytest.raises(TypeError, match='TaskDistribution objects'):
        ResolutionMixture([_tensor_tasks(8), 'imagenet'])
    with pytest.raises(TypeError, match='TaskDistribution or ResolutionMixture'):
        EpisodicClassification([_tensor_tasks(8)])


# ---- the pipelines, on files in the real formats --------------------------------------------------------
def _write_data(root: Path, classes: int = 10, per_class: int = 3) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    labels = [c + 1 for c in range(classes) for _ in range(per_class)]  # Imagenet32/64 labels are 1-based
    for size in (32, 64):
        (root / f'Imagenet{size}_train').mkdir(parents=True)
        with open(root / f'Imagenet{size}_train' / 'train_data_batch_1', 'wb') as f:
            pickle.dump(
                {'data': rng.integers(0, 256, (len(labels), 3 * size * size), dtype=np.uint8), 'labels': labels}, f
            )
    for c in range(classes):
        folder = root / 'imagenet' / 'train' / f'n{c:08d}'
        folder.mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).save(folder / f'{i}.JPEG')
    _write_cifar10(root / 'cifar', per_batch=4)
    from scipy.io import savemat

    (root / 'svhn').mkdir()
    for split, n in (('train', 20), ('test', 6)):
        savemat(
            root / 'svhn' / f'{split}_32x32.mat',
            {
                'X': rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8),
                'y': (np.arange(n) % 10 + 1).reshape(n, 1).astype(np.uint8),
            },
        )


def _quiet(fn, argv):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return fn(argv)


@pytest.mark.e2e
def test_meta_train_adapt_and_retrain_pipeline(tmp_path):
    _write_data(tmp_path)
    common = ['--accelerator', 'cpu', '--no-progress-bar']
    prior_dir = tmp_path / 'prior'
    summary = _quiet(
        recipes_main,
        [
            'meta-train',
            '--imagenet32',
            str(tmp_path / 'Imagenet32_train'),
            '--imagenet64',
            str(tmp_path / 'Imagenet64_train'),
            '--imagenet224',
            str(tmp_path / 'imagenet' / 'train'),
            '--shots',
            '1',
            '--queries',
            '2',
            '--width',
            '4',
            '--num-cells',
            '3',
            '--steps-per-epoch',
            '2',
            '--epochs',
            '1',
            '--inner-steps',
            '1',
            '--output-dir',
            str(prior_dir),
            *common,
        ],
    )
    assert summary['tasks'] == 'imagenet32+imagenet64+imagenet224' and summary['tasks_per_step'] == 3
    prior = load_prior(prior_dir / 'prior.pt')
    stems = {f'stems.{size}.to_s0.0.weight' for size in (32, 64, 224)}
    assert stems <= set(prior['state_dict'])
    assert json.loads((prior_dir / 'space.json').read_text())['resolutions'] == [32, 64, 224]
    assert list((prior_dir / 'logs' / 'meta_csv').rglob('metrics.csv'))

    # CIFAR-10: fine-tune the prior on the training set, export the cells.
    adapted = _quiet(
        recipes_main,
        [
            'adapt',
            '--prior',
            str(prior_dir / 'prior.pt'),
            '--dataset',
            'cifar10',
            '--data-root',
            str(tmp_path / 'cifar'),
            '--batch-size',
            '8',
            '--output-dir',
            str(tmp_path / 'adapt-c10'),
            *common,
        ],
    )
    assert 0.0 <= adapted['val_acc'] <= 1.0 and adapted['alpha_averaged_over_tasks'] == 0
    arch = json.loads((tmp_path / 'adapt-c10' / 'arch.json').read_text())
    assert DARTS(width=4, num_cells=3, dataset='cifar').freeze(arch).eval()(torch.zeros(1, 3, 32, 32)).shape == (1, 10)

    # SVHN: the same adaptation on the .mat files.
    svhn = _quiet(
        recipes_main,
        [
            'adapt',
            '--prior',
            str(prior_dir / 'prior.pt'),
            '--dataset',
            'svhn',
            '--data-root',
            str(tmp_path / 'svhn'),
            '--batch-size',
            '8',
            '--output-dir',
            str(tmp_path / 'adapt-svhn'),
            *common,
        ],
    )
    assert svhn['dataset'] == 'svhn' and (tmp_path / 'adapt-svhn' / 'genotype.txt').read_text().startswith('Genotype(')

    # ImageNet (§5.2): the exported cells are the argmax of alpha averaged over adapted 10-class tasks.
    averaged = _quiet(
        recipes_main,
        [
            'adapt',
            '--prior',
            str(prior_dir / 'prior.pt'),
            '--dataset',
            'imagenet',
            '--data-root',
            str(tmp_path / 'imagenet'),
            '--shots',
            '1',
            '--queries',
            '2',
            '--average-alpha-tasks',
            '2',
            '--adapt-steps',
            '1',
            '--output-dir',
            str(tmp_path / 'adapt-in'),
            *common,
        ],
    )
    assert averaged['alpha_averaged_over_tasks'] == 2
    probs = json.loads((tmp_path / 'adapt-in' / 'probs.json').read_text())
    assert all(abs(sum(edge.values()) - 1) < 1e-4 for edge in probs.values())

    # ... and the CIFAR-10 export retrains with the paper recipe (tiny here).
    result = _quiet(
        retrain_main,
        [
            '--recipe',
            'cifar10',
            '--arch',
            str(tmp_path / 'adapt-c10' / 'arch.json'),
            '--data-root',
            str(tmp_path / 'cifar'),
            '--output-dir',
            str(tmp_path / 'retrain'),
            '--epochs',
            '1',
            '--width',
            '4',
            '--num-cells',
            '3',
            '--batch-size',
            '8',
            '--num-workers',
            '0',
            '--accelerator',
            'cpu',
            '--no-progress-bar',
        ],
    )
    assert result['finished'] and json.loads((tmp_path / 'retrain' / 'arch.json').read_text()) == arch


def test_recipe_errors(tmp_path):
    with pytest.raises(SystemExit, match='at least one of --imagenet32'):
        _quiet(recipes_main, ['meta-train', '--output-dir', str(tmp_path / 'x')])
    (tmp_path / 'prior.pt').write_bytes(b'')
    with pytest.raises(FileNotFoundError, match='space.json beside prior.pt'):
        _quiet(
            recipes_main,
            [
                'adapt',
                '--prior',
                str(tmp_path / 'prior.pt'),
                '--dataset',
                'svhn',
                '--data-root',
                str(tmp_path),
                '--output-dir',
                str(tmp_path / 'out'),
            ],
        )
