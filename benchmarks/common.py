"""What the benchmarks share: model spaces, task-family data, meta-training and searches through ``NasExperiment``,
and result files that say which commit, machine and command wrote them.

Every JSON result gets a ``provenance`` entry (:func:`provenance`), every Markdown result ends with a provenance
line and every PNG carries that line in its ``Description`` text chunk.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shlex
import subprocess
import sys
import time
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any

import nni
import torch
from nni.nas.evaluator.pytorch import Classification
from nni.nas.experiment import NasExperiment
from torch.utils.data import DataLoader, Dataset, random_split

from nni_base import BaseStrategy, DartsTaskSpace, EpisodicClassification
from nni_base.cli.retrain.small import retrain_and_test
from nni_base.data import digits_splits
from nni_base.data.families import family_splits
from nni_base.io import write_atomic, write_json, write_text

__all__ = [
    'ROOT',
    'RESULTS',
    'RANDOM_RESULTS',
    'QUIET_TRAINER',
    'quiet',
    'darts_space',
    'space_of',
    'family_data',
    'split_dataset',
    'episodic_evaluator',
    'run_experiment',
    'meta_train',
    'classification_search',
    'retrain',
    'add_size_arguments',
    'settings_of',
    'git_state',
    'machine_info',
    'provenance',
    'provenance_line',
    'write_json_result',
    'write_markdown_result',
    'save_figure',
]

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / 'benchmarks' / 'results'
#: alpha_recovery's runs whose random cells (trained per held-out task) later benchmarks reuse.
RANDOM_RESULTS = [
    RESULTS / 'alpha_recovery_80steps' / 'results.json',
    RESULTS / 'alpha_recovery_80steps_texture' / 'results.json',
]
#: Trainer options that keep a benchmark's output to its own lines and its folder free of checkpoints.
QUIET_TRAINER = {'enable_checkpointing': False, 'enable_progress_bar': False, 'enable_model_summary': False}


def quiet(level: int = logging.ERROR) -> None:
    """Silence warnings, and NNI's and Lightning's loggers below ``level``."""
    warnings.filterwarnings('ignore')
    for name in ('nni', 'pytorch_lightning', 'lightning.pytorch'):
        logging.getLogger(name).setLevel(level)


# ---- spaces and data ----------------------------------------------------------------------------------------------
def darts_space(width: int = 8, num_cells: int = 4, num_classes: int = 5) -> DartsTaskSpace:
    """A fresh DARTS cell space at a benchmark's size (the known-answer families' size by default)."""
    return DartsTaskSpace(width=width, num_cells=num_cells, num_classes=num_classes)


def space_of(args: argparse.Namespace) -> DartsTaskSpace:
    """The space of a command line with ``--width``, ``--num-cells`` and ``--ways``."""
    return darts_space(args.width, args.num_cells, args.ways)


def family_data(name: str, image_size: int = 16, **kwargs: Any) -> dict[str, Dataset]:
    """The meta-train and held-out splits of a known-answer family, or of the digits (``'digits'``)."""
    if name == 'digits':
        return digits_splits(image_size=image_size)
    return family_splits(name, image_size=image_size, **kwargs)


def split_dataset(data: Dataset, seed: int) -> tuple[Dataset, Dataset, Dataset]:
    """Search-train / search-validation / test, 60/20/20."""
    train, val, test = random_split(data, [0.6, 0.2, 0.2], generator=torch.Generator().manual_seed(seed))
    return train, val, test


# ---- experiments --------------------------------------------------------------------------------------------------
def episodic_evaluator(
    train: Any,
    val: Any = None,
    *,
    tasks_per_step: int,
    steps_per_epoch: int,
    max_epochs: int = 1,
    logger: Any = False,
    **kwargs: Any,
) -> EpisodicClassification:
    """BASE's meta-training evaluator without progress bars, summaries or checkpoints."""
    return EpisodicClassification(
        train,
        val,
        tasks_per_step=tasks_per_step,
        steps_per_epoch=steps_per_epoch,
        max_epochs=max_epochs,
        logger=logger,
        **QUIET_TRAINER,
        **kwargs,
    )


def run_experiment(space: Any, evaluator: Any, strategy: Any, *, export: bool = False) -> tuple[float, dict | None]:
    """Run ``NasExperiment``; the seconds its run took and, with ``export``, its top architecture.

    The experiment is stopped here rather than by NNI's exit hook, which logs into streams that may be closed.
    """
    start = time.perf_counter()
    exp = NasExperiment(space, evaluator, strategy)
    try:
        exp.run()
        seconds = time.perf_counter() - start
        sample = exp.export_top_models(formatter='dict')[0] if export else None
    finally:
        exp.stop()
    return seconds, sample


def meta_train(
    space: DartsTaskSpace,
    train: Any,
    prior: Path,
    *,
    tasks_per_step: int,
    steps_per_epoch: int,
    max_epochs: int = 1,
    seed: int = 0,
    val: Any = None,
    evaluator_kwargs: dict | None = None,
    **strategy_kwargs: Any,
) -> tuple[BaseStrategy, float]:
    """Meta-train a prior on the task distribution ``train`` and save it to ``prior``; the strategy and seconds."""
    evaluator = episodic_evaluator(
        train,
        val,
        tasks_per_step=tasks_per_step,
        steps_per_epoch=steps_per_epoch,
        max_epochs=max_epochs,
        seed=seed,
        **(evaluator_kwargs or {}),
    )
    strategy = BaseStrategy(seed=seed, save_prior_to=prior, **strategy_kwargs)
    seconds, _ = run_experiment(space, evaluator, strategy)
    return strategy, seconds


def classification_search(
    space: DartsTaskSpace,
    strategy: Any,
    classes: int,
    train: Dataset,
    val: Dataset,
    *,
    epochs: int,
    seed: int,
    val_batch_size: int,
) -> tuple[dict, float]:
    """Search ``space`` on a labelled dataset through NNI's ``Classification`` (SGD 0.02, batch 32).

    Returns the exported architecture and the search seconds.
    """
    torch.manual_seed(seed)
    evaluator = Classification(
        learning_rate=0.02,
        optimizer=torch.optim.SGD,
        num_classes=classes,
        train_dataloaders=nni.trace(DataLoader)(train, batch_size=32, shuffle=True),
        val_dataloaders=nni.trace(DataLoader)(val, batch_size=val_batch_size),
        max_epochs=epochs,
        logger=False,
        **QUIET_TRAINER,
    )
    seconds, sample = run_experiment(space, evaluator, strategy, export=True)
    return sample, seconds


def retrain(space: DartsTaskSpace, sample: dict, train: Dataset, test: Dataset, *, epochs: int, seed: int = 0) -> float:
    """Test accuracy of ``sample`` retrained from fresh weights (torch seeded with ``seed``) on ``train``."""
    torch.manual_seed(seed)
    return retrain_and_test(space.freeze(sample), train, test, epochs=epochs, seed=seed)


def add_size_arguments(
    parser: argparse.ArgumentParser, *, width: int = 8, num_cells: int = 4, threads: int | None = 2
) -> None:
    """``--width``, ``--num-cells`` and (unless ``threads`` is None) ``--threads``."""
    parser.add_argument('--width', type=int, default=width)
    parser.add_argument('--num-cells', type=int, default=num_cells)
    if threads is not None:
        parser.add_argument('--threads', type=int, default=threads)


def settings_of(args: argparse.Namespace) -> dict[str, Any]:
    """A command line's arguments as JSON values (paths as strings)."""
    return json.loads(json.dumps(vars(args), default=str))


# ---- provenance and result files ----------------------------------------------------------------------------------
def git_state() -> dict[str, Any]:
    """The checkout's ``HEAD`` commit and whether tracked files differ from it (None for both outside git)."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(['git', *args], cwd=ROOT, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git('rev-parse', 'HEAD')
    status = git('status', '--porcelain', '--untracked-files=no') if commit else None
    return {'commit': commit, 'dirty': None if status is None else bool(status)}


def machine_info() -> dict[str, Any]:
    """CPU model and count, torch threads, Python / torch / NNI versions, platform and the load average now."""
    cpu = platform.processor() or 'unknown'
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                cpu = line.split(':', 1)[1].strip()
                break
    except OSError:
        pass
    return {
        'cpu': cpu,
        'cpu_count': os.cpu_count(),
        'torch': torch.__version__,
        'nni': nni.__version__,
        'python': platform.python_version(),
        'threads': torch.get_num_threads(),
        'interop_threads': torch.get_num_interop_threads(),
        'omp_num_threads': os.environ.get('OMP_NUM_THREADS'),
        'platform': platform.platform(),
        'omp_wait_policy': os.environ.get('OMP_WAIT_POLICY'),
        'load_average_at_start': os.getloadavg(),
    }


@lru_cache(maxsize=1)
def _start() -> dict[str, Any]:
    # taken once, at the first result a process writes: the commit and machine the measurement started on
    return {**git_state(), 'command': shlex.join(getattr(sys, 'orig_argv', sys.argv)), 'machine': machine_info()}


def provenance() -> dict[str, Any]:
    """Commit, dirty flag, command line and machine of this process, with torch's thread count at this moment."""
    info = _start()
    return {**info, 'machine': {**info['machine'], 'threads': torch.get_num_threads()}}


def provenance_line() -> str:
    """:func:`provenance` in one sentence, for Markdown and picture metadata."""
    p = provenance()
    m = p['machine']
    commit = 'unknown commit' if p['commit'] is None else f'commit {p["commit"][:12]}{" (dirty)" if p["dirty"] else ""}'
    return (
        f'Written by `{p["command"]}` at {commit} on {m["cpu_count"]} CPUs ({m["cpu"]}), '
        f'{m["threads"]} torch threads, torch {m["torch"]}, {m["platform"]}.'
    )


def write_json_result(path: str | os.PathLike, data: dict[str, Any]) -> Path:
    """Write ``data`` plus its ``provenance`` as JSON, atomically."""
    return write_json(path, {**data, 'provenance': provenance()})


def write_markdown_result(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` with the provenance line at its end, atomically."""
    return write_text(path, f'{text.rstrip()}\n\n{provenance_line()}\n')


def save_figure(fig: Any, path: str | os.PathLike, dpi: int = 110) -> Path:
    """Save a matplotlib figure as PNG, atomically, with the provenance line as its ``Description``."""
    return write_atomic(
        path, lambda tmp: fig.savefig(tmp, format='png', dpi=dpi, metadata={'Description': provenance_line()})
    )
