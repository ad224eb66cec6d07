"""Build (or resume) the ground-truth architecture database, and summarise one.

    python -m nni_base.cli.database                       # build the shipped v2 database (resumes where it stopped)
    python -m nni_base.cli.database --version 1           # the v1 database's spec and file
    python -m nni_base.cli.database --output my_db.json --families peaks layout --architectures 50 --workers 2
    python -m nni_base.cli.database --summary             # what the shipped database says, per family

Every (task, architecture, seed) is one from-scratch training of a small DARTS network; the database's spec
(:class:`~nni_base.database.ground_truth.DatabaseSpec`) records how. ``--workers`` processes of one torch thread
each use
the machine best; the build prints its CPU time at the end and stores it in the file.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import stats

from ..database.build import build_database
from ..database.ground_truth import DATABASE_FILES, DATABASE_SPECS, ArchitectureDatabase, DatabaseSpec, load_database
from ..io import UnusablePathError, check_file_target
from ..tasks.metrics import mean_ci

#: The spec fields the command line can set (``--train-tasks`` sets ``train_tasks``); unset ones come from the
#: ``--version``'s spec.
SPEC_FLAGS = ('families', 'train_tasks', 'test_tasks', 'architectures', 'seeds', 'steps', 'queries')


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog='python -m nni_base.cli.database', description=__doc__.split('\n')[0])
    p.add_argument(
        '--version',
        type=int,
        choices=sorted(DATABASE_SPECS),
        default=max(DATABASE_SPECS),
        help='the shipped database whose spec and file are the defaults (default: the newest)',
    )
    p.add_argument('--output', type=Path, default=None, help="the database file (default: the version's shipped one)")
    p.add_argument('--summary', action='store_true', help='summarise --output instead of building it')
    p.add_argument('--families', nargs='+', default=None)
    p.add_argument('--train-tasks', type=int, default=None, help='tasks per family, meta-train classes')
    p.add_argument('--test-tasks', type=int, default=None, help='tasks per family, held-out classes')
    p.add_argument('--architectures', type=int, default=None)
    p.add_argument('--seeds', type=int, nargs='+', default=None, help='training seeds per pair')
    p.add_argument('--steps', type=int, default=None, help='Adam steps per training')
    p.add_argument('--queries', type=int, default=None, help='query images per class of every task')
    p.add_argument('--workers', type=int, default=os.cpu_count() or 1, help='processes (default: one per core)')
    p.add_argument('--threads-per-worker', type=int, default=1)
    p.add_argument('--max-trainings', type=int, default=None, help='stop after this many new trainings')
    p.add_argument('--quiet', action='store_true', help='no progress bar')
    return p.parse_args(argv)


def seed_repeatability(db: ArchitectureDatabase, task: int) -> tuple[float, float] | None:
    """How well task ``task``'s labels repeat: the mean Spearman between two seeds' accuracies over the
    architectures (pairs of seeds averaged), and the Spearman-Brown reliability of the mean over all seeds (what
    the ground truth uses). None with fewer than two seeds measured on every architecture."""
    seeds = [s for s in range(db.accuracy.shape[2]) if np.isfinite(db.accuracy[task, :, s]).all()]
    if len(seeds) < 2:
        return None
    rhos = [
        stats.spearmanr(db.accuracy[task, :, a], db.accuracy[task, :, b]).statistic
        for i, a in enumerate(seeds)
        for b in seeds[i + 1 :]
    ]
    rho, k = float(np.nanmean(rhos)), len(seeds)
    return rho, k * rho / (1 + (k - 1) * rho) if rho > -1 / (k - 1) else float('nan')


def summarise(db: ArchitectureDatabase) -> list[str]:
    """Per family: the spread of seed-averaged accuracies (best and median architecture), the labels'
    repeatability (seed-to-seed Spearman and the reliability of the seed mean), and the operation whose count
    correlates most with accuracy per cell type."""
    lines = [
        f'{len(db.tasks)} tasks x {len(db.architectures)} architectures x {len(db.spec.seeds)} seeds, '
        f'{int(np.isfinite(db.accuracy).sum())}/{db.accuracy.size} measured, '
        f'{db.meta.get("cpu_seconds", 0.0) / 3600:.2f} CPU hours'
    ]
    mean = db.mean_accuracy()
    warnings.filterwarnings('ignore', 'All-NaN slice', RuntimeWarning)  # an unfinished build's empty tasks
    warnings.filterwarnings('ignore', 'Mean of empty slice', RuntimeWarning)
    for family in db.spec.families:
        rows = db.task_indices(family)
        if not np.isfinite(mean[rows]).any():
            lines.append(f'{family}: nothing measured yet')
            continue
        repeat = [r for r in (seed_repeatability(db, t) for t in rows) if r is not None]
        best = np.nanmax(mean[rows], 1)
        median = np.nanmedian(mean[rows], 1)
        line = f'{family}: best {np.nanmean(best):.3f}, median {np.nanmean(median):.3f}'
        if repeat:
            m, ci = mean_ci([r[0] for r in repeat])
            line += f', seed-to-seed Spearman {m:.2f}±{ci:.2f} (seed mean {np.nanmean([r[1] for r in repeat]):.2f})'
        for label, (op, rho) in operation_winners(db, rows).items():
            line += f'; {label}: {op} (Spearman {rho:+.2f})'
        lines.append(line)
    return lines


def operation_winners(db: ArchitectureDatabase, tasks: Sequence[int]) -> dict[str, tuple[str, float]]:
    """Per cell type, the operation whose count in the cell correlates most with the seed-averaged accuracy
    (Spearman, averaged over ``tasks``): the family's measured winner."""
    mean = db.mean_accuracy()
    out = {}
    for label in ('normal', 'reduce'):
        best = ('', -2.0)
        for op in db.spec.ops:
            counts = [sum(v == op for k, v in s.items() if k.startswith(f'{label}/op_')) for s in db.architectures]
            rhos = [stats.spearmanr(counts, mean[t], nan_policy='omit').statistic for t in tasks]
            rho = float(np.nanmean(rhos)) if np.isfinite(rhos).any() else float('nan')
            if rho > best[1]:
                best = (op, rho)
        out[label] = best
    return out


def spec_from_args(args: argparse.Namespace) -> DatabaseSpec:
    """The ``--version``'s spec with the fields the command line set."""
    chosen = {name: getattr(args, name) for name in SPEC_FLAGS if getattr(args, name) is not None}
    chosen = {k: tuple(v) if isinstance(v, list) else v for k, v in chosen.items()}
    return dataclasses.replace(DATABASE_SPECS[args.version], **chosen)


def main(argv: Sequence[str] | None = None) -> ArchitectureDatabase:
    args = parse_args(argv)
    if args.output is None:
        args.output = DATABASE_FILES[args.version]
    if args.summary:
        db = load_database(args.output)
    else:
        try:  # before the first training, not when the database is written
            check_file_target(args.output, 'database (--output)', suggest='database.json')
        except UnusablePathError as e:
            raise SystemExit(f'python -m nni_base.cli.database: error: {e}') from None
        spec = spec_from_args(args)
        db = build_database(
            spec,
            args.output,
            workers=args.workers,
            threads_per_worker=args.threads_per_worker,
            max_trainings=args.max_trainings,
            progress=not args.quiet,
        )
        print(f'wrote {args.output}')
    for line in summarise(db):
        print(line)
    return db


if __name__ == '__main__':
    main()
