"""Build (or resume) the ground-truth architecture database, and summarise one.

    python -m nni_base.cli.database                       # rebuild the shipped database (resumes where it stopped)
    python -m nni_base.cli.database --output my_db.json --families peaks layout --architectures 50 --workers 2
    python -m nni_base.cli.database --summary             # what the shipped database says, per family

Every (task, architecture, seed) is one from-scratch training of a small DARTS network; the database's spec
(:class:`~nni_base.search.database.DatabaseSpec`) records how. ``--workers`` processes of one torch thread each use
the machine best; the build prints its CPU time at the end and stores it in the file.
"""

from __future__ import annotations

import argparse
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import stats

from ..search.database import DEFAULT_DATABASE, ArchitectureDatabase, DatabaseSpec, load_database
from ..search.database_build import build_database
from ..tasks.metrics import mean_ci

DEFAULTS = DatabaseSpec()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog='python -m nni_base.cli.database', description=__doc__.split('\n')[0])
    p.add_argument('--output', type=Path, default=DEFAULT_DATABASE, help='the database file (default: the shipped one)')
    p.add_argument('--summary', action='store_true', help='summarise --output instead of building it')
    p.add_argument('--families', nargs='+', default=list(DEFAULTS.families))
    p.add_argument('--train-tasks', type=int, default=DEFAULTS.train_tasks, help='tasks per family, meta-train classes')
    p.add_argument('--test-tasks', type=int, default=DEFAULTS.test_tasks, help='tasks per family, held-out classes')
    p.add_argument('--architectures', type=int, default=DEFAULTS.architectures)
    p.add_argument('--seeds', type=int, nargs='+', default=list(DEFAULTS.seeds), help='training seeds per pair')
    p.add_argument('--steps', type=int, default=DEFAULTS.steps, help='Adam steps per training')
    p.add_argument('--workers', type=int, default=os.cpu_count() or 1, help='processes (default: one per core)')
    p.add_argument('--threads-per-worker', type=int, default=1)
    p.add_argument('--max-trainings', type=int, default=None, help='stop after this many new trainings')
    p.add_argument('--quiet', action='store_true', help='no progress bar')
    return p.parse_args(argv)


def summarise(db: ArchitectureDatabase) -> list[str]:
    """Per family: measured share, the labels' repeatability (Spearman between two seeds), the spread of
    seed-averaged accuracies, and the operation whose count correlates most with accuracy per cell type."""
    lines = [
        f'{len(db.tasks)} tasks x {len(db.architectures)} architectures x {len(db.spec.seeds)} seeds, '
        f'{int(np.isfinite(db.accuracy).sum())}/{db.accuracy.size} measured, '
        f'{db.meta.get("cpu_seconds", 0.0) / 3600:.2f} CPU hours'
    ]
    mean = db.mean_accuracy()
    warnings.filterwarnings('ignore', 'All-NaN slice', RuntimeWarning)  # an unfinished build's empty tasks
    for family in db.spec.families:
        rows = db.task_indices(family)
        repeat = [
            stats.spearmanr(db.accuracy[t, :, 0], db.accuracy[t, :, 1], nan_policy='omit').statistic
            for t in rows
            if db.accuracy.shape[2] > 1 and np.isfinite(db.accuracy[t, :, :2]).all()
        ]
        best = np.nanmax(mean[rows], 1)
        median = np.nanmedian(mean[rows], 1)
        line = f'{family}: best {np.mean(best):.3f}, median {np.mean(median):.3f}'
        if repeat:
            m, ci = mean_ci(repeat)
            line += f', seed-to-seed Spearman {m:.2f}±{ci:.2f}'
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


def main(argv: Sequence[str] | None = None) -> ArchitectureDatabase:
    args = parse_args(argv)
    if args.summary:
        db = load_database(args.output)
    else:
        spec = DatabaseSpec(
            families=tuple(args.families),
            train_tasks=args.train_tasks,
            test_tasks=args.test_tasks,
            architectures=args.architectures,
            seeds=tuple(args.seeds),
            steps=args.steps,
        )
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
