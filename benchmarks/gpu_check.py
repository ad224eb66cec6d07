"""The prepared device check: every path a GPU user runs, timed, in one results file (no download).

Run it the day a GPU machine is there (about 6 minutes on one GPU at the default sizes)::

    python -m benchmarks.gpu_check --device cuda --output benchmarks/results/gpu_check.json

``--tiny`` runs the same code at toy sizes (the CI runs it on CPU: ``tests/benchmarks/test_gpu_check.py``).
Five parts, each on ``--device``:

1. **Meta-training** through the README's API at the library's defaults (texture family, 16 px, width 8, 3 cells,
   ``tasks_per_step=4, steps_per_epoch=10, max_epochs=3``), at ``precision='32-true'`` and ``'bf16-mixed'``.
2. **Adaptation on a CIFAR-sized dataset** (the texture family's held-out classes at 3x32x32) through
   ``NasExperiment`` + NNI's ``Classification``: ``BaseStrategy(prior=...)`` against NNI's ``GumbelDARTS`` for the
   same epochs, their seconds (BASE's validation accuracy after every epoch too; GumbelDARTS runs no validation).
3. **Retraining** each exported cell from fresh weights (``retrain_and_test``) in both precisions: BASE's against
   GumbelDARTS's.
4. **Step time** of BASE's inner step against GumbelDARTS at the CIFAR-like size (3x32x32, width 16, 5 cells,
   batch 32) and at DARTS's own search size (8 cells, width 16, batch 64), in both precisions.
5. The device, its name and memory, and the peak memory of the run.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import nni
import pytorch_lightning as pl
import torch
from nni.nas.evaluator.pytorch import Classification
from nni.nas.oneshot.pytorch.strategy import GumbelDARTS
from torch.utils.data import DataLoader

from benchmarks.common import (
    QUIET_TRAINER,
    darts_space,
    episodic_evaluator,
    quiet,
    run_experiment,
    split_dataset,
    write_json_result,
)
from benchmarks.step_curve import measure_point
from nni_base import BaseStrategy, TaskDistribution
from nni_base.cli.retrain.small import retrain_and_test
from nni_base.data.families import family_splits

__all__ = ['SIZES', 'main', 'run_check']

PRECISIONS = ('32-true', 'bf16-mixed')
#: The sizes of each part, at the defaults and with ``--tiny``.
SIZES = {
    'default': {
        'meta': {'width': 8, 'cells': 3, 'image': 16, 'tasks_per_step': 4, 'steps_per_epoch': 10, 'epochs': 3},
        'search': {'width': 16, 'cells': 5, 'image': 32, 'images_per_class': 600, 'epochs': 8},
        'retrain_epochs': 10,
        'steps': [('cifar_like', 32, 16, 5, 32), ('darts_search', 32, 16, 8, 64)],
        'repeats': 20,
    },
    'tiny': {
        'meta': {'width': 4, 'cells': 3, 'image': 16, 'tasks_per_step': 2, 'steps_per_epoch': 2, 'epochs': 1},
        'search': {'width': 4, 'cells': 3, 'image': 16, 'images_per_class': 12, 'epochs': 2},
        'retrain_epochs': 1,
        'steps': [('cifar_like', 16, 4, 3, 8)],
        'repeats': 2,
    },
}


class EpochClock(pl.Callback):
    """Validation accuracy at the end of every epoch, with the seconds since the fit started."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.points: list[dict[str, float]] = []

    def on_fit_start(self, trainer, pl_module) -> None:
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:  # after the epoch's validation
        acc = trainer.callback_metrics.get('val_acc')
        if acc is not None:
            self.points.append({'seconds': time.perf_counter() - self.start, 'val_acc': float(acc)})


def accelerator(device: str) -> dict[str, Any]:
    """Lightning's trainer options for ``device``."""
    return {'accelerator': 'gpu' if device.startswith('cuda') else 'cpu', 'devices': 1}


def meta_training(device: str, size: dict[str, Any], prior: Path, precision: str, seed: int) -> dict[str, Any]:
    """Meta-train a prior at ``size`` through ``NasExperiment``; seconds, final validation accuracy, finiteness."""
    splits = family_splits('texture', image_size=size['image'], seed=seed)
    train = TaskDistribution(splits['train'], 5, 5, 5)
    val = TaskDistribution(splits['test'], 5, 5, 5)
    evaluator = episodic_evaluator(
        train,
        val,
        tasks_per_step=size['tasks_per_step'],
        steps_per_epoch=size['steps_per_epoch'],
        max_epochs=size['epochs'],
        seed=seed,
        precision=precision,
        **accelerator(device),
    )
    strategy = BaseStrategy(seed=seed, save_prior_to=prior)
    seconds, _ = run_experiment(darts_space(size['width'], size['cells'], 5), evaluator, strategy)
    metrics = strategy.oneshot_module.trainer.callback_metrics
    state = torch.load(prior, weights_only=True)['state_dict']
    finite = all(bool(torch.isfinite(t).all()) for t in state.values() if t.is_floating_point())
    return {'precision': precision, 'seconds': seconds, 'val_acc': float(metrics['val_acc']), 'finite': finite}


def search(device: str, size: dict[str, Any], strategy: Any, data: tuple, seed: int) -> dict[str, Any]:
    """One search through ``NasExperiment`` + ``Classification``; its epoch curve, seconds and exported cell."""
    train, val, _ = data
    clock = EpochClock()
    torch.manual_seed(seed)
    evaluator = Classification(
        learning_rate=0.02,
        optimizer=torch.optim.SGD,
        num_classes=5,
        train_dataloaders=nni.trace(DataLoader)(train, batch_size=64, shuffle=True),
        val_dataloaders=nni.trace(DataLoader)(val, batch_size=256),
        max_epochs=size['epochs'],
        logger=False,
        callbacks=[clock],
        **accelerator(device),
        **QUIET_TRAINER,
    )
    seconds, sample = run_experiment(darts_space(size['width'], size['cells'], 5), evaluator, strategy, export=True)
    return {'seconds': seconds, 'curve': clock.points, 'sample': sample}


def run_check(device: str, out: Path, *, tiny: bool = False, seed: int = 0, log=print) -> dict[str, Any]:
    """Run every part at the default (or ``tiny``) sizes on ``device``; writes and returns the results."""
    quiet()
    sizes = SIZES['tiny' if tiny else 'default']
    if device.startswith('cuda'):
        torch.cuda.reset_peak_memory_stats()
    results: dict[str, Any] = {'device': device, 'tiny': tiny, 'seed': seed}
    if device.startswith('cuda'):
        props = torch.cuda.get_device_properties(torch.device(device))
        results['device_name'], results['device_memory_gib'] = props.name, props.total_memory / 2**30
    work = out.parent / f'{out.stem}_files'
    work.mkdir(parents=True, exist_ok=True)

    log('1. meta-training at the defaults ...', flush=True)
    results['meta_training'] = [
        meta_training(device, sizes['meta'], work / f'prior_{p}.pt', p, seed) for p in PRECISIONS
    ]
    # the search's prior: same recipe at the search's width and depth (a prior fits its own space)
    search_size = sizes['search']
    prior = work / 'prior_search.pt'
    meta_training(
        device, {**sizes['meta'], 'width': search_size['width'], 'cells': search_size['cells']}, prior, '32-true', seed
    )

    log('2. adaptation on a CIFAR-sized dataset against GumbelDARTS ...', flush=True)
    heldout = family_splits(
        'texture', image_size=search_size['image'], images_per_class=search_size['images_per_class'], seed=seed
    )['test']
    data = split_dataset(heldout, seed)
    base = search(device, search_size, BaseStrategy(prior=prior, seed=seed), data, seed)
    gumbel = search(device, search_size, GumbelDARTS(), data, seed)
    # NNI's DARTS-family modules train alpha on the validation loader and run no validation of their own, so the two
    # are compared by their exported cells, retrained with one recipe (part 3), and by their seconds
    results['adaptation'] = {
        'base': base,
        'gumbel_darts': gumbel,
        'time_fraction': base['seconds'] / gumbel['seconds'],
    }

    log('3. retraining the exported cells ...', flush=True)
    train, _, test = data
    results['retraining'] = {
        name: {
            p: retrain_and_test(
                darts_space(search_size['width'], search_size['cells'], 5).freeze(found['sample']),
                train,
                test,
                epochs=sizes['retrain_epochs'],
                seed=seed,
                device=device,
                precision=p,
            )
            for p in PRECISIONS
        }
        for name, found in (('base', base), ('gumbel_darts', gumbel))
    }

    log('4. step time against GumbelDARTS ...', flush=True)
    results['step_time'] = [
        {
            'size': name,
            **measure_point(
                r, w, c, repeats=sizes['repeats'], warmup=2, seed=seed, batch=b, device=device, precision=p
            ),
        }
        for name, r, w, c, b in sizes['steps']
        for p in PRECISIONS
    ]
    if device.startswith('cuda'):
        results['peak_memory_gib'] = torch.cuda.max_memory_allocated() / 2**30
    write_json_result(out, results)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--output', type=Path, default=Path('benchmarks/results/gpu_check.json'))
    parser.add_argument('--tiny', action='store_true', help='toy sizes (what the CI runs on CPU)')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    results = run_check(args.device, args.output, tiny=args.tiny, seed=args.seed)
    for m in results['meta_training']:
        print(f'meta-training {m["precision"]}: {m["seconds"]:.1f} s, val_acc {m["val_acc"]:.3f}')
    a, r = results['adaptation'], results['retraining']
    print(
        f'adaptation: BASE {a["base"]["seconds"]:.1f} s, GumbelDARTS {a["gumbel_darts"]["seconds"]:.1f} s '
        f'(fraction {a["time_fraction"]:.3f}); retrained BASE {r["base"]} vs GumbelDARTS {r["gumbel_darts"]}'
    )
    for s in results['step_time']:
        print(
            f'step {s["size"]} {s["precision"]}: BASE / GumbelDARTS {s["ratio"]:.3f} '
            f'(same layout {s["ratio_same_layout"]:.3f})'
        )
    print(f'wrote {args.output}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
