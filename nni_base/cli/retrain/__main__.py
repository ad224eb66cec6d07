"""``python -m nni_base.cli.retrain``: the command line of retraining (see the package docstring)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ...io import UnusablePathError, check_output_dir
from .network import build_network, load_arch, model_summary
from .recipe import load_recipe
from .run import retrain

__all__ = ['main', 'parse_args']


_DESCRIPTION = 'Retrain an exported architecture from scratch at full size (BASE Appendix A, the DARTS protocol).'
#: What a retraining run writes into --output-dir (besides checkpoints/ and logs/).
OUTPUT_FILES = ('arch.json', 'run.json', 'model_summary.json', 'model.pt', 'final.json')
_NUM_CLASSES = {'cifar10': 10, 'cifar100': 100, 'svhn': 10, 'imagenet': 1000}  # for --summary-only (no data)


def _limit(text: str) -> int | float:
    value = float(text)
    return int(value) if value.is_integer() and value >= 1 else value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog='python -m nni_base.cli.retrain', description=_DESCRIPTION)
    p.add_argument('--recipe', help='shipped recipe name (cifar10, svhn, imagenet) or a .json/.yaml file')
    p.add_argument('--arch', help="arch.json of a BASE run (an NNI DARTS sample), a genotype file, or 'darts-v2'")
    p.add_argument('--data-root', help='folder with the dataset files (never downloaded)')
    p.add_argument('--output-dir', type=Path)
    p.add_argument(
        '--summary-only',
        action='store_true',
        help='print parameters and MACs of the recipe network for --arch, train nothing',
    )
    p.add_argument('--resume', action='store_true', help='continue OUTPUT_DIR/checkpoints/last.ckpt')
    p.add_argument('--seed', type=int, help='default 0 (a resumed run keeps its own)')
    g = p.add_argument_group('recipe overrides (e.g. for a tiny smoke run)')
    for flag, kind in (
        ('epochs', int),
        ('width', int),
        ('num-cells', int),
        ('batch-size', int),
        ('eval-batch-size', int),
        ('learning-rate', float),
        ('drop-path-prob', float),
        ('aux-weight', float),
        ('cutout-length', int),
    ):
        g.add_argument(f'--{flag}', type=kind)
    t = p.add_argument_group('trainer')
    t.add_argument('--accelerator', default='auto', help='Lightning accelerator: auto, cpu, gpu, ...')
    t.add_argument('--devices', default='auto', help='Lightning devices: auto, a count, or a list like 0,1')
    t.add_argument('--num-workers', type=int, default=4)
    t.add_argument('--precision', help='Lightning precision, e.g. bf16-mixed (default: full 32-bit)')
    t.add_argument('--stop-after-epochs', type=int, help='stop early (keeping the full schedule); resume later')
    t.add_argument('--limit-train-batches', type=_limit, help='batches per epoch (int) or fraction (float)')
    t.add_argument('--limit-val-batches', type=_limit)
    t.add_argument('--no-progress-bar', action='store_true')
    args = p.parse_args(argv)
    if not args.resume and (args.recipe is None or args.arch is None):
        p.error("--recipe and --arch are required (except with --resume, which reuses the run's)")
    if not args.summary_only and (args.data_root is None or args.output_dir is None):
        p.error('--data-root and --output-dir are required to train (or pass --summary-only)')
    if args.output_dir is not None and not args.summary_only:
        try:  # before any data is read or trained on
            check_output_dir(args.output_dir, '--output-dir', files=OUTPUT_FILES, folders=('checkpoints', 'logs'))
        except UnusablePathError as e:
            raise SystemExit(f'{p.prog}: error: {e}') from None
    return args


def _devices(text: str) -> int | str | list[int]:
    if text.isdigit():
        return int(text)
    if ',' in text:
        return [int(d) for d in text.split(',') if d]
    return text


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    overrides = {
        'epochs': args.epochs,
        'width': args.width,
        'num_cells': args.num_cells,
        'batch_size': args.batch_size,
        'eval_batch_size': args.eval_batch_size,
        'learning_rate': args.learning_rate,
        'drop_path_prob': args.drop_path_prob,
        'aux_weight': args.aux_weight,
        'cutout_length': args.cutout_length,
    }
    if args.recipe is None and any(v is not None for v in overrides.values()):
        raise SystemExit('error: recipe overrides need --recipe (a resumed run keeps its recipe unchanged)')
    recipe = load_recipe(args.recipe).override(**overrides) if args.recipe is not None else None
    if args.summary_only:
        sample = load_arch(args.arch)
        summary = model_summary(build_network(sample, recipe, _NUM_CLASSES[recipe.dataset]), recipe, sample)
        print(json.dumps(summary, indent=2))
        return summary
    result = retrain(
        args.arch,
        recipe,
        args.data_root,
        args.output_dir,
        seed=args.seed,
        resume=args.resume,
        stop_after_epochs=args.stop_after_epochs,
        accelerator=args.accelerator,
        devices=_devices(args.devices),
        num_workers=args.num_workers,
        limit_train_batches=args.limit_train_batches,
        limit_val_batches=args.limit_val_batches,
        precision=args.precision,
        enable_progress_bar=not args.no_progress_bar,
    )
    summary = json.loads((args.output_dir / 'model_summary.json').read_text())
    print(
        f'params {summary["params"]:,}, MACs {summary["macs"]:,}; '
        f'epochs {result["epochs_completed"]}/{result["epochs_planned"]}, val_acc {result["val_acc"]}, '
        f'best {result["best_val_acc"]}; results in {args.output_dir}'
    )
    return result


if __name__ == '__main__':
    main()
