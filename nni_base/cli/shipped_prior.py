"""Build (or describe) a prior that ships with nni-base: ``python -m nni_base.cli.shipped_prior``.

Meta-trains BASE at the library's defaults through ``NasExperiment`` + ``EpisodicClassification`` on the meta-train
classes of the ground-truth database's families (v2: seven, procedural and photographs; no download), in the
database's space, and writes the prior with its provenance inside (``prior['meta']['provenance']``: the command,
seed, meta-steps, families, seconds, threads and machine)::

    python -m nni_base.cli.shipped_prior --name default              # into nni_base/resources/priors/default.pt
    python -m nni_base.cli.shipped_prior --leave-out scenes --output /tmp/lofo_scenes.pt --meta-steps 100
    python -m nni_base.cli.shipped_prior --describe                  # what the shipped prior is and how it was made

:func:`meta_train_on_families` is the same run as a function (the benchmarks' leave-one-family-out priors use it).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from nni.nas.experiment import NasExperiment

from ..callbacks import torch_threads
from ..database.spec import DATABASE_SPECS, DatabaseSpec
from ..evaluator import EpisodicClassification
from ..io import write_atomic, write_text
from ..prior import SHIPPED_PRIORS, load_prior, save_prior, shipped_prior_path
from ..strategy import BaseStrategy
from ..tasks import TaskDistribution
from ..tasks.mixture import ResolutionMixture

__all__ = ['meta_train_on_families', 'provenance_of', 'provenance_card', 'card_path', 'main']

#: Episodes of meta-training: 5-way 5-shot tasks with 5 query images per class (the database's ways).
SHOTS, QUERIES = 5, 5
#: Meta-steps per epoch: an epoch is when the prior is written (a killed build keeps the last epoch's prior).
STEPS_PER_EPOCH = 10


def meta_train_on_families(
    output: str | os.PathLike,
    *,
    spec: DatabaseSpec | None = None,
    families: Sequence[str] | None = None,
    meta_steps: int = 300,
    tasks_per_step: int | None = None,
    seed: int = 0,
    snapshots: dict[int, str | os.PathLike] | None = None,
) -> float:
    """Meta-train a prior on the meta-train classes of ``families`` (default: all of ``spec``'s, the v2 database's)
    and write it to ``output``; returns the seconds meta-training took.

    ``tasks_per_step`` (default: one task of each family per meta-step) must be a multiple of the number of
    families, so that every meta-step is balanced. ``meta_steps`` is rounded up to whole epochs of
    :data:`STEPS_PER_EPOCH`; ``snapshots`` maps a meta-step count (a multiple of it) to a file the prior is also
    written to when meta-training has taken that many steps (one run gives the priors of a budget curve).
    """
    spec = spec if spec is not None else DATABASE_SPECS[2]
    families = list(families if families is not None else spec.families)
    unknown = sorted(set(families) - set(spec.families))
    if unknown or not families:
        raise ValueError(f'families must be some of {list(spec.families)}, got {families}.')
    tasks_per_step = len(families) if tasks_per_step is None else tasks_per_step
    if meta_steps < 1 or tasks_per_step < 1:
        raise ValueError(f'meta_steps and tasks_per_step must be >= 1, got {meta_steps} and {tasks_per_step}.')
    tasks = ResolutionMixture(
        [TaskDistribution(spec.family_splits(f)['train'], spec.ways, SHOTS, QUERIES, name=f) for f in families]
    )
    evaluator = EpisodicClassification(
        tasks,
        None,
        tasks_per_step=tasks_per_step,
        steps_per_epoch=STEPS_PER_EPOCH,
        max_epochs=-(-meta_steps // STEPS_PER_EPOCH),
        seed=seed,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        callbacks=[_Snapshots(Path(output), dict(snapshots))] if snapshots else None,
    )
    strategy = BaseStrategy(save_prior_to=output, seed=seed)
    start = time.perf_counter()
    experiment = NasExperiment(spec.space(), evaluator, strategy)
    try:
        with warnings.catch_warnings():
            # no validation tasks, on purpose (every family's held-out classes stay unseen): Lightning notes it
            warnings.filterwarnings('ignore', message='Total length of .* across ranks is zero')
            experiment.run()
    finally:
        experiment.stop()
    return time.perf_counter() - start


class _Snapshots(pl.Callback):
    """Copies the prior file meta-training keeps writing (after every epoch) to ``files[n]`` once it holds the prior
    of ``n`` meta-steps: at the start of the next epoch, or at the end of training for the last one."""

    def __init__(self, prior_file: Path, files: dict[int, str | os.PathLike]):
        uneven = [n for n in files if n % STEPS_PER_EPOCH]
        if uneven:
            raise ValueError(f'snapshot steps must be multiples of {STEPS_PER_EPOCH}, got {uneven}.')
        self.prior_file, self.files = prior_file, files

    def _copy(self, epochs_done: int) -> None:
        target = self.files.get(epochs_done * STEPS_PER_EPOCH)
        if target is not None:
            write_atomic(target, lambda tmp: shutil.copyfile(self.prior_file, tmp))

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._copy(trainer.current_epoch)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._copy(trainer.current_epoch)


def provenance_of(prior: str | os.PathLike) -> dict[str, Any]:
    """How ``prior`` (a path or a shipped prior's name) was made; empty for a prior built another way."""
    return dict(load_prior(prior).get('meta', {}).get('provenance', {}))


def card_path(prior_file: str | os.PathLike) -> Path:
    """The Markdown card written beside a prior built here (the docs include the shipped one's)."""
    return Path(prior_file).with_suffix('.md')


def provenance_card(provenance: dict[str, Any]) -> str:
    """The provenance as a Markdown table, generated from the prior file only (never typed by hand)."""
    rows = [
        ('families', ', '.join(provenance['families'])),
        ('episodes', provenance['episodes']),
        ('meta-steps', f'{provenance["meta_steps"]} ({provenance["tasks_per_step"]} tasks each)'),
        ('seed', provenance['seed']),
        ('meta-training time', f'{provenance["seconds"]} s on {provenance["threads"]} thread(s)'),
        ('machine', provenance['machine']),
        ('built', provenance['date']),
        ('command', f'`{provenance["command"]}`'),
    ]
    return '| | |\n|---|---|\n' + ''.join(f'| {name} | {value} |\n' for name, value in rows)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog='python -m nni_base.cli.shipped_prior', description=__doc__.split('\n')[0])
    p.add_argument('--name', default='default', choices=sorted(SHIPPED_PRIORS), help='which shipped prior')
    p.add_argument('--output', type=Path, default=None, help="default: the shipped prior's file in the package")
    p.add_argument('--leave-out', nargs='+', default=[], help='families kept out of meta-training (LOFO priors)')
    p.add_argument('--meta-steps', type=int, default=300, help='meta-steps (rounded up to epochs of 10)')
    p.add_argument('--tasks-per-step', type=int, default=None, help='default: one task of each family')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--threads', type=int, default=1, help='torch threads (one is fastest at these sizes)')
    p.add_argument('--describe', action='store_true', help="print the prior's provenance and exit")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command-line entry point; returns the provenance written (or read, with ``--describe``)."""
    args = _parse_args(argv)
    output = args.output if args.output is not None else shipped_prior_path(args.name)
    if args.describe:
        described = provenance_of(output if args.output is not None else args.name)
        print(json.dumps(described, indent=2, sort_keys=True))
        return described
    spec = DATABASE_SPECS[2]
    families = [f for f in spec.families if f not in args.leave_out]
    # Built beside the target and renamed over it by save_prior: a killed build never leaves half a shipped prior.
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=output.parent) as work, torch_threads(args.threads):
        staged = Path(work) / 'prior.pt'
        seconds = meta_train_on_families(
            staged, spec=spec, families=families, meta_steps=args.meta_steps, tasks_per_step=args.tasks_per_step,
            seed=args.seed,
        )  # fmt: skip
        prior = load_prior(staged)
    provenance = {
        'command': shlex.join(
            ['python', '-m', 'nni_base.cli.shipped_prior', *(argv if argv is not None else sys.argv[1:])]
        ),
        'database_version': 2,
        'families': families,
        'meta_steps': prior['meta'].get('steps'),
        'tasks_per_step': args.tasks_per_step or len(families),
        'episodes': f'{spec.ways}-way {SHOTS}-shot, {QUERIES} queries per class, {spec.image_size}x{spec.image_size}',
        'seed': args.seed,
        'seconds': round(seconds, 1),
        'threads': args.threads,
        'machine': f'{os.cpu_count()} CPUs, {platform.platform()}, torch {torch.__version__}',
        'date': datetime.date.today().isoformat(),
    }
    prior['meta']['provenance'] = provenance
    save_prior(prior, output)
    write_text(card_path(output), provenance_card(provenance))
    print(json.dumps(provenance, indent=2, sort_keys=True))
    return provenance


if __name__ == '__main__':
    main()
