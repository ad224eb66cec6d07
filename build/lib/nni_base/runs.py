"""Where a run writes, and what it prints: nothing in the current folder unless asked, no noise of ours.

Where it sits: beside the strategy, which calls it as it takes the evaluator. A Lightning ``Trainer`` built
without ``default_root_dir`` or ``logger`` writes ``lightning_logs/`` (with a checkpoint) into the current
folder; :func:`tidy_trainer` rebuilds such a trainer (from the arguments NNI's trace recorded) with its root in a
temporary folder, named in one log line and removed when the process exits. A trainer given a root or a logger
is left as it is. NNI warns that ``training_service`` is ignored every time a one-shot experiment is configured
(one-shot strategies always run on NNI's sequential engine), so :func:`quiet_nni_one_shot_warnings` drops exactly
that message.
"""

from __future__ import annotations

import atexit
import logging
import shutil
import tempfile

import pytorch_lightning as pl
from nni.nas.evaluator.pytorch import Trainer

__all__ = ['tidy_trainer', 'quiet_nni_one_shot_warnings']

_logger = logging.getLogger('nni_base')

_ONE_SHOT_NOISE = '`training_service` will be ignored for sequential execution engine'


class _DropOneShotNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return _ONE_SHOT_NOISE not in record.getMessage()


def quiet_nni_one_shot_warnings() -> None:
    """Drop NNI's "training_service will be ignored" warning (idempotent); every other NNI message stays."""
    nni_logger = logging.getLogger('nni.nas.experiment.config.experiment')
    if not any(isinstance(f, _DropOneShotNoise) for f in nni_logger.filters):
        nni_logger.addFilter(_DropOneShotNoise())


def tidy_trainer(trainer: pl.Trainer) -> pl.Trainer:
    """``trainer``, or a copy rooted in a temporary folder when it would write into the current folder."""
    kwargs = getattr(trainer, 'trace_kwargs', None)
    if kwargs is None or 'default_root_dir' in kwargs:
        return trainer  # built by hand, or the user chose the root
    logger = kwargs.get('logger', True)
    if logger not in (True, False, None):
        return trainer  # the user's own logger says where the logs go (checkpoints follow it)
    if logger is False and kwargs.get('enable_checkpointing', True) is False:
        return trainer  # writes nothing
    if any(not isinstance(kwargs.get(k), str | None) for k in ('strategy', 'accelerator', 'plugins')):
        # a Strategy / Accelerator object was configured by the first Trainer and cannot serve a second one
        _logger.info(
            'Lightning writes this run under %s (its default root): pass default_root_dir= to the evaluator to choose.',
            trainer.default_root_dir,
        )
        return trainer
    root = tempfile.mkdtemp(prefix='nni-base-lightning-')
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    _logger.info(
        'Lightning logs and checkpoints of this run go to %s, removed when the process exits (pass '
        'default_root_dir= or logger= to the evaluator to keep them).',
        root,
    )
    return Trainer(**{**kwargs, 'default_root_dir': root})
