"""Paper-scale BASE pipelines as two commands: multi-resolution meta-training, and adaptation to a dataset.

Meta-train one prior on 10-class ImageNet tasks at 32x32, 64x64 and 224x224 (paper §5: equal numbers
of tasks of each size per epoch, one stem per size, cells and alpha shared)::

    python -m nni_base.cli.recipes meta-train --imagenet32 ~/data/Imagenet32_train \\
        --imagenet64 ~/data/Imagenet64_train --imagenet224 ~/data/imagenet/train --output-dir runs/prior --epochs 130

Adapt it to CIFAR-10 / SVHN (fine-tune weights and alpha on the training set, export the cells), or to
ImageNet (adapt to 8 sampled 10-class tasks and export the most probable cells of their mean alpha, §5.2)::

    python -m nni_base.cli.recipes adapt --prior runs/prior/prior.pt --dataset cifar10 --data-root ~/data/cifar \\
        --output-dir runs/adapt-cifar10

then retrain the exported ``arch.json`` with :mod:`nni_base.cli.retrain`. Every step takes ``--seed``.

Meta-training scales out as any Lightning run does: ``--devices 4 --strategy ddp`` on one machine, and
``--num-nodes N`` under ``torchrun`` or SLURM (Lightning reads their environment); each meta-step's tasks are
split among the processes and the outer step is averaged over all of them (``nni_base.search.distributed``).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import warnings
from datetime import timedelta
from pathlib import Path
from typing import Any

import nni
import torch
from nni.nas.evaluator.pytorch import Classification
from nni.nas.experiment import NasExperiment
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger
from pytorch_lightning.strategies import DDPStrategy, Strategy
from torch.utils.data import DataLoader

from ..config_groups import MetaTrainingConfig
from ..data import load_cifar10, load_downsampled_imagenet, load_image_folder, load_svhn
from ..evaluator import EpisodicClassification
from ..io import UnusablePathError, check_output_dir, write_json, write_text
from ..space.genotype import format_genotype, sample_to_genotype
from ..space.multires import MultiResolutionDartsSpace
from ..strategy import BaseStrategy
from ..tasks import TaskDistribution
from ..tasks.mixture import ResolutionMixture

__all__ = ['meta_train', 'adapt', 'main']


def _loggers(out: Path, name: str) -> list:
    return [TensorBoardLogger(out / 'logs', name=f'{name}_tensorboard'), CSVLogger(out / 'logs', name=f'{name}_csv')]


def _run(space, evaluator, strategy) -> NasExperiment:
    exp = NasExperiment(space, evaluator, strategy)
    try:
        exp.run()
    finally:
        exp.stop()
    return exp


def lightning_strategy(name: str, timeout_s: float | None) -> str | Strategy:
    """The Trainer's ``strategy``: the name as given, or ``DDPStrategy(timeout=...)`` when a timeout is set.

    The timeout bounds how long a rank waits in a collective for a peer that died or hangs (torch's default
    is 30 minutes on CPU / gloo, 10 on NCCL).
    """
    if timeout_s is None:
        return name
    if name not in ('ddp', 'auto'):
        raise SystemExit(f'error: --process-group-timeout needs --strategy ddp, got --strategy {name}')
    return DDPStrategy(timeout=timedelta(seconds=timeout_s))


def distributed_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """``accelerator``, ``devices``, ``num_nodes`` and ``strategy`` for the Trainer, from the command line."""
    devices: int | str = args.devices if args.devices == 'auto' else int(args.devices)
    return dict(
        accelerator=args.accelerator,
        devices=devices,
        num_nodes=args.num_nodes,
        strategy=lightning_strategy(args.strategy, args.process_group_timeout),
    )


def meta_train(args: argparse.Namespace) -> dict[str, Any]:
    """Meta-train a multi-resolution prior; writes ``prior.pt``, ``space.json``, ``summary.json`` and logs."""
    sources = []
    if args.imagenet32:
        sources.append((32, load_downsampled_imagenet(args.imagenet32, 32, max_classes=args.max_classes)))
    if args.imagenet64:
        sources.append((64, load_downsampled_imagenet(args.imagenet64, 64, max_classes=args.max_classes)))
    if args.imagenet224:
        sources.append((224, load_image_folder(args.imagenet224, image_size=224)))
    if not sources:
        raise SystemExit('error: give at least one of --imagenet32, --imagenet64, --imagenet224')
    tasks = ResolutionMixture(
        [TaskDistribution(data, args.ways, args.shots, args.queries, name=f'imagenet{size}') for size, data in sources]
    )
    space_config = {
        'width': args.width,
        'num_cells': args.num_cells,
        'num_classes': args.ways,
        'resolutions': [size for size, _ in sources],
    }
    out = args.output_dir
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / 'space.json', space_config)
    evaluator = EpisodicClassification(
        tasks,
        None,
        tasks_per_step=args.tasks_per_size * tasks.num_resolutions,
        steps_per_epoch=args.steps_per_epoch,
        seed=args.seed,
        max_epochs=args.epochs,
        logger=_loggers(out, 'meta'),
        **distributed_kwargs(args),
        enable_checkpointing=False,
        enable_progress_bar=not args.no_progress_bar,
        log_every_n_steps=1,
    )
    strategy = BaseStrategy(inner_steps=args.inner_steps, save_prior_to=out / 'prior.pt', seed=args.seed)
    start = time.time()
    _run(MultiResolutionDartsSpace(**space_config), evaluator, strategy)
    trainer = strategy.oneshot_module.trainer
    summary = {
        'prior': str(out / 'prior.pt'),
        'tasks': tasks.name,
        'tasks_per_step': evaluator.tasks_per_step,
        'meta_steps': args.epochs * args.steps_per_epoch,
        'seconds': round(time.time() - start, 1),
        'processes': trainer.world_size,
        **{k: float(v) for k, v in strategy.oneshot_module.last_metrics.items()},
    }
    if trainer.is_global_zero:  # every rank holds the same prior; rank 0 wrote it (PriorCheckpoint)
        write_json(out / 'summary.json', summary)
    return summary


def _space_from_prior(
    prior: Path, space_json: Path | None, num_classes: int | None = None
) -> MultiResolutionDartsSpace:
    """The space meta-training wrote beside the prior, with ``num_classes`` outputs (the head is rebuilt)."""
    path = space_json or prior.parent / 'space.json'
    if not path.is_file():
        raise FileNotFoundError(
            f'{path} not found: meta-train writes space.json beside prior.pt; pass --space-json if you moved the prior'
        )
    config = json.loads(path.read_text())
    return MultiResolutionDartsSpace(**{**config, **({'num_classes': num_classes} if num_classes else {})})


def _imagenet_adaptation(args: argparse.Namespace, trainer_kwargs: dict[str, Any]) -> tuple[Any, Any, BaseStrategy]:
    """Paper §5.2: adapt the prior to several ImageNet tasks of its class count, export the mean of their alpha."""
    space = _space_from_prior(args.prior, args.space_json)
    tasks = TaskDistribution(
        load_image_folder(Path(args.data_root).expanduser() / 'train', image_size=224),
        space.num_classes,
        args.shots,
        args.queries,
        name='imagenet224',
    )
    evaluator = EpisodicClassification(
        tasks,
        tasks,
        tasks_per_step=1,
        steps_per_epoch=1,
        val_episodes=1,
        seed=args.seed,
        **{**trainer_kwargs, 'max_epochs': 0},
    )
    strategy = BaseStrategy(
        prior=args.prior,
        seed=args.seed,
        meta_training=MetaTrainingConfig(adapt_steps=args.adapt_steps, average_alpha_tasks=args.average_alpha_tasks),
    )
    return space, evaluator, strategy


def _dataset_adaptation(args: argparse.Namespace, trainer_kwargs: dict[str, Any]) -> tuple[Any, Any, BaseStrategy]:
    """CIFAR-10 or SVHN through NNI's ``Classification``, in the prior's space with the dataset's class count."""
    root = Path(args.data_root).expanduser()
    if args.dataset == 'cifar10':
        train, val = load_cifar10(root, True), load_cifar10(root, False)
    else:
        train, val = load_svhn(root, 'train'), load_svhn(root, 'test')
    evaluator = Classification(
        learning_rate=args.learning_rate,
        optimizer=torch.optim.SGD,
        num_classes=train.num_classes,
        train_dataloaders=nni.trace(DataLoader)(train, batch_size=args.batch_size, shuffle=True),
        val_dataloaders=nni.trace(DataLoader)(val, batch_size=256),
        **trainer_kwargs,
    )
    strategy = BaseStrategy(prior=args.prior, arc_learning_rate=args.arc_learning_rate, seed=args.seed)
    return _space_from_prior(args.prior, args.space_json, train.num_classes), evaluator, strategy


def adapt(args: argparse.Namespace) -> dict[str, Any]:
    """Adapt a prior to CIFAR-10, SVHN or ImageNet and export the cells (``arch.json``, ``probs.json``)."""
    _space_from_prior(args.prior, args.space_json)  # a missing space.json is refused before any data is read
    out = args.output_dir
    out.mkdir(parents=True, exist_ok=True)
    trainer_kwargs = dict(
        max_epochs=args.epochs,
        accelerator=args.accelerator,
        logger=_loggers(out, 'adapt'),
        enable_checkpointing=False,
        enable_progress_bar=not args.no_progress_bar,
        limit_train_batches=args.limit_train_batches,
        log_every_n_steps=1,
    )
    setup = _imagenet_adaptation if args.dataset == 'imagenet' else _dataset_adaptation
    space, evaluator, strategy = setup(args, trainer_kwargs)
    start = time.time()
    _run(space, evaluator, strategy)
    sample = strategy.export_sample()
    write_json(out / 'arch.json', sample)
    write_json(out / 'probs.json', strategy.export_probs())
    write_text(out / 'genotype.txt', format_genotype(sample_to_genotype(sample)) + '\n')
    metrics = strategy.oneshot_module.trainer.callback_metrics
    summary = {
        'dataset': args.dataset,
        'seconds': round(time.time() - start, 1),
        'arch': str(out / 'arch.json'),
        'val_acc': float(metrics['val_acc']) if 'val_acc' in metrics else None,
        'alpha_averaged_over_tasks': len(strategy.oneshot_module.averaged_alpha or {})
        and strategy.config.average_alpha_tasks,
    }
    write_json(out / 'summary.json', summary)
    return summary


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog='python -m nni_base.cli.recipes', description=__doc__.split('\n')[0])
    sub = p.add_subparsers(dest='command', required=True)
    m = sub.add_parser('meta-train', help='meta-train a multi-resolution prior on ImageNet tasks')
    m.add_argument('--imagenet32', type=Path, help='Imagenet32x32 training batches (train_data_batch_*)')
    m.add_argument('--imagenet64', type=Path, help='Imagenet64x64 training batches')
    m.add_argument('--imagenet224', type=Path, help='ImageNet image folder, one sub-folder per class')
    m.add_argument('--max-classes', type=int, help='keep only the first classes of Imagenet32/64 (memory)')
    m.add_argument('--ways', type=int, default=10)
    m.add_argument('--shots', type=int, default=5)
    m.add_argument('--queries', type=int, default=5)
    m.add_argument('--width', type=int, default=16)
    m.add_argument('--num-cells', type=int, default=8)
    m.add_argument('--tasks-per-size', type=int, default=1, help='tasks of each size per meta-step')
    m.add_argument('--steps-per-epoch', type=int, default=8, help="8 with 1 task per size: the paper's 8 of each")
    m.add_argument('--epochs', type=int, default=130)
    m.add_argument('--inner-steps', type=int, default=5)
    m.add_argument('--devices', default='auto', help="Lightning's devices: a count, or 'auto' (default)")
    m.add_argument('--num-nodes', type=int, default=1, help='machines (torchrun / SLURM set the ranks)')
    m.add_argument(
        '--strategy',
        default='auto',
        help="Lightning's strategy: 'ddp' splits every meta-step's tasks among the processes",
    )
    m.add_argument(
        '--process-group-timeout',
        type=float,
        default=None,
        help="seconds a rank waits for the others before the run fails (DDP; default: torch's)",
    )
    a = sub.add_parser('adapt', help='adapt a prior to a dataset and export the cells')
    a.add_argument('--prior', type=Path, required=True)
    a.add_argument('--space-json', type=Path, help='default: space.json beside the prior')
    a.add_argument('--dataset', choices=('cifar10', 'svhn', 'imagenet'), required=True)
    a.add_argument('--data-root', required=True, help='CIFAR/SVHN files, or the ImageNet folder holding train/')
    a.add_argument('--epochs', type=int, default=1)
    a.add_argument('--batch-size', type=int, default=64)
    a.add_argument('--learning-rate', type=float, default=0.025)
    a.add_argument(
        '--arc-learning-rate', type=float, default=None, help="Adam's step on alpha (default: BaseStrategy's, 0.3)"
    )
    a.add_argument('--limit-train-batches', type=float, default=None)
    a.add_argument('--average-alpha-tasks', type=int, default=8, help='ImageNet: tasks whose alpha is averaged')
    a.add_argument('--adapt-steps', type=int, default=20, help='ImageNet: inner steps per task')
    a.add_argument('--shots', type=int, default=5)
    a.add_argument('--queries', type=int, default=5)
    for q in (m, a):
        q.add_argument('--output-dir', type=Path, required=True)
        q.add_argument('--seed', type=int, default=0)
        q.add_argument('--accelerator', default='auto')
        q.add_argument('--no-progress-bar', action='store_true')
    args = p.parse_args(argv)
    files = {'meta-train': ('space.json', 'prior.pt', 'summary.json')}.get(
        args.command, ('arch.json', 'probs.json', 'genotype.txt', 'summary.json')
    )
    try:  # before any data is read or trained on
        check_output_dir(args.output_dir, '--output-dir', files=files, folders=('logs',))
    except UnusablePathError as e:
        raise SystemExit(f'{p.prog}: error: {e}') from None
    if getattr(args, 'limit_train_batches', None) is not None and args.limit_train_batches >= 1:
        args.limit_train_batches = int(args.limit_train_batches)
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    logging.getLogger('nni').setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', message='.*does not have many workers.*')
        result = meta_train(args) if args.command == 'meta-train' else adapt(args)
    print(json.dumps(result, indent=2))
    if args.command == 'adapt':
        recipe = {'imagenet': 'imagenet', 'svhn': 'svhn'}.get(args.dataset, 'cifar10')
        print(
            f'Retrain: python -m nni_base.cli.retrain --recipe {recipe} --arch {result["arch"]} '
            f'--data-root {args.data_root} --output-dir runs/retrain-{args.dataset}'
        )
    return result


if __name__ == '__main__':
    main()
