"""Retraining an exported architecture: recipes, network, loss, size figures, run directory, resume."""

from __future__ import annotations

import csv
import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from nni.nas.hub.pytorch import DARTS
from nni.nas.hub.pytorch.utils.nn import DropPath
from torch.utils.flop_counter import FlopCounterMode

from nni_base.cli.retrain import RetrainModule, build_network, load_arch, load_retrained, main, retrain
from nni_base.cli.retrain.recipe import load_recipe
from nni_base.data.augment import Augment, SeededShuffleSampler, cutout
from nni_base.space.genotype import DARTS_V2, genotype_to_sample
from nni_base.space.macs import count_macs, count_parameters
from tests.data.test_data import _write_cifar10

TINY = [
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
]


def _quiet_main(argv):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return main(argv)


@pytest.fixture(scope='module')
def cifar_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp('cifar')
    _write_cifar10(root, per_batch=4)  # 20 training and 4 test images in the official pickle format
    return root


# ---- recipes ------------------------------------------------------------------------------------------
def test_shipped_recipes_follow_the_paper():
    c10, svhn, imnet = load_recipe('cifar10'), load_recipe('svhn'), load_recipe('imagenet')
    for r in (c10, svhn):  # BASE Appendix A / DARTS
        assert (r.num_cells, r.batch_size, r.drop_path_prob, r.aux_weight, r.cutout_length) == (20, 96, 0.2, 0.4, 16)
        assert (r.momentum, r.weight_decay, r.grad_clip, r.image_size, r.stem) == (0.9, 3e-4, 5.0, 32, 'cifar')
    assert (c10.epochs, svhn.epochs) == (600, 160)
    assert c10.flip and not svhn.flip  # a mirrored digit is another symbol
    assert (imnet.num_cells, imnet.width, imnet.image_size, imnet.stem) == (14, 48, 224, 'imagenet')


def test_recipe_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match='cifar10, imagenet, svhn'):
        load_recipe('cifar11')
    bad = tmp_path / 'r.json'
    bad.write_text(json.dumps({'dataset': 'cifar10', 'epoch': 3}))
    with pytest.raises(ValueError, match='unknown recipe setting.*epoch.*known settings are.*epochs'):
        load_recipe(bad)
    bad.write_text('dataset: mnist\n')
    with pytest.raises(ValueError, match="dataset must be one of cifar10, cifar100, svhn, imagenet, got 'mnist'"):
        load_recipe(bad.rename(tmp_path / 'r.yaml'))
    with pytest.raises(ValueError, match='drop_path_prob'):
        load_recipe('cifar10').override(drop_path_prob=1.5)


def test_bad_architecture_names_the_problem(tmp_path):
    sample = genotype_to_sample(DARTS_V2)
    del sample['reduce/op_4_1']
    path = tmp_path / 'arch.json'
    path.write_text(json.dumps(sample))
    with pytest.raises(ValueError, match=r'missing 1 key.*reduce/op_4_1.*export_top_models'):
        load_arch(path)
    sample['reduce/op_4_1'] = 'conv_9x9'
    with pytest.raises(ValueError, match='conv_9x9'):
        load_arch(sample)
    with pytest.raises(FileNotFoundError, match='arch.json written by a BASE run'):
        load_arch(tmp_path / 'none.json')


# ---- network, loss, size ------------------------------------------------------------------------------
def test_count_macs_by_hand_and_against_torch_flop_counter():
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.Conv2d(8, 8, 3, padding=1, groups=8),
        nn.Conv2d(8, 4, 1, stride=2),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 10),
    )
    expected = 8 * 8 * 8 * (3 * 9) + 8 * 8 * 8 * 9 + 4 * 4 * 4 * 8 + 10 * 64
    assert count_macs(net, (3, 8, 8)) == expected

    recipe = load_recipe('cifar10').override(width=4, num_cells=3)
    darts = build_network(load_arch('darts-v2'), recipe, 10).eval()
    with FlopCounterMode(display=False) as counter:
        darts(torch.zeros(1, 3, 32, 32))
    assert count_macs(darts, (3, 32, 32)) == counter.get_total_flops() // 2  # FLOPs = 2 x MACs


def test_full_size_cifar10_network_has_the_published_size():
    # DARTS-V2 cells in the CIFAR-10 recipe: 3.3M parameters as in the DARTS paper (BASE's own cells: 3.1M)
    recipe, sample = load_recipe('cifar10'), load_arch('darts-v2')
    network = build_network(sample, recipe, 10)
    assert count_parameters(network) == 3_349_342
    assert count_parameters(network, exclude=()) > count_parameters(network)  # the auxiliary tower is left out
    assert count_macs(network, (3, 32, 32)) == 528_359_040


def test_summary_only_reports_the_imagenet_mobile_network_size(capsys):
    summary = _quiet_main(['--recipe', 'imagenet', '--arch', 'darts-v2', '--summary-only'])
    # DARTS-V2 in the 14-cell, width-48 mobile setting: 4.7M parameters (as published), under 600M MACs
    assert summary['params'] == 4_718_752 and summary['macs'] < 600e6 and summary['num_classes'] == 1000
    assert json.loads(capsys.readouterr().out)['macs'] == summary['macs']


def test_retrain_network_is_nni_darts_in_retrain_mode():
    recipe = load_recipe('cifar10').override(width=4, num_cells=3)
    sample = load_arch('darts-v2')
    network = build_network(sample, recipe, 7)
    plain = DARTS(width=4, num_cells=3, dataset='cifar', drop_path_prob=0.2).freeze(sample)
    # same cells as NNI's frozen DARTS: same parameters apart from the auxiliary tower and the 7-way head
    ours = {k: v.shape for k, v in network.state_dict().items() if not k.startswith(('auxiliary', 'classifier'))}
    theirs = {k: v.shape for k, v in plain.state_dict().items() if not k.startswith('classifier')}
    assert ours == theirs
    drops = [m for m in network.modules() if isinstance(m, nn.Sequential) and isinstance(m[-1], DropPath)]
    assert drops and all(not isinstance(m[0], nn.Identity) for m in drops)  # skip connections are never dropped
    x = torch.randn(4, 3, 32, 32)
    logits, aux = network.train()(x)
    assert logits.shape == aux.shape == (4, 7)
    assert network.eval()(x).shape == (4, 7)


def test_training_loss_adds_weighted_auxiliary_loss_and_drop_path_ramps():
    recipe = load_recipe('cifar10').override(width=4, num_cells=3, aux_weight=0.4, epochs=10)
    torch.manual_seed(0)
    module = RetrainModule(build_network(load_arch('darts-v2'), recipe, 10), recipe)
    assert [module.drop_path_prob(e) for e in (0, 5, 10)] == pytest.approx([0.0, 0.1, 0.2])
    for m in module.network.modules():
        if isinstance(m, DropPath):
            m.drop_prob = 0.0  # deterministic forward for the comparison
    x, y = torch.randn(6, 3, 32, 32), torch.randint(0, 10, (6,))
    module.network.train()
    logits, aux = module.network(x)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # self.log outside a Trainer
        loss = module.training_step((x, y), 0)
    torch.testing.assert_close(loss, F.cross_entropy(logits, y) + 0.4 * F.cross_entropy(aux, y))


def test_augmentation_is_a_function_of_the_seed():
    img = torch.randn(3, 32, 32)
    aug = Augment(crop_padding=4, flip=True, cutout_length=16)
    a = aug(img, torch.Generator().manual_seed(1))
    assert torch.equal(a, aug(img, torch.Generator().manual_seed(1)))
    assert not torch.equal(a, aug(img, torch.Generator().manual_seed(2)))
    holed = cutout(torch.ones(3, 32, 32), 16, torch.Generator().manual_seed(3))
    zeros = int((holed[0] == 0).sum())
    assert 0 < zeros <= 16 * 16 and torch.equal(holed[0] == 0, holed[2] == 0)
    sampler = SeededShuffleSampler(10, seed=5)
    first = list(sampler)
    assert sorted(i for i, _ in first) == list(range(10)) and first == list(sampler)
    sampler.set_epoch(1)
    assert list(sampler) != first


# ---- whole runs ---------------------------------------------------------------------------------------
def _metrics(run: Path, version: int) -> list[dict[str, str]]:
    with open(run / 'logs' / 'csv' / f'version_{version}' / 'metrics.csv') as f:
        return list(csv.DictReader(f))


@pytest.mark.e2e
def test_cifar10_run_directory_and_resume_gives_the_same_weights(cifar_root, tmp_path):
    common = ['--recipe', 'cifar10', '--arch', 'darts-v2', '--data-root', str(cifar_root), '--epochs', '2', *TINY]
    straight = tmp_path / 'straight'
    result = _quiet_main([*common, '--output-dir', str(straight)])
    assert result['finished'] and result['epochs_completed'] == 2

    # Layout a user finds their way in.
    for name in (
        'arch.json',
        'run.json',
        'model_summary.json',
        'final.json',
        'model.pt',
        'checkpoints/last.ckpt',
        'checkpoints/best.ckpt',
        'logs/csv/version_0/metrics.csv',
    ):
        assert (straight / name).is_file(), name
    assert list((straight / 'logs' / 'tensorboard' / 'version_0').glob('events.out.tfevents.*'))
    assert json.loads((straight / 'arch.json').read_text()) == load_arch('darts-v2')
    summary = json.loads((straight / 'model_summary.json').read_text())
    assert summary['params'] == count_parameters(load_retrained(straight)) and summary['macs'] > 0
    final = json.loads((straight / 'final.json').read_text())
    assert 0.0 <= final['val_acc'] <= 1.0 and final['params'] == summary['params']
    epochs = [row for row in _metrics(straight, 0) if row.get('lr-SGD')]
    # cosine over the 2 planned epochs, drop-path ramp 0 -> 0.2 * 1/2
    assert [float(r['lr-SGD']) for r in epochs] == pytest.approx([0.025, 0.0125])
    dropped = [float(r['drop_path_prob']) for r in _metrics(straight, 0) if r.get('drop_path_prob')]
    assert dropped == pytest.approx([0.0, 0.1])

    # Interrupted after epoch 1, then resumed (weights_only checkpoint load): the same weights as in one go.
    split = tmp_path / 'split'
    first = _quiet_main([*common, '--output-dir', str(split), '--stop-after-epochs', '1'])
    assert not first['finished'] and first['epochs_completed'] == 1
    _quiet_main(['--data-root', str(cifar_root), '--output-dir', str(split), '--resume', *TINY[6:]])
    a = torch.load(straight / 'model.pt', weights_only=True)
    b = torch.load(split / 'model.pt', weights_only=True)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)

    # The seed matters: another seed trains other weights.
    other = _quiet_main([*common, '--output-dir', str(tmp_path / 'other'), '--seed', '1', '--epochs', '1'])
    assert other['epochs_completed'] == 1
    c = torch.load(tmp_path / 'other' / 'model.pt', weights_only=True)
    assert not torch.equal(c['classifier.weight'], a['classifier.weight'])

    # The trained network reloads from the run's files alone.
    net = load_retrained(straight)
    assert not net.training and net(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.e2e
@pytest.mark.filterwarnings('ignore:Checkpoint directory')  # the refused resumes start over an existing run
def test_resume_refuses_what_it_cannot_honour(cifar_root, tmp_path):
    recipe = load_recipe('cifar10').override(width=4, num_cells=3, epochs=2, batch_size=8)
    out = tmp_path / 'run'
    with pytest.raises(FileNotFoundError, match='nothing to resume'):
        retrain('darts-v2', recipe, cifar_root, out, resume=True)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        retrain(
            'darts-v2',
            recipe,
            cifar_root,
            out,
            stop_after_epochs=1,
            num_workers=0,
            accelerator='cpu',
            enable_progress_bar=False,
            limit_val_batches=1,
        )
    with pytest.raises(FileExistsError, match='pass --resume'):
        retrain('darts-v2', recipe, cifar_root, out)
    with pytest.raises(ValueError, match=r'width: 4 -> 8.*start a new --output-dir'):
        retrain(None, recipe.override(width=8), cifar_root, out, resume=True)
    with pytest.raises(ValueError, match='seed changed'):
        retrain(None, None, cifar_root, out, resume=True, seed=3)
    with pytest.raises(FileNotFoundError, match=r'python version.*data_batch_1'):
        retrain('darts-v2', recipe, tmp_path / 'no-data', tmp_path / 'run2')

    # Resuming never runs code from a checkpoint file: it is read with weights_only=True.
    marker = tmp_path / 'pwned'
    torch.save({'state_dict': _RunsCode(marker)}, out / 'checkpoints' / 'last.ckpt')
    with pytest.raises(Exception, match='(?i)weights.only|unsupported global'):
        retrain(None, None, cifar_root, out, resume=True, num_workers=0, accelerator='cpu', enable_progress_bar=False)
    assert not marker.exists()


class _RunsCode:
    """Pickles to a call of os.system: what a malicious checkpoint would contain."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {self.marker}',)


@pytest.mark.e2e
def test_svhn_recipe_end_to_end(tmp_path):
    from scipy.io import savemat

    rng = np.random.default_rng(0)
    for split, n in (('train', 12), ('test', 6)):
        savemat(
            tmp_path / f'{split}_32x32.mat',
            {
                'X': rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8),
                'y': rng.integers(1, 11, (n, 1)).astype(np.uint8),
            },
        )
    out = tmp_path / 'run'
    result = _quiet_main(
        [
            '--recipe',
            'svhn',
            '--arch',
            'darts-v2',
            '--data-root',
            str(tmp_path),
            '--output-dir',
            str(out),
            '--epochs',
            '1',
            *TINY,
        ]
    )
    assert result['finished'] and json.loads((out / 'run.json').read_text())['recipe']['dataset'] == 'svhn'


@pytest.mark.e2e
def test_imagenet_recipe_end_to_end(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, per_class in (('train', 3), ('val', 1)):
        for cls in ('n01440764', 'n01443537'):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(
                    tmp_path / split / cls / f'{i}.JPEG', format='JPEG'
                )
    out = tmp_path / 'run'
    result = _quiet_main(
        [
            '--recipe',
            'imagenet',
            '--arch',
            'darts-v2',
            '--data-root',
            str(tmp_path),
            '--output-dir',
            str(out),
            '--epochs',
            '1',
            '--width',
            '4',
            '--num-cells',
            '3',
            '--batch-size',
            '3',
            '--num-workers',
            '0',
            '--accelerator',
            'cpu',
            '--no-progress-bar',
        ]
    )
    summary = json.loads((out / 'model_summary.json').read_text())
    assert result['finished'] and summary['input_size'] == [3, 224, 224] and summary['num_classes'] == 2
    with pytest.raises(FileNotFoundError, match=r'train/train not found.*expects .*train/train/<class>/<image>'):
        retrain('darts-v2', load_recipe('imagenet'), tmp_path / 'train', tmp_path / 'run2')
