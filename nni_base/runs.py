"""Where a run writes, and what it prints: nothing in the current folder unless asked, a short console.

Where it sits: beside the strategy, which calls it as it takes the evaluator. A Lightning ``Trainer`` built
without ``default_root_dir`` or ``logger`` writes ``lightning_logs/`` (with a checkpoint) into the current
folder; :func:`tidy_trainer` rebuilds such a trainer (from the arguments NNI's trace recorded) with its root in a
temporary folder, named in one log line and removed when the process exits. A trainer given a root or a logger
is left as it is.

The console. nni-base's own lines (logger ``nni_base``: what it decided, where files went, the exported cell) go
to the handlers of NNI's ``nni`` logger, so they show in NNI's format, in NNI's console and in the experiment's
``experiment.log`` (:func:`show_nni_base_lines`, at import). Once a :class:`~nni_base.BaseStrategy` exists, NNI's
routine lifecycle lines (config inferred, engine chosen, waiting, completed, stopping, stopped) are left out of
NNI's *console* only, where they say nothing about the run (``experiment.log`` keeps them), and NNI's experiment
checkpoint is announced once per folder; NNI's "training_service will be ignored" warning is dropped
(:func:`quiet_nni_one_shot_warnings`), and so are its two checkpoint-callback warnings of BaseStrategy's state
(:func:`quiet_nni_checkpoint_warnings`). Within nni-base's runs, Lightning's tips, its note on nni-base's own
stepping-batch estimate and its "fit stopped" line (nni-base's result line says it) are left out
(:func:`quiet_lightning_notes`), and so are the construction lines of a trainer nni-base rebuilds (the user's trainer
printed them already: its INFO lines while it is built). Every other filter matches exact messages; the
``nni_base`` logger at ``DEBUG`` (``logging.getLogger('nni_base').setLevel(logging.DEBUG)``) shows everything again.
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import logging
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from nni.nas.evaluator.pytorch import Trainer
from pytorch_lightning.callbacks import ModelSummary

__all__ = [
    'tidy_trainer',
    'quiet_nni_one_shot_warnings',
    'show_nni_base_lines',
    'quiet_lightning_notes',
    'quiet_nni_checkpoint_warnings',
    'describe_sample',
    'search_result_line',
    'start_line',
]

_logger = logging.getLogger('nni_base')

#: What nni-base's lines start with in NNI's console (NNI's own lines have no prefix).
PREFIX = 'nni-base: '
#: The level nni-base sets on its logger when nobody set one: its decisions show, its details do not.
DEFAULT_LEVEL = logging.INFO

_ONE_SHOT_NOISE = '`training_service` will be ignored for sequential execution engine'

#: NNI's lifecycle lines (logger, start of the message), the same for every one-shot run.
_NNI_ROUTINE = (
    ('nni.nas.experiment.config.experiment', 'Config is not provided. Will try to infer.'),
    ('nni.nas.experiment.config.experiment', 'Strategy is found to be a one-shot strategy.'),
    ('nni.nas.experiment.experiment', 'Experiment initialized successfully. Starting exploration strategy...'),
    ('nni.nas.experiment.experiment', 'Waiting for models submitted to engine to finish...'),
    ('nni.nas.experiment.experiment', 'Experiment is completed.'),
    ('nni.nas.experiment.experiment', 'Stopping experiment, please wait...'),
    ('nni.nas.experiment.experiment', 'Experiment stopped'),
)
_NNI_CHECKPOINT_SAVED = 'Checkpoint saved to %s.'

#: NNI's one-shot strategy warns at every experiment checkpoint that the trainer has no checkpoint callback
#: (``enable_checkpointing=False``: the user's choice) or that it saved nothing yet (before the fit).
_NNI_CHECKPOINT_WARNINGS = (
    'Checkpoint callback is found to be None in evaluator trainer.',
    'Checkpoint callback does not have last_model_path or best_model_path attribute.',
)

_LIGHTNING_RANK_ZERO = 'pytorch_lightning.utilities.rank_zero'
_LIGHTNING_TIP = '💡 Tip:'
_LIGHTNING_STEPPING = 'Loading `train_dataloader` to estimate number of stepping batches.'
_LIGHTNING_STOPPED = '`Trainer.fit` stopped:'  # nni-base's last line says when its run finished, and with what


def _details_wanted() -> bool:
    """The ``nni_base`` logger at DEBUG: the user asked for everything, every filter here lets it through."""
    return _logger.isEnabledFor(logging.DEBUG)


# ---- nni-base's lines through NNI's console --------------------------------------------------------------------
class _ThroughNni(logging.Handler):
    """Hand nni-base's records, prefixed, to the handlers of NNI's ``nni`` logger (its console and, while an
    experiment runs, its ``experiment.log``), in NNI's format.

    While the ``nni_base`` logger keeps the level nni-base gave it, NNI's level also applies (a user who quiets
    ``nni`` quiets nni-base too); a level the user set on ``nni_base`` decides alone. The records still propagate,
    so handlers the user put on the root logger see them as they see NNI's.
    """

    def emit(self, record: logging.LogRecord) -> None:
        nni_logger = logging.getLogger('nni')
        if _logger.level == DEFAULT_LEVEL and record.levelno < nni_logger.getEffectiveLevel():
            return
        line = copy.copy(record)
        line.msg, line.args = PREFIX + record.getMessage(), None
        for handler in nni_logger.handlers:
            if line.levelno >= handler.level:
                handler.handle(line)


def show_nni_base_lines() -> None:
    """Show nni-base's INFO lines in NNI's console (idempotent; a level set on ``nni_base`` is kept)."""
    if not any(isinstance(h, _ThroughNni) for h in _logger.handlers):
        _logger.addHandler(_ThroughNni())
    if _logger.level == logging.NOTSET:
        _logger.setLevel(DEFAULT_LEVEL)


# ---- NNI's own lines ---------------------------------------------------------------------------------------------
class _DropOneShotNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return _ONE_SHOT_NOISE not in record.getMessage()


class _CalmNniConsole(logging.Filter):
    """On NNI's console handler: its routine lifecycle lines left out, its checkpoint folder named once."""

    def __init__(self) -> None:
        super().__init__()
        self.folders_named: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if _details_wanted() or not record.name.startswith('nni.nas.experiment'):
            return True
        if record.msg == _NNI_CHECKPOINT_SAVED:
            folder = str(record.args[0]) if isinstance(record.args, tuple) and record.args else ''
            if folder in self.folders_named:
                return False  # the same folder again, at stop
            self.folders_named.add(folder)
            return True
        message = str(record.msg)
        return not any(record.name == name and message.startswith(text) for name, text in _NNI_ROUTINE)


def quiet_nni_one_shot_warnings() -> None:
    """Drop NNI's "training_service will be ignored" warning, and NNI's routine lifecycle lines from its console
    (idempotent; called as a :class:`~nni_base.BaseStrategy` is built). Every other NNI message stays."""
    nni_logger = logging.getLogger('nni.nas.experiment.config.experiment')
    if not any(isinstance(f, _DropOneShotNoise) for f in nni_logger.filters):
        nni_logger.addFilter(_DropOneShotNoise())
    # NNI's console is the StreamHandler it puts on its 'nni' logger; its file handlers keep every line.
    for handler in logging.getLogger('nni').handlers:
        if type(handler) is logging.StreamHandler and not any(isinstance(f, _CalmNniConsole) for f in handler.filters):
            handler.addFilter(_CalmNniConsole())


class _DropMessages(logging.Filter):
    def __init__(self, starts: tuple[str, ...], *, levels: tuple[int, ...] | None = None) -> None:
        super().__init__()
        self.starts, self.levels = starts, levels

    def filter(self, record: logging.LogRecord) -> bool:
        if _details_wanted():
            return True
        if self.levels is not None:
            return record.levelno not in self.levels
        return not str(record.msg).startswith(self.starts)


@contextlib.contextmanager
def _dropped(logger_name: str, dropper: logging.Filter) -> Iterator[None]:
    target = logging.getLogger(logger_name)
    target.addFilter(dropper)
    try:
        yield
    finally:
        target.removeFilter(dropper)


def quiet_nni_checkpoint_warnings() -> contextlib.AbstractContextManager[None]:
    """Within: NNI's two checkpoint-callback warnings of a one-shot strategy's ``state_dict`` left out."""
    return _dropped('nni.nas.oneshot.pytorch.strategy', _DropMessages(_NNI_CHECKPOINT_WARNINGS))


def quiet_lightning_notes() -> contextlib.AbstractContextManager[None]:
    """Within an nni-base run: Lightning's tips, its note on nni-base's own stepping-batch estimate and its "fit
    stopped" line (nni-base's result line follows) left out."""
    return _dropped(_LIGHTNING_RANK_ZERO, _DropMessages((_LIGHTNING_TIP, _LIGHTNING_STEPPING, _LIGHTNING_STOPPED)))


# ---- the trainer -------------------------------------------------------------------------------------------------
def tidy_trainer(trainer: pl.Trainer) -> pl.Trainer:
    """``trainer``, or a copy rooted in a temporary folder when it would write into the current folder; without
    its model summary unless asked for (a supernet's is one row, NNI's wrapper: nni-base's first line says its
    size)."""
    kwargs = getattr(trainer, 'trace_kwargs', None)
    if kwargs is None:
        return trainer  # built by hand
    trainer = _rooted(trainer, kwargs)
    asked = kwargs.get('enable_model_summary') is not None or any(
        isinstance(c, ModelSummary) for c in _as_list(kwargs.get('callbacks'))
    )
    if not asked:
        trainer.callbacks[:] = [c for c in trainer.callbacks if not isinstance(c, ModelSummary)]
    return trainer


def _as_list(callbacks: Any) -> list[Any]:
    if callbacks is None:
        return []
    return list(callbacks) if isinstance(callbacks, list | tuple) else [callbacks]


def _rooted(trainer: pl.Trainer, kwargs: Mapping[str, Any]) -> pl.Trainer:
    if 'default_root_dir' in kwargs:
        return trainer  # the user chose the root
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
    # The copy's construction lines (GPU/TPU available, tips, limits) repeat what the user's trainer printed.
    with _dropped(_LIGHTNING_RANK_ZERO, _DropMessages((), levels=(logging.INFO,))):
        return Trainer(**{**kwargs, 'default_root_dir': root})


# ---- the result, in one line ---------------------------------------------------------------------------------------
_CELL_KEY = re.compile(r'^(?P<cell>.+)/op_(?P<node>\d+)_(?P<edge>\d+)$')


def describe_sample(sample: Mapping[str, Any], limit: int = 400) -> str:
    """An NNI sample in one short line: DARTS-style cells as ``normal: op(input) op(input) | ...`` per node, any
    other choice as ``label=value``."""
    cells: dict[str, dict[int, list[str]]] = {}
    rest = []
    for key, value in sample.items():
        match = _CELL_KEY.match(key)
        if match is None:
            if not re.search(r'/input_\d+_\d+$', key):
                rest.append(f'{key}={value}')
            continue
        source = sample.get(f'{match["cell"]}/input_{match["node"]}_{match["edge"]}')
        source = source[0] if isinstance(source, list | tuple) and len(source) == 1 else source
        op = f'{value}({source})' if source is not None else str(value)
        cells.setdefault(match['cell'], {}).setdefault(int(match['node']), []).append(op)
    parts = [
        f'{cell}: ' + ' | '.join(' '.join(ops) for _, ops in sorted(nodes.items())) for cell, nodes in cells.items()
    ]
    text = '; '.join(parts + rest)
    return text if len(text) <= limit else text[: limit - 3] + '...'


def search_result_line(
    sample: Mapping[str, Any], metrics: Mapping[str, Any], done: int, *, meta: bool, prior_file: Path | None
) -> str:
    """nni-base's last line of a run: what ran (``done``: meta-steps, or epochs of a search), its validation
    accuracy, the cell it exports, where the prior is."""
    score = metrics.get('val_acc')
    scored = f', val_acc {float(score):.3f}' if score is not None else ''
    epochs = f'{done} epoch' + ('' if done == 1 else 's')
    what = f'Meta-training finished after {done} meta-steps' if meta else f'Search finished after {epochs}'
    cell = 'most probable cell' if meta else 'exported cell'
    line = f'{what}{scored}; {cell}: {describe_sample(sample)}'
    return line + (f'; prior written to {prior_file}' if prior_file is not None else '')


def _count(n: int) -> str:
    return f'{n / 1e6:.2f}M' if n >= 1e6 else f'{n / 1e3:.1f}K' if n >= 1e3 else str(n)


def start_line(
    tasks: Mapping[str, Any] | None,
    prior_file: Path | None,
    prior: Mapping[str, Any] | None,
    zero_shot: str | None,
    model: Any,
) -> str:
    """nni-base's first line of a run: what it does with or without a prior, and the supernet's size.

    ``tasks``: the episodic evaluator's task description (meta-training), else None; ``zero_shot``: ``'prior'`` or
    ``'database'`` for a zero-shot generation, else None.
    """
    params = f'{_count(sum(p.numel() for p in model.parameters()))} supernet parameters' if model is not None else ''
    if tasks is not None:
        source = f' from the prior {prior_file}' if prior_file is not None else ''
        named = tasks.get('train') not in (None, 'tasks')  # 'tasks': TaskDistribution's default name
        what = f'Meta-training a prior{source} on {tasks.get("ways")}-way {tasks.get("shots")}-shot tasks'
        what += f' of {tasks["train"]}' if named else ''
    elif zero_shot == 'database':
        what = "Generating this dataset's architectures zero-shot from the shipped ground-truth database"
    elif zero_shot is not None:
        what = f"Generating this dataset's architectures zero-shot from the prior {prior_file}"
    elif prior is not None:
        steps = (prior.get('meta') or {}).get('steps')
        ways = (prior.get('tasks') or {}).get('ways')
        trained = ', '.join(
            x for x in (f'{steps} meta-steps' if steps else '', f'{ways}-way tasks' if ways else '') if x
        )
        what = f'Adapting the prior {prior_file}' + (f' ({trained})' if trained else '') + ' to this dataset'
    else:
        what = 'Searching this dataset without a prior (BaseStrategy(prior=...) starts from a meta-trained one)'
    return f'{what}: {params}.' if params else f'{what}.'
