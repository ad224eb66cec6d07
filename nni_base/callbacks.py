"""Lightning callbacks of BASE's runs: the prior written to disk, torch's threads during a CPU fit.

Threads. On an idle CPU torch's own thread count is fastest (one thread took the demo's meta-training from 70 s to
141 s on 2 cores), but several multi-threaded torch processes on shared cores spin-wait on each other: two 2-thread
meta-trainings at once took 343 s each where two 1-thread ones took 57 s (``benchmarks/meta_training_speed.py``).
So a CPU fit that starts beside other busy processes runs on one thread (:func:`fit_threads`), unless the user
chose; torch's count is put back when the fit ends or fails. "Other" is measured, not read from the load average,
which counts this process's own previous fit (:func:`busy_cores_beside`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytorch_lightning as pl
import torch

__all__ = [
    'PriorCheckpoint',
    'ThreadCheck',
    'busy_cores_beside',
    'oversubscription',
    'fit_threads',
    'THREADS_VARIABLE',
    'environment',
    'torch_threads',
]

_logger = logging.getLogger('nni_base')

#: The environment variable that sets the intra-op threads of nni-base's fits (on any device).
THREADS_VARIABLE = 'NNI_BASE_THREADS'
#: torch's intra-op threads when nni-base was imported: a different count at a fit's start is the user's choice
#: (``torch.set_num_threads``), which cannot be seen otherwise.
IMPORT_THREADS = torch.get_num_threads()


class PriorCheckpoint(pl.Callback):
    """Save the prior after every training epoch and at the end of the run.

    Each write is atomic and a prior with non-finite values is refused, so a run that diverges
    keeps the last good prior on disk. Under DDP only global rank 0 writes (every rank holds the same
    prior, see :mod:`nni_base.search.distributed`).
    """

    def __init__(self, save: Callable[[Path], object], path: str | os.PathLike):
        self.save = save  # BaseStrategy.save_prior: the strategy knows the space and the task description
        self.path = Path(path)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            self.save(self.path)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            self.save(self.path)


def _cpu_jiffies() -> tuple[int, int] | None:
    """(busy, total) CPU time of the whole machine since boot, from ``/proc/stat``; None where there is none."""
    try:
        with open('/proc/stat') as f:
            values = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    total = sum(values[:8])  # guest time is already inside user time
    return total - idle, total


def busy_cores_beside(
    interval: float = 0.1,
    read: Callable[[], tuple[int, int] | None] = _cpu_jiffies,
    own_seconds: Callable[[], float] = time.process_time,
) -> float | None:
    """How many cores other processes keep busy now: the machine's busy share over ``interval`` seconds times its
    cores, less this process's own CPU time in that interval. None where ``/proc/stat`` cannot be read.

    The 1-minute load average would count this process's own previous fit as other work: run after a
    meta-training, a search would then think the machine busy and drop to one thread for nothing.
    """
    first, own_first, start = read(), own_seconds(), time.monotonic()
    if first is None:
        return None
    time.sleep(interval)
    last, own_last, wall = read(), own_seconds(), time.monotonic() - start
    if last is None or last[1] <= first[1] or wall <= 0:
        return None
    cores = os.cpu_count() or 1
    busy = (last[0] - first[0]) / (last[1] - first[1]) * cores
    return max(0.0, busy - (own_last - own_first) / wall)


def other_load() -> float:
    """Busy cores beside this process (:func:`busy_cores_beside`), else the 1-minute load average."""
    measured = busy_cores_beside()
    if measured is not None:
        return measured
    return os.getloadavg()[0] if hasattr(os, 'getloadavg') else 0.0


def oversubscription(threads: int, load: float, cores: int) -> str | None:
    """Why ``threads`` torch threads beside ``load`` busy cores of other processes on ``cores`` will crawl, or None.

    Several multi-threaded torch processes on shared cores spin-wait on each other: the same meta-training took
    56 s alone and 343 s each as two 2-thread runs on 2 cores, while two 1-thread runs took 57 s each
    (``benchmarks/meta_training_speed.py``), so one thread per process is the fix.
    """
    if threads <= 1 or load + threads <= cores + 0.5:
        return None
    return (
        f'torch uses {threads} threads on a machine with {cores} cores where other processes keep {load:.1f} '
        'busy: multi-threaded torch processes on shared cores slow each other down up to 8x. Call '
        f'torch.set_num_threads(1) (or set OMP_NUM_THREADS=1, or {THREADS_VARIABLE}=1) in each process.'
    )


def fit_threads(
    device_type: str,
    current: int,
    environ: Mapping[str, str] | None = None,
    default: int | None = None,
    load: float | None = None,
) -> int | None:
    """The intra-op thread count of an nni-base fit on ``device_type``, or None to leave torch's ``current`` one.

    ``NNI_BASE_THREADS=N`` in the environment: N (on any device). Else, on a CPU whose other work would be
    oversubscribed by ``current`` threads (:func:`oversubscription`; ``load``: the cores other processes keep busy,
    measured when None, :func:`other_load`), one thread, unless the user chose: ``OMP_NUM_THREADS`` set, or
    torch's count changed since nni-base was imported (``default``: that count). An idle machine keeps torch's
    count.
    """
    environ = os.environ if environ is None else environ
    value = environ.get(THREADS_VARIABLE, '').strip()
    if value:
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f'{THREADS_VARIABLE}={value!r}: set it to a positive thread count (e.g. 1) or unset it.')
        return None if int(value) == current else int(value)
    if device_type != 'cpu' or environ.get('OMP_NUM_THREADS', '').strip():
        return None
    if current != (IMPORT_THREADS if default is None else default):
        return None  # torch.set_num_threads(...) after nni-base's import: the user's count
    if current == 1:
        return None
    load = other_load() if load is None else load
    return 1 if oversubscription(current, load, os.cpu_count() or 1) is not None else None


class ThreadCheck(pl.Callback):
    """Torch's intra-op threads during an nni-base fit (:func:`fit_threads`, put back when the fit ends), and a
    warning at the start of a CPU fit whose threads would oversubscribe an already busy machine."""

    _told = False  # nni-base's own choice gets an INFO line once per process, a DEBUG line after

    def __init__(self) -> None:
        self.restore: int | None = None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        current = torch.get_num_threads()
        cpu = pl_module.device.type == 'cpu'
        load = other_load() if cpu and current > 1 else 0.0  # measured once (0.1 s), only where it decides
        threads = fit_threads(pl_module.device.type, current, load=load)
        if threads is not None:
            self.restore = current
            torch.set_num_threads(threads)
            ours = not os.environ.get(THREADS_VARIABLE, '').strip()
            _logger.log(
                logging.INFO if ours and not ThreadCheck._told else logging.DEBUG,
                'This fit runs on %d torch thread%s (torch had %d)%s; %s=N (or OMP_NUM_THREADS, '
                'torch.set_num_threads) chooses.',
                threads,
                '' if threads == 1 else 's',
                current,
                ': at these sizes more gain little and slow down beside other work' if ours else '',
                THREADS_VARIABLE,
            )
            ThreadCheck._told = ThreadCheck._told or ours
        if not cpu or torch.get_num_threads() == 1:
            return
        message = oversubscription(torch.get_num_threads(), load, os.cpu_count() or 1)
        if message is not None:
            warnings.warn(message, RuntimeWarning, stacklevel=2)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._put_back()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._put_back()  # Lightning skips teardown when the fit raises

    def _put_back(self) -> None:
        if self.restore is not None:
            torch.set_num_threads(self.restore)
            self.restore = None


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the block (the DDP ranks it starts inherit them), then put back what was."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run the block on ``threads`` torch threads (``0``: leave the count), then put back the count there was."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
