"""One retraining run: datasets, trainer, checkpoints and resume, the files it writes."""

from __future__ import annotations

import json
import os
import time
import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger
from torch.utils.data import DataLoader, Dataset, Sampler

from ...data import load_cifar10, load_cifar100, load_image_folder, load_svhn
from ...data.augment import Augment, AugmentedDataset, EvalView, SeededShuffleSampler
from ...io import write_json, write_torch
from ...space.darts import DartsTaskSpace
from .module import RetrainModule
from .network import build_network, load_arch, model_summary
from .recipe import RetrainRecipe

__all__ = ['build_datasets', 'load_retrained', 'retrain']


def build_datasets(recipe: RetrainRecipe, data_root: str | os.PathLike) -> tuple[Dataset, Dataset, int]:
    """Training set (augmented view), validation set and number of classes for the recipe's dataset."""
    root = Path(data_root).expanduser()
    size = recipe.load_size or recipe.image_size
    if recipe.dataset == 'cifar10':
        train, val = load_cifar10(root, True, size), load_cifar10(root, False, size)
    elif recipe.dataset == 'cifar100':
        train, val = load_cifar100(root, True, size), load_cifar100(root, False, size)
    elif recipe.dataset == 'svhn':
        train, val = load_svhn(root, 'train', size), load_svhn(root, 'test', size)
    else:
        for split in ('train', 'val'):
            if not (root / split).is_dir():
                raise FileNotFoundError(
                    f'{root / split} not found. The imagenet recipe expects '
                    f'{root}/train/<class>/<image> and {root}/val/<class>/<image> '
                    '(the ILSVRC-2012 train and val sets, val sorted into class folders)'
                )
        train, val = load_image_folder(root / 'train', size), load_image_folder(root / 'val', size)
        if train.class_names != val.class_names:
            raise ValueError(
                f'{root}/train and {root}/val have different class folders: they must hold the same classes'
            )
    crop = recipe.image_size if recipe.load_size and recipe.load_size != recipe.image_size else None
    augment = Augment(
        crop_padding=recipe.crop_padding, flip=recipe.flip, cutout_length=recipe.cutout_length, resized_crop=crop
    )
    return AugmentedDataset(train, augment), EvalView(val, crop), int(train.num_classes)


def _check_resume(run_file: Path, settings: dict[str, Any]) -> None:
    stored = json.loads(run_file.read_text())
    for key in ('recipe', 'arch', 'seed'):
        if stored.get(key) != settings[key]:
            if key == 'recipe':
                diff = [
                    f'{k}: {stored[key].get(k)!r} -> {v!r}' for k, v in settings[key].items() if stored[key].get(k) != v
                ]
                what = 'recipe settings changed (' + '; '.join(diff) + ')'
            else:
                what = f'{key} changed'
            raise ValueError(
                f'cannot resume {run_file.parent}: {what}. A resumed run keeps the settings it started '
                'with; drop the changed options or start a new --output-dir.'
            )


def retrain(
    arch: str | os.PathLike | dict[str, Any] | None,
    recipe: RetrainRecipe | None,
    data_root: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    seed: int | None = None,
    resume: bool = False,
    stop_after_epochs: int | None = None,
    accelerator: str = 'auto',
    devices: int | str = 'auto',
    num_workers: int = 4,
    limit_train_batches: int | float | None = None,
    limit_val_batches: int | float | None = None,
    precision: str | None = None,
    enable_progress_bar: bool = True,
) -> dict[str, Any]:
    """Train ``arch`` with ``recipe`` on the dataset in ``data_root``; everything goes to ``output_dir``.

    Parameters
    ----------
    arch
        The architecture (see :func:`load_arch`). With ``resume`` it may be ``None`` (taken from the run).
    recipe
        The settings (see :func:`~nni_base.cli.retrain.recipe.load_recipe`); ``None`` with ``resume`` reuses the run's.
    seed
        Seeds weight initialisation, data order, augmentation and drop-path. ``None``: 0 for a new run, the run's
        own seed when resuming.
    resume
        Continue from ``output_dir/checkpoints/last.ckpt`` (loaded with ``weights_only=True``).
    stop_after_epochs
        Stop once this many epochs are done, keeping the schedules of the full ``recipe.epochs`` (train a long
        run in several jobs, each ending with ``--resume``).
    accelerator, devices
        Lightning ``Trainer`` flags (``'gpu'``, ``4`` runs data-parallel on 4 GPUs; batch size is per device).
    num_workers
        Data-loading processes per device.
    limit_train_batches, limit_val_batches
        Lightning flags to shorten epochs (smoke tests).
    precision
        Lightning ``precision`` (e.g. ``'bf16-mixed'`` on GPUs); ``None`` keeps full precision.

    Returns
    -------
    dict
        The contents of ``final.json``.
    """
    out = Path(output_dir).expanduser()
    run_file, last = out / 'run.json', out / 'checkpoints' / 'last.ckpt'
    sample, recipe, seed = _run_settings(arch, recipe, seed, resume, run_file, last)
    if stop_after_epochs is not None and stop_after_epochs < 1:
        raise ValueError(f'stop_after_epochs must be at least 1, got {stop_after_epochs}')

    train_set, val_set, num_classes = build_datasets(recipe, data_root)
    pl.seed_everything(seed, workers=True, verbose=False)
    network = build_network(sample, recipe, num_classes)
    summary = model_summary(network, recipe, sample)

    out.mkdir(parents=True, exist_ok=True)
    if not resume:
        write_json(out / 'arch.json', sample)
        write_json(run_file, {'recipe': recipe.to_dict(), 'arch': sample, 'seed': seed, 'data_root': str(data_root)})
        write_json(out / 'model_summary.json', summary)

    sampler = SeededShuffleSampler(len(train_set), seed)
    train_loader, val_loader = _loaders(train_set, val_set, recipe, sampler, num_workers, accelerator)
    module = RetrainModule(network, recipe, seed=seed, sampler=sampler)
    checkpoints = ModelCheckpoint(
        dirpath=out / 'checkpoints',
        filename='best',
        monitor='val_acc',
        mode='max',
        save_top_k=1,
        save_last=True,
        save_on_train_epoch_end=True,
        enable_version_counter=False,
    )
    trainer = pl.Trainer(
        max_epochs=recipe.epochs if stop_after_epochs is None else min(recipe.epochs, stop_after_epochs),
        accelerator=accelerator,
        devices=devices,
        logger=[TensorBoardLogger(out / 'logs', name='tensorboard'), CSVLogger(out / 'logs', name='csv')],
        callbacks=[checkpoints, LearningRateMonitor(logging_interval='epoch')],
        gradient_clip_val=recipe.grad_clip or None,
        num_sanity_val_steps=0,
        limit_train_batches=limit_train_batches,
        limit_val_batches=limit_val_batches,
        enable_progress_bar=enable_progress_bar,
        log_every_n_steps=10,
        precision=precision,
        default_root_dir=out,
    )
    start = time.time()
    with warnings.catch_warnings():
        # Lightning suggests more workers / a bigger log interval for tiny runs: not actionable here.
        warnings.filterwarnings('ignore', message='.*does not have many workers.*')
        warnings.filterwarnings('ignore', message='.*log_every_n_steps.*')
        trainer.fit(
            module,
            train_loader,
            val_loader,
            ckpt_path=str(last) if resume else None,
            weights_only=True if resume else None,
        )
    result = _final_result(trainer, checkpoints, recipe, summary, time.time() - start, last)
    if trainer.is_global_zero:
        write_torch({k: v.detach().cpu() for k, v in network.state_dict().items()}, out / 'model.pt')
        write_json(out / 'final.json', result)
    return result


def _loaders(
    train_set: Dataset, val_set: Dataset, recipe: RetrainRecipe, sampler: Sampler, num_workers: int, accelerator: str
) -> tuple[DataLoader, DataLoader]:
    pin = accelerator not in ('cpu',) and torch.cuda.is_available()
    train_loader = DataLoader(
        train_set,
        batch_size=recipe.batch_size,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=pin,
        persistent_workers=num_workers > 0,
    )
    val_loader = DataLoader(
        val_set, batch_size=recipe.eval_batch_size, shuffle=False, num_workers=num_workers, pin_memory=pin
    )
    return train_loader, val_loader


def _run_settings(
    arch: str | os.PathLike | dict[str, Any] | None,
    recipe: RetrainRecipe | None,
    seed: int | None,
    resume: bool,
    run_file: Path,
    last: Path,
) -> tuple[dict[str, Any], RetrainRecipe, int]:
    """The run's architecture, recipe and seed: as given for a new run, the stored ones filling in on resume
    (where what is given must agree with what is stored)."""
    if resume:
        if not last.is_file():
            raise FileNotFoundError(f'nothing to resume: {last} does not exist. Start the run without --resume.')
        stored = json.loads(run_file.read_text())
        arch = stored['arch'] if arch is None else arch
        recipe = RetrainRecipe.from_dict(stored['recipe'], str(run_file)) if recipe is None else recipe
        seed = stored['seed'] if seed is None else seed
    elif last.exists():
        raise FileExistsError(
            f'{last.parent.parent} already holds a run ({last}): pass --resume to continue it, or choose another '
            '--output-dir'
        )
    if arch is None or recipe is None:
        raise ValueError('arch and recipe are required for a new run')
    seed = 0 if seed is None else int(seed)
    sample = load_arch(arch)
    if resume:
        _check_resume(run_file, {'recipe': recipe.to_dict(), 'arch': sample, 'seed': seed})
    return sample, recipe, seed


def _final_result(
    trainer: pl.Trainer,
    checkpoints: ModelCheckpoint,
    recipe: RetrainRecipe,
    summary: dict[str, Any],
    seconds: float,
    last: Path,
) -> dict[str, Any]:
    """What ``final.json`` holds: the last epoch's metrics, the best checkpoint's, the network's size, the time."""
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    best = checkpoints.best_model_score
    return {
        'epochs_completed': int(trainer.current_epoch),
        'epochs_planned': recipe.epochs,
        'finished': int(trainer.current_epoch) >= recipe.epochs,
        'val_acc': metrics.get('val_acc'),
        'val_loss': metrics.get('val_loss'),
        'val_top5': metrics.get('val_top5'),
        'best_val_acc': float(best) if best is not None else None,
        'train_loss': metrics.get('train_loss_epoch'),
        'params': summary['params'],
        'macs': summary['macs'],
        'wall_seconds_this_session': round(seconds, 1),
        'last_checkpoint': str(last),
        'best_checkpoint': checkpoints.best_model_path or None,
    }


def load_retrained(run_dir: str | os.PathLike) -> DartsTaskSpace:
    """The trained network of a run directory (from ``arch.json``, ``run.json`` and ``model.pt``), in eval mode."""
    run_dir = Path(run_dir).expanduser()
    stored = json.loads((run_dir / 'run.json').read_text())
    recipe = RetrainRecipe.from_dict(stored['recipe'], str(run_dir / 'run.json'))
    state = torch.load(run_dir / 'model.pt', map_location='cpu', weights_only=True)
    num_classes = state['classifier.weight'].shape[0]
    network = build_network(json.loads((run_dir / 'arch.json').read_text()), recipe, num_classes)
    network.load_state_dict(state)
    return network.eval()
