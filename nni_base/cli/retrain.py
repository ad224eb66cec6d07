"""Retrain an exported architecture from scratch at full size (BASE Appendix A, the DARTS protocol).

The last step of the BASE workflow: meta-train a prior, adapt it to a dataset, export the cells
(an NNI sample), then train that architecture from scratch at full size. Here the sample is built
in retrain mode of NNI's DARTS space (auxiliary tower, drop-path) and trained by a Lightning
``Trainer``, so GPUs and multi-GPU runs come from its ``accelerator`` / ``devices`` flags::

    python -m nni_base.cli.retrain --recipe cifar10 --arch runs/quickstart/arch.json \\
        --data-root ~/data/cifar --output-dir runs/cifar10

Everything a run writes goes under ``--output-dir``::

    arch.json            the architecture being trained (an NNI DARTS sample)
    run.json             the effective recipe, seed and data root (a resumed run must match it)
    model_summary.json   parameters (without / with the auxiliary tower) and MACs of one image
    checkpoints/         last.ckpt (every epoch, for --resume) and best.ckpt (highest val_acc)
    logs/tensorboard/    TensorBoard event files (``tensorboard --logdir runs/cifar10/logs``)
    logs/csv/            the same metrics as CSV
    model.pt             final network weights (state dict), see :func:`load_retrained`
    final.json           final and best validation accuracy, epochs done, wall time

Same seed, same weights on CPU, also across an interruption: data order, augmentation and
drop-path masks are functions of (seed, epoch), and checkpoints hold optimizer and schedule state.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn as nn
import torch.nn.functional as F
from nni.nas.hub.pytorch.utils.nn import DropPath
from nni.nas.space import model_context
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger
from torch.utils.data import DataLoader, Dataset

from ..data import load_cifar10, load_cifar100, load_image_folder, load_svhn
from ..data.augment import Augment, AugmentedDataset, EvalView, SeededShuffleSampler, derive_seed
from ..io import write_json
from ..search.prior import atomic_torch_save
from ..space.darts import DartsTaskSpace
from ..space.genotype import DARTS_V2, format_genotype, genotype_to_sample, parse_genotype, sample_to_genotype
from ..space.macs import count_macs, count_parameters
from .retrain_recipe import RetrainRecipe, load_recipe

__all__ = ['RetrainModule', 'build_network', 'load_arch', 'load_retrained', 'model_summary', 'retrain',
           'build_datasets']

# ---- architecture ------------------------------------------------------------------------------------
def canonical_sample(sample: Any, source: str = 'arch') -> dict[str, Any]:
    """Check that ``sample`` is a complete NNI DARTS cell sample and return it in NNI's exported form.

    Inputs may be ``[j]`` (NNI's form) or a bare ``j``; keys outside the cells (e.g. ``width``) are dropped.
    """
    if not isinstance(sample, dict):
        raise ValueError(f'{source}: expected an NNI DARTS sample (a JSON object such as '
                         f'{{"normal/op_2_0": "sep_conv_3x3", "normal/input_2_0": [0], ...}}), '
                         f'got {type(sample).__name__}')
    try:
        return genotype_to_sample(sample_to_genotype(sample))
    except ValueError as e:
        raise ValueError(f'{source}: {e}. Use the sample exported by BaseStrategy '
                         "(exp.export_top_models(formatter='dict')[0], or arch.json of a run).") from None


def load_arch(arch: str | os.PathLike | dict[str, Any]) -> dict[str, Any]:
    """Read an architecture: a sample dict, ``'darts-v2'``, a JSON sample file, or a DARTS genotype text file."""
    if isinstance(arch, dict):
        return canonical_sample(arch)
    if str(arch).lower() == 'darts-v2':
        return genotype_to_sample(DARTS_V2)
    path = Path(arch).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f'architecture file {path} not found: pass the arch.json written by a BASE run '
                                "(or 'darts-v2' for the published DARTS cells)")
    text = path.read_text()
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        try:  # not JSON: maybe a published genotype, "Genotype(normal=[...], ...)"
            return genotype_to_sample(parse_genotype(text))
        except ValueError as e:
            raise ValueError(f'{path}: neither a JSON NNI sample nor a DARTS genotype ({e})') from None
    return canonical_sample(data, source=str(path))


def build_network(sample: dict[str, Any], recipe: RetrainRecipe, num_classes: int) -> DartsTaskSpace:
    """The fixed network of ``sample`` in NNI DARTS retrain mode (auxiliary tower if ``aux_weight > 0``, drop-path).

    Built inside :func:`nni.nas.space.model_context`, so every cell is NNI's own frozen ``Cell``; drop-path
    modules are created with the recipe's final probability and ramped by :class:`RetrainModule`.
    """
    with model_context(canonical_sample(sample)):
        return DartsTaskSpace(width=recipe.width, num_cells=recipe.num_cells, num_classes=num_classes,
                              dataset=recipe.stem, auxiliary_loss=recipe.aux_weight > 0,
                              drop_path_prob=recipe.drop_path_prob)


def set_drop_path_prob(network: nn.Module, prob: float) -> None:
    for module in network.modules():
        if isinstance(module, DropPath):
            module.drop_prob = prob


def model_summary(network: nn.Module, recipe: RetrainRecipe, sample: dict[str, Any]) -> dict[str, Any]:
    """Size of the retrained network as papers report it: parameters without the auxiliary tower, MACs per image."""
    input_size = (3, recipe.image_size, recipe.image_size)
    return {
        'params': count_parameters(network),
        'params_with_auxiliary': count_parameters(network, exclude=()),
        'macs': count_macs(network, input_size),
        'input_size': list(input_size),
        'width': recipe.width,
        'num_cells': recipe.num_cells,
        'num_classes': int(network.num_classes),
        'genotype': format_genotype(sample_to_genotype(sample)),
    }


# ---- training ----------------------------------------------------------------------------------------
class RetrainModule(pl.LightningModule):
    """Trains a fixed DARTS network: auxiliary loss, drop-path ramp, SGD + cosine schedule.

    Parameters
    ----------
    network
        From :func:`build_network`.
    recipe
        Optimiser, schedule and loss settings.
    seed
        Seeds the drop-path masks per (epoch, batch), so a resumed run repeats an uninterrupted one.
    sampler
        The training sampler, told the epoch here too (Lightning only reaches the outer sampler when it
        wraps ours for distributed training).
    """

    def __init__(self, network: DartsTaskSpace, recipe: RetrainRecipe, seed: int = 0,
                 sampler: SeededShuffleSampler | None = None):
        super().__init__()
        self.network = network
        self.recipe = recipe
        self.seed = int(seed)
        self.sampler = sampler
        self.train_criterion = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.network(x)
        return out[0] if isinstance(out, tuple) else out

    def drop_path_prob(self, epoch: int) -> float:
        """Linear ramp from 0 at the first epoch to the recipe's value at the end (DARTS)."""
        return self.recipe.drop_path_prob * epoch / self.recipe.epochs

    def on_train_epoch_start(self) -> None:
        epoch = self.current_epoch
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)
        set_drop_path_prob(self.network, self.drop_path_prob(epoch))
        self.log('drop_path_prob', self.drop_path_prob(epoch), on_step=False, on_epoch=True)

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        # Drop-path masks come from the global RNG, which Lightning and the data loaders also draw from (a
        # different number of times in a resumed run); a per-batch seed makes the masks independent of that.
        torch.manual_seed(derive_seed(self.seed, self.current_epoch, batch_idx, self.global_rank))

    def training_step(self, batch, batch_idx):
        x, y = batch
        out = self.network(x)
        logits, aux = out if isinstance(out, tuple) else (out, None)
        loss = self.train_criterion(logits, y)
        if aux is not None:
            loss = loss + self.recipe.aux_weight * self.train_criterion(aux, y)
        if not torch.isfinite(loss):
            raise FloatingPointError(f'non-finite training loss at epoch {self.current_epoch}, batch {batch_idx}: '
                                     'lower learning_rate in the recipe')
        acc = (logits.argmax(-1) == y).float().mean()
        self.log_dict({'train_loss': loss, 'train_acc': acc}, prog_bar=True, on_step=True, on_epoch=True,
                      batch_size=len(y), sync_dist=False)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        k = min(5, logits.shape[-1])
        top = logits.topk(k, dim=-1).indices
        metrics = {'val_loss': F.cross_entropy(logits, y), 'val_acc': (top[:, 0] == y).float().mean(),
                   f'val_top{k}': (top == y[:, None]).any(-1).float().mean()}
        self.log_dict(metrics, prog_bar=True, on_epoch=True, batch_size=len(y), sync_dist=True)

    def configure_optimizers(self):
        r = self.recipe
        optimizer = torch.optim.SGD(self.network.parameters(), lr=r.learning_rate, momentum=r.momentum,
                                    weight_decay=r.weight_decay)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=r.epochs, eta_min=r.min_learning_rate)
        return {'optimizer': optimizer, 'lr_scheduler': {'scheduler': scheduler, 'interval': 'epoch'}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Provenance in plain types, so weights_only loading accepts it.
        checkpoint['nni_base'] = {'recipe': self.recipe.to_dict(), 'seed': self.seed}


# ---- data --------------------------------------------------------------------------------------------
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
                raise FileNotFoundError(f'{root / split} not found. The imagenet recipe expects '
                                        f'{root}/train/<class>/<image> and {root}/val/<class>/<image> '
                                        '(the ILSVRC-2012 train and val sets, val sorted into class folders)')
        train, val = load_image_folder(root / 'train', size), load_image_folder(root / 'val', size)
        if train.class_names != val.class_names:
            raise ValueError(f'{root}/train and {root}/val have different class folders: they must hold the same '
                             'classes')
    crop = recipe.image_size if recipe.load_size and recipe.load_size != recipe.image_size else None
    augment = Augment(crop_padding=recipe.crop_padding, flip=recipe.flip, cutout_length=recipe.cutout_length,
                      resized_crop=crop)
    return AugmentedDataset(train, augment), EvalView(val, crop), int(train.num_classes)


# ---- the run -----------------------------------------------------------------------------------------
def _check_resume(run_file: Path, settings: dict[str, Any]) -> None:
    stored = json.loads(run_file.read_text())
    for key in ('recipe', 'arch', 'seed'):
        if stored.get(key) != settings[key]:
            if key == 'recipe':
                diff = [f'{k}: {stored[key].get(k)!r} -> {v!r}' for k, v in settings[key].items()
                        if stored[key].get(k) != v]
                what = 'recipe settings changed (' + '; '.join(diff) + ')'
            else:
                what = f'{key} changed'
            raise ValueError(f'cannot resume {run_file.parent}: {what}. A resumed run keeps the settings it started '
                             'with; drop the changed options or start a new --output-dir.')


def retrain(arch: str | os.PathLike | dict[str, Any] | None, recipe: RetrainRecipe | None,
            data_root: str | os.PathLike, output_dir: str | os.PathLike, *, seed: int | None = None,
            resume: bool = False,
            stop_after_epochs: int | None = None, accelerator: str = 'auto', devices: int | str = 'auto',
            num_workers: int = 4, limit_train_batches: int | float | None = None,
            limit_val_batches: int | float | None = None, precision: str | None = None,
            enable_progress_bar: bool = True) -> dict[str, Any]:
    """Train ``arch`` with ``recipe`` on the dataset in ``data_root``; everything goes to ``output_dir``.

    Parameters
    ----------
    arch
        The architecture (see :func:`load_arch`). With ``resume`` it may be ``None`` (taken from the run).
    recipe
        The settings (see :func:`~nni_base.cli.retrain_recipe.load_recipe`); ``None`` with ``resume`` reuses the run's.
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
    if resume:
        if not last.is_file():
            raise FileNotFoundError(f'nothing to resume: {last} does not exist. Start the run without --resume.')
        stored = json.loads(run_file.read_text())
        arch = stored['arch'] if arch is None else arch
        recipe = RetrainRecipe.from_dict(stored['recipe'], str(run_file)) if recipe is None else recipe
        seed = stored['seed'] if seed is None else seed
    elif last.exists():
        raise FileExistsError(f'{out} already holds a run ({last}): pass --resume to continue it, or choose another '
                              '--output-dir')
    if arch is None or recipe is None:
        raise ValueError('arch and recipe are required for a new run')
    seed = 0 if seed is None else int(seed)
    sample = load_arch(arch)
    settings = {'recipe': recipe.to_dict(), 'arch': sample, 'seed': int(seed)}
    if resume:
        _check_resume(run_file, settings)
    if stop_after_epochs is not None and stop_after_epochs < 1:
        raise ValueError(f'stop_after_epochs must be at least 1, got {stop_after_epochs}')

    train_set, val_set, num_classes = build_datasets(recipe, data_root)
    pl.seed_everything(seed, workers=True, verbose=False)
    network = build_network(sample, recipe, num_classes)
    summary = model_summary(network, recipe, sample)

    out.mkdir(parents=True, exist_ok=True)
    if not resume:
        write_json(out / 'arch.json', sample)
        write_json(run_file, {**settings, 'data_root': str(data_root)})
        write_json(out / 'model_summary.json', summary)

    sampler = SeededShuffleSampler(len(train_set), seed)
    pin = accelerator not in ('cpu',) and torch.cuda.is_available()
    train_loader = DataLoader(train_set, batch_size=recipe.batch_size, sampler=sampler, num_workers=num_workers,
                              pin_memory=pin, persistent_workers=num_workers > 0)
    val_loader = DataLoader(val_set, batch_size=recipe.eval_batch_size, shuffle=False, num_workers=num_workers,
                            pin_memory=pin)
    module = RetrainModule(network, recipe, seed=seed, sampler=sampler)
    checkpoints = ModelCheckpoint(dirpath=out / 'checkpoints', filename='best', monitor='val_acc', mode='max',
                                  save_top_k=1, save_last=True, save_on_train_epoch_end=True,
                                  enable_version_counter=False)
    loggers = [TensorBoardLogger(out / 'logs', name='tensorboard'), CSVLogger(out / 'logs', name='csv')]
    max_epochs = recipe.epochs if stop_after_epochs is None else min(recipe.epochs, stop_after_epochs)
    trainer = pl.Trainer(max_epochs=max_epochs, accelerator=accelerator, devices=devices, logger=loggers,
                         callbacks=[checkpoints, LearningRateMonitor(logging_interval='epoch')],
                         gradient_clip_val=recipe.grad_clip or None, num_sanity_val_steps=0,
                         limit_train_batches=limit_train_batches, limit_val_batches=limit_val_batches,
                         enable_progress_bar=enable_progress_bar, log_every_n_steps=10, precision=precision,
                         default_root_dir=out)
    start = time.time()
    with warnings.catch_warnings():
        # Lightning suggests more workers / a bigger log interval for tiny runs: not actionable here.
        warnings.filterwarnings('ignore', message='.*does not have many workers.*')
        warnings.filterwarnings('ignore', message='.*log_every_n_steps.*')
        trainer.fit(module, train_loader, val_loader, ckpt_path=str(last) if resume else None,
                    weights_only=True if resume else None)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    best = checkpoints.best_model_score
    result = {
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
        'wall_seconds_this_session': round(time.time() - start, 1),
        'last_checkpoint': str(last),
        'best_checkpoint': checkpoints.best_model_path or None,
    }
    if trainer.is_global_zero:
        atomic_torch_save({k: v.detach().cpu() for k, v in network.state_dict().items()}, out / 'model.pt')
        write_json(out / 'final.json', result)
    return result


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


# ---- command line ------------------------------------------------------------------------------------
_NUM_CLASSES = {'cifar10': 10, 'cifar100': 100, 'svhn': 10, 'imagenet': 1000}  # for --summary-only (no data)


def _limit(text: str) -> int | float:
    value = float(text)
    return int(value) if value.is_integer() and value >= 1 else value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog='python -m nni_base.cli.retrain', description=__doc__.split('\n')[0])
    p.add_argument('--recipe', help="shipped recipe name (cifar10, svhn, imagenet) or a .json/.yaml file")
    p.add_argument('--arch', help="arch.json of a BASE run (an NNI DARTS sample), a genotype file, or 'darts-v2'")
    p.add_argument('--data-root', help='folder with the dataset files (never downloaded)')
    p.add_argument('--output-dir', type=Path)
    p.add_argument('--summary-only', action='store_true',
                   help='print parameters and MACs of the recipe network for --arch, train nothing')
    p.add_argument('--resume', action='store_true', help='continue OUTPUT_DIR/checkpoints/last.ckpt')
    p.add_argument('--seed', type=int, help='default 0 (a resumed run keeps its own)')
    g = p.add_argument_group('recipe overrides (e.g. for a tiny smoke run)')
    for flag, kind in (('epochs', int), ('width', int), ('num-cells', int), ('batch-size', int),
                       ('eval-batch-size', int), ('learning-rate', float), ('drop-path-prob', float),
                       ('aux-weight', float), ('cutout-length', int)):
        g.add_argument(f'--{flag}', type=kind)
    t = p.add_argument_group('trainer')
    t.add_argument('--accelerator', default='auto', help="Lightning accelerator: auto, cpu, gpu, ...")
    t.add_argument('--devices', default='auto', help='Lightning devices: auto, a count, or a list like 0,1')
    t.add_argument('--num-workers', type=int, default=4)
    t.add_argument('--precision', help="Lightning precision, e.g. bf16-mixed (default: full 32-bit)")
    t.add_argument('--stop-after-epochs', type=int, help='stop early (keeping the full schedule); resume later')
    t.add_argument('--limit-train-batches', type=_limit, help='batches per epoch (int) or fraction (float)')
    t.add_argument('--limit-val-batches', type=_limit)
    t.add_argument('--no-progress-bar', action='store_true')
    args = p.parse_args(argv)
    if not args.resume and (args.recipe is None or args.arch is None):
        p.error('--recipe and --arch are required (except with --resume, which reuses the run\'s)')
    if not args.summary_only and (args.data_root is None or args.output_dir is None):
        p.error('--data-root and --output-dir are required to train (or pass --summary-only)')
    return args


def _devices(text: str) -> int | str | list[int]:
    if text.isdigit():
        return int(text)
    if ',' in text:
        return [int(d) for d in text.split(',') if d]
    return text


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    overrides = {'epochs': args.epochs, 'width': args.width, 'num_cells': args.num_cells,
                 'batch_size': args.batch_size, 'eval_batch_size': args.eval_batch_size,
                 'learning_rate': args.learning_rate, 'drop_path_prob': args.drop_path_prob,
                 'aux_weight': args.aux_weight, 'cutout_length': args.cutout_length}
    if args.recipe is None and any(v is not None for v in overrides.values()):
        raise SystemExit('error: recipe overrides need --recipe (a resumed run keeps its recipe unchanged)')
    recipe = load_recipe(args.recipe).override(**overrides) if args.recipe is not None else None
    if args.summary_only:
        sample = load_arch(args.arch)
        summary = model_summary(build_network(sample, recipe, _NUM_CLASSES[recipe.dataset]), recipe, sample)
        print(json.dumps(summary, indent=2))
        return summary
    result = retrain(args.arch, recipe, args.data_root, args.output_dir, seed=args.seed, resume=args.resume,
                     stop_after_epochs=args.stop_after_epochs, accelerator=args.accelerator,
                     devices=_devices(args.devices), num_workers=args.num_workers,
                     limit_train_batches=args.limit_train_batches, limit_val_batches=args.limit_val_batches,
                     precision=args.precision, enable_progress_bar=not args.no_progress_bar)
    summary = json.loads((args.output_dir / 'model_summary.json').read_text())
    print(f"params {summary['params']:,}, MACs {summary['macs']:,}; "
          f"epochs {result['epochs_completed']}/{result['epochs_planned']}, val_acc {result['val_acc']}, "
          f"best {result['best_val_acc']}; results in {args.output_dir}")
    return result


if __name__ == '__main__':
    main()
