"""Lightning callbacks of BASE's runs: the prior written to disk, torch's threads during a CPU fit.

Threads. At nni-base's CPU sizes a second intra-op thread gains little and costs up to 6x as soon as another
process wants the same cores: on 2 cores one 2-thread meta-training alone took 56 s, two 1-thread ones at once 57 s
each, two 2-thread ones at once 343 s each (``benchmarks/meta_training_speed.py``); and a process that starts later
(a browser, a build, a second search) cannot be foreseen when a fit starts. So nni-base's own fits on a CPU run on
one thread unless the user chose (:func:`fit_threads`), and torch's count is put back when the fit ends or fails.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path

import pytorch_lightning as pl
import torch

__all__ = ['PriorCheckpoint', 'ThreadCheck', 'oversubscription', 'fit_threads', 'THREADS_VARIABLE']

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


def oversubscription(threads: int, load: float, cores: int) -> str | None:
    """Why ``threads`` torch threads on a machine with this 1-minute ``load`` and ``cores`` will crawl, or None.

    Several multi-threaded torch processes on shared cores spin-wait on each other: the same meta-training took
    56 s alone and 343 s each as two 2-thread runs on 2 cores, while two 1-thread runs took 57 s each
    (``benchmarks/meta_training_speed.py``), so one thread per process is the fix.
    """
    if threads <= 1 or load + threads <= cores + 0.5:
        return None
    return (
        f'torch uses {threads} threads on a machine with {cores} cores already running {load:.1f} busy threads '
        '(1-minute load): multi-threaded torch processes on shared cores slow each other down up to 8x. Call '
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
    oversubscribed by ``current`` threads (:func:`oversubscription`; ``load``: the 1-minute load average, read when
    None), one thread, unless the user chose: ``OMP_NUM_THREADS`` set, or torch's count changed since nni-base was
    imported (``default``: that count). An idle machine keeps torch's count: on it one thread took the demo's
    meta-training from 70 s to 141 s.
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
    load = os.getloadavg()[0] if load is None else load
    return 1 if oversubscription(current, load, os.cpu_count() or 1) is not None else None


class ThreadCheck(pl.Callback):
    """Torch's intra-op threads during an nni-base fit (:func:`fit_threads`, put back when the fit ends), and a
    warning at the start of a CPU fit whose threads would oversubscribe an already busy machine."""

    _told = False  # nni-base's own choice gets an INFO line once per process, a DEBUG line after

    def __init__(self) -> None:
        self.restore: int | None = None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        current = torch.get_num_threads()
        threads = fit_threads(pl_module.device.type, current)
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
        if pl_module.device.type != 'cpu' or not hasattr(os, 'getloadavg'):
            return
        message = oversubscription(torch.get_num_threads(), os.getloadavg()[0], os.cpu_count() or 1)
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
