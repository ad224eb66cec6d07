"""NNI trial entry point: one BASE run per hyper-parameter set, for ``nnictl create --config base_exp.yml``.

Each trial receives its hyper-parameters from the tuner (``nni.get_next_parameter()``), meta-trains a prior on
few-shot tasks (or loads a shared one), adapts it to held-out tasks, exports the architecture and reports:

- after every meta-epoch, ``nni.report_intermediate_result(held-out accuracy after adaptation)``;
- at the end, ``nni.report_final_result({'default': accuracy, 'accuracy_before_adaptation': ..., 'params': ...,
  'search_seconds': ..., 'meta_train_seconds': ...})``.

It writes ``arch.json`` (the NNI sample), ``probs.json`` (operation probabilities per edge) and ``prior.pt`` into
the trial's output directory (``$NNI_OUTPUT_DIR``, else ``--output-dir``, else ``./runs/trial``).

Outside NNI::

    python -m nni_base.trial --params '{"meta_epochs": 1, "steps_per_epoch": 2}' --output-dir runs/trial

Bad parameters (unknown names, out-of-range values) raise :class:`ValueError` before any work, so the trial
fails with the message on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .io import write_atomic, write_text

__all__ = ['DEFAULT_PARAMS', 'ACCELERATORS', 'DATASETS', 'validate_params', 'load_task_splits', 'run_trial', 'main']

_logger = logging.getLogger('nni_base.trial')

#: Defaults of every parameter a trial accepts; tuner values and ``--params`` are merged over them. They are sized
#: to finish in about a minute on 2 CPU cores.
DEFAULT_PARAMS: dict[str, Any] = {
    # BASE hyper-parameters (see nni_base.BaseStrategy)
    'inner_steps': 3,
    'inner_lr': 0.05,
    'inner_lr_alpha': 0.5,
    'outer_lr': None,  # None: the strategy's default for meta_algorithm (1.0 Reptile, 1e-3 MAML)
    'outer_lr_alpha': None,
    'adapt_steps': None,
    'arc_learning_rate': 3e-3,
    'temperature_start': 1.0,  # hard samples do not depend on it (only alpha's gradient scale does)
    'temperature_end': 1.0,
    # 'reptile' (Algorithm 1) or 'maml' (few-shot BASE, second order unless first_order); 'gumbel' or 'softmax'
    'meta_algorithm': 'reptile',
    'first_order': False,
    'relaxation': 'gumbel',
    # meta-training budget
    'tasks_per_step': 2,
    'steps_per_epoch': 5,
    'meta_epochs': 2,
    'val_episodes': 2,
    # tasks
    'ways': 5,
    'shots': 5,
    'queries': 5,
    # supernet
    'width': 8,
    'num_cells': 3,
    # final adaptation / evaluation on held-out tasks
    'eval_tasks': 4,
    # data: 'digits' is embedded; the others read files under data_root
    'dataset': 'digits',
    'data_root': None,
    'image_size': None,
    # a shared prior to start from instead of meta-training
    'prior': None,
    'seed': 0,
    'num_threads': 2,
    # 'auto' uses a GPU when the trial sees one (trialGpuNumber >= 1 in the experiment config)
    'accelerator': 'auto',
}

#: Values of the ``accelerator`` parameter.
ACCELERATORS = ('auto', 'cpu', 'gpu')
#: Values of the ``dataset`` parameter.
DATASETS = ('digits', 'image_folder', 'cifar10', 'cifar100', 'svhn', 'imagenet32', 'imagenet64')

# name -> (minimum, allow None)
_INTS: dict[str, tuple[int, bool]] = {
    'inner_steps': (1, False), 'adapt_steps': (0, True), 'tasks_per_step': (1, False), 'steps_per_epoch': (1, False),
    'meta_epochs': (1, False), 'val_episodes': (1, False), 'ways': (2, False), 'shots': (1, False),
    'queries': (1, False), 'width': (1, False), 'num_cells': (1, False), 'eval_tasks': (1, False),
    'image_size': (4, True), 'seed': (0, False), 'num_threads': (0, False),
}
# name -> must be strictly positive (else >= 0)
_FLOATS: dict[str, bool] = {
    'inner_lr': True, 'inner_lr_alpha': False, 'outer_lr': True, 'outer_lr_alpha': False, 'arc_learning_rate': False,
    'temperature_start': True, 'temperature_end': True,
}
_OPTIONAL_FLOATS = ('outer_lr', 'outer_lr_alpha')
_CHOICES: dict[str, tuple[str, ...]] = {'meta_algorithm': ('reptile', 'maml'), 'relaxation': ('gumbel', 'softmax')}


def _as_int(name: str, value: Any, minimum: int, optional: bool) -> int | None:
    if value is None and optional:
        return None
    # tuners' quniform / randint may hand over integral floats such as 3.0
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f'parameter {name!r} must be an integer{" or null" if optional else ""}, got {value!r}')
    if value < minimum:
        raise ValueError(f'parameter {name!r} must be at least {minimum}, got {value}')
    return value


def _as_float(name: str, value: Any, positive: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f'parameter {name!r} must be a finite number, got {value!r}')
    if positive and value <= 0:
        raise ValueError(f'parameter {name!r} must be > 0, got {value}')
    if not positive and value < 0:
        raise ValueError(f'parameter {name!r} must be >= 0, got {value}')
    return float(value)


def validate_params(params: dict[str, Any] | None) -> dict[str, Any]:
    """Merge ``params`` over :data:`DEFAULT_PARAMS` and check every value.

    Parameters
    ----------
    params
        Parameters from the tuner and/or the command line; ``None`` means all defaults.

    Returns
    -------
    dict[str, Any]
        A complete, normalised parameter set (integral floats turned into ints, paths expanded).

    Raises
    ------
    ValueError
        On an unknown parameter name or a value of the wrong type or out of range; the message names the
        parameter and the accepted values.
    """
    params = dict(params or {})
    unknown = sorted(set(params) - set(DEFAULT_PARAMS))
    if unknown:
        raise ValueError(f'unknown parameter(s) {", ".join(map(repr, unknown))}; accepted parameters are: '
                         f'{", ".join(sorted(DEFAULT_PARAMS))}')
    merged = {**DEFAULT_PARAMS, **params}
    for name, (minimum, optional) in _INTS.items():
        merged[name] = _as_int(name, merged[name], minimum, optional)
    for name, positive in _FLOATS.items():
        if merged[name] is None and name in _OPTIONAL_FLOATS:
            continue
        merged[name] = _as_float(name, merged[name], positive)
    for name, choices in _CHOICES.items():
        if merged[name] not in choices:
            raise ValueError(f"parameter {name!r} must be one of {', '.join(choices)}; got {merged[name]!r}")
    if not isinstance(merged['first_order'], bool):
        raise ValueError(f"parameter 'first_order' must be true or false, got {merged['first_order']!r}")
    if merged['temperature_end'] > merged['temperature_start']:
        raise ValueError(f"parameter 'temperature_end' ({merged['temperature_end']}) must not exceed "
                         f"'temperature_start' ({merged['temperature_start']}): the temperature anneals downwards")
    if merged['accelerator'] not in ACCELERATORS:
        raise ValueError(f"parameter 'accelerator' must be one of {', '.join(ACCELERATORS)}; "
                         f"got {merged['accelerator']!r}")
    if merged['dataset'] not in DATASETS:
        raise ValueError(f"parameter 'dataset' must be one of {', '.join(DATASETS)}; got {merged['dataset']!r}")
    for name in ('data_root', 'prior'):
        value = merged[name]
        if value is not None and (not isinstance(value, str) or not value):
            raise ValueError(f'parameter {name!r} must be a path string or null, got {value!r}')
        if value is not None:
            merged[name] = str(Path(value).expanduser().resolve())
    if merged['dataset'] == 'digits':
        if merged['data_root'] is not None:
            raise ValueError("parameter 'data_root' is only used with a file-based 'dataset' "
                             f"({', '.join(DATASETS[1:])}); dataset 'digits' is embedded")
    else:
        if merged['data_root'] is None:
            raise ValueError(f"dataset {merged['dataset']!r} reads files: set parameter 'data_root' to its folder")
        if not Path(merged['data_root']).is_dir():
            raise ValueError(f"parameter 'data_root' is not a folder: {merged['data_root']}")
    if merged['prior'] is not None and not Path(merged['prior']).is_file():
        raise ValueError(f"parameter 'prior' is not a file: {merged['prior']}")
    return merged


def _load_dataset(params: dict[str, Any]):
    from .data import (
        load_cifar10,
        load_cifar100,
        load_downsampled_imagenet,
        load_image_folder,
        load_svhn,
    )

    root, size, name = params['data_root'], params['image_size'], params['dataset']
    if name == 'image_folder':
        return load_image_folder(root, image_size=size or 32)
    if name == 'cifar10':
        return load_cifar10(root, train=True, image_size=size or 32)
    if name == 'cifar100':
        return load_cifar100(root, train=True, image_size=size or 32)
    if name == 'svhn':
        return load_svhn(root, split='train', image_size=size or 32)
    resolution = int(name.removeprefix('imagenet'))
    return load_downsampled_imagenet(root, resolution=resolution, train=True, image_size=size)


def load_task_splits(params: dict[str, Any]):
    """Meta-train and held-out task distributions with disjoint classes.

    ``'digits'`` uses the embedded rotated-digits splits. File-based datasets are loaded with
    :mod:`nni_base.data` and their classes split in two halves by a fixed permutation (independent of the trial
    seed, so that every trial is scored on the same held-out classes).

    Parameters
    ----------
    params
        Validated trial parameters (see :func:`validate_params`).

    Returns
    -------
    tuple[TaskDistribution, TaskDistribution]
        ``(meta_train, held_out)``.
    """
    import numpy as np

    from .data import digits_splits
    from .tasks import TaskDistribution

    ways, shots, queries = params['ways'], params['shots'], params['queries']
    if params['dataset'] == 'digits':
        splits = digits_splits(image_size=params['image_size'] or 8)
        train, held_out, name = splits['train'], splits['test'], 'digits'
    else:
        data = _load_dataset(params)
        order = np.random.default_rng(0).permutation(data.num_classes)
        half = (data.num_classes + 1) // 2
        if data.num_classes - half < ways:
            raise ValueError(f"dataset {params['dataset']!r} at {params['data_root']} has {data.num_classes} classes: "
                             f'each half (meta-train / held-out) needs at least ways={ways}, so lower ways to at '
                             f'most {data.num_classes - half} or add classes')
        train = data.subset_classes(sorted(order[:half].tolist()))
        held_out = data.subset_classes(sorted(order[half:].tolist()))
        name = params['dataset']
    return (TaskDistribution(train, ways, shots, queries, name=f'{name}-train'),
            TaskDistribution(held_out, ways, shots, queries, name=f'{name}-heldout'))


def _write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=True) + '\n')


class _NniTrialState:
    """The trial's own NNI channel and parameter record, to report through while a NAS experiment runs in-process.

    ``NasExperiment.run()`` (sequential engine) swaps NNI's default trial command channel for one that feeds its
    own engine and calls ``nni.get_next_parameter()`` itself, which overwrites the trial's parameter record with
    one whose ``parameter_id`` is 0. Reports made during or after the run would then go to the wrong place or carry
    the wrong parameter id, so this object captures both right after the trial's ``get_next_parameter()`` and
    reinstates them around every report.
    """

    def __init__(self) -> None:
        import nni.trial
        from nni.runtime.trial_command_channel import get_default_trial_command_channel

        self.channel = get_default_trial_command_channel()
        self.record = nni.trial._params

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """Make the captured channel and parameter record NNI's current ones for the duration of the block."""
        import nni.trial
        from nni.runtime.trial_command_channel import (
            get_default_trial_command_channel,
            set_default_trial_command_channel,
        )

        previous = get_default_trial_command_channel(), nni.trial._params
        set_default_trial_command_channel(self.channel)
        nni.trial._params = self.record
        try:
            yield
        finally:
            set_default_trial_command_channel(previous[0])
            nni.trial._params = previous[1]

    def report_intermediate(self, value: float) -> None:
        """``nni.report_intermediate_result`` on the trial's own channel."""
        import nni

        with self.active():
            nni.report_intermediate_result(value)

    def report_final(self, metrics: dict[str, Any]) -> None:
        """``nni.report_final_result`` on the trial's own channel."""
        import nni

        with self.active():
            nni.report_final_result(metrics)


def _report_callback(state: _NniTrialState):
    """A Lightning callback that reports held-out accuracy after adaptation to NNI once per meta-epoch."""
    import pytorch_lightning as pl

    class ReportHeldOutAccuracy(pl.Callback):
        """Send ``trainer.callback_metrics['val_acc']`` to NNI as an intermediate result."""

        def __init__(self) -> None:
            self.reported: list[float] = []

        def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            if trainer.sanity_checking or 'val_acc' not in trainer.callback_metrics:
                return
            value = float(trainer.callback_metrics['val_acc'])
            self.reported.append(value)
            state.report_intermediate(value)

    return ReportHeldOutAccuracy()


def _strategy_kwargs(params: dict[str, Any]) -> dict[str, Any]:
    return {name: params[name] for name in ('inner_steps', 'inner_lr', 'inner_lr_alpha', 'outer_lr', 'outer_lr_alpha',
                                            'adapt_steps', 'arc_learning_rate', 'meta_algorithm', 'first_order',
                                            'relaxation')} | {
        'temperature': (params['temperature_start'], params['temperature_end'])}


def _meta_train(params: dict[str, Any], train_tasks, held_out, prior_path: Path,
                state: _NniTrialState) -> list[float]:
    from nni.nas.experiment import NasExperiment

    from .evaluator import EpisodicClassification
    from .spaces import DartsTaskSpace
    from .strategy import BaseStrategy

    callback = _report_callback(state)
    evaluator = EpisodicClassification(
        train_tasks, held_out, tasks_per_step=params['tasks_per_step'], steps_per_epoch=params['steps_per_epoch'],
        val_episodes=params['val_episodes'], seed=params['seed'], max_epochs=params['meta_epochs'],
        callbacks=[callback], logger=False, enable_progress_bar=False, enable_checkpointing=False,
        enable_model_summary=False, accelerator=params['accelerator'], devices=1)
    space = DartsTaskSpace(width=params['width'], num_cells=params['num_cells'], num_classes=params['ways'])
    strategy = BaseStrategy(save_prior_to=prior_path, seed=params['seed'], **_strategy_kwargs(params))
    experiment = NasExperiment(space, evaluator, strategy)
    # The in-process NAS experiment keeps a checkpoint folder (default ~/nni-experiments); the trial's results are
    # the prior and the exported files, so keep that folder out of the user's experiment list.
    with tempfile.TemporaryDirectory(prefix='nni_base_trial_') as workdir:
        experiment.config.experiment_working_directory = workdir
        try:
            experiment.run()
        finally:
            # run() leaves the experiment to an atexit hook, which would write a checkpoint into the deleted
            # folder (and log to closed streams under pytest); stop it here instead.
            experiment.stop()
    strategy.save_prior(prior_path)
    return callback.reported


def _adapt_and_export(params: dict[str, Any], prior_path: Path, held_out) -> dict[str, Any]:
    """Adapt the prior to held-out tasks: accuracy before/after, and the task-averaged architecture."""
    import torch

    from .api import adaptation_accuracy, build_supernet, sample_tasks
    from .spaces import DartsTaskSpace
    from .strategy import BaseStrategy

    def space() -> DartsTaskSpace:
        return DartsTaskSpace(width=params['width'], num_cells=params['num_cells'], num_classes=params['ways'])

    strategy = BaseStrategy(prior=prior_path, seed=params['seed'], **_strategy_kwargs(params))
    supernet = build_supernet(space(), strategy)
    steps = params['adapt_steps'] if params['adapt_steps'] is not None else params['inner_steps']
    # Tasks depend on the seed only; a different stream from the validation episodes of meta-training.
    tasks = sample_tasks(held_out, params['eval_tasks'], seed=10_000 + params['seed'])
    device = torch.device('cuda' if params['accelerator'] != 'cpu' and torch.cuda.is_available() else 'cpu')
    supernet.to(device)
    tasks = [task.to(device) for task in tasks]
    torch.manual_seed(params['seed'])
    accuracy = adaptation_accuracy(supernet, tasks, steps)
    averaged = supernet.average_alpha_over_tasks(tasks, steps)
    with torch.no_grad():
        for cell in supernet.cells():
            cell.alpha.copy_(averaged[cell.label])
    sample = supernet.export()
    probs = supernet.export_probs()
    network = space().freeze(sample)
    return {'accuracy': accuracy, 'sample': sample, 'probs': probs,
            'params': sum(p.numel() for p in network.parameters())}


def run_trial(params: dict[str, Any], output_dir: str | os.PathLike,
              state: _NniTrialState | None = None) -> dict[str, Any]:
    """Run one trial with validated ``params``: meta-train (or load a prior), adapt, export, report.

    Parameters
    ----------
    params
        Output of :func:`validate_params`.
    output_dir
        Where ``arch.json``, ``probs.json`` and ``prior.pt`` go (each written atomically).
    state
        NNI channel and parameter record to report through; by default NNI's current ones (call
        ``nni.get_next_parameter()`` first when running under NNI).

    Returns
    -------
    dict[str, Any]
        The final metrics also sent with ``nni.report_final_result``.
    """
    import torch

    state = state if state is not None else _NniTrialState()
    if params['num_threads']:
        torch.set_num_threads(params['num_threads'])
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    prior_path = out / 'prior.pt'
    train_tasks, held_out = load_task_splits(params)

    start = time.perf_counter()
    if params['prior'] is None:
        intermediate = _meta_train(params, train_tasks, held_out, prior_path, state)
    else:
        if Path(params['prior']) != prior_path.resolve():
            write_atomic(prior_path, lambda tmp: shutil.copyfile(params['prior'], tmp))
        intermediate = []
    meta_train_seconds = time.perf_counter() - start

    start = time.perf_counter()
    result = _adapt_and_export(params, prior_path, held_out)
    search_seconds = time.perf_counter() - start

    _write_json(out / 'arch.json', result['sample'])
    _write_json(out / 'probs.json', result['probs'])
    metrics = {
        'default': float(result['accuracy']['after']),
        'accuracy_before_adaptation': float(result['accuracy']['before']),
        'params': int(result['params']),
        'search_seconds': round(search_seconds, 3),
        'meta_train_seconds': round(meta_train_seconds, 3),
    }
    _logger.info('intermediate results (held-out accuracy per meta-epoch): %s', intermediate)
    _logger.info('final result: %s', metrics)
    state.report_final(metrics)
    return metrics


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog='python -m nni_base.trial', description=__doc__.split('\n\n')[0])
    parser.add_argument('--params', default=None,
                        help='JSON object of parameters, merged over the tuner\'s (for runs outside NNI)')
    parser.add_argument('--output-dir', default=None,
                        help='output folder when $NNI_OUTPUT_DIR is not set (default: runs/trial)')
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command-line entry point; returns the final metrics.

    Parameters
    ----------
    argv
        Arguments without the program name (``sys.argv[1:]`` when ``None``).

    Returns
    -------
    dict[str, Any]
        Final metrics, as reported to NNI.

    Raises
    ------
    ValueError
        If ``--params`` is not a JSON object, or a parameter is unknown or invalid.
    """
    import nni

    args = _parse_args(argv)
    cli: dict[str, Any] = {}
    if args.params is not None:
        try:
            cli = json.loads(args.params)
        except json.JSONDecodeError as err:
            raise ValueError(f'--params is not valid JSON ({err}): {args.params!r}') from err
        if not isinstance(cli, dict):
            raise ValueError(f'--params must be a JSON object, got {args.params!r}')
    with warnings.catch_warnings():
        # outside NNI, get_next_parameter warns that there is no runtime and returns {}
        warnings.simplefilter('ignore', RuntimeWarning)
        tuned = nni.get_next_parameter() or {}
    state = _NniTrialState()
    params = validate_params({**tuned, **cli})
    _logger.info('trial parameters: %s', json.dumps(params, sort_keys=True))
    output_dir = os.environ.get('NNI_OUTPUT_DIR') or args.output_dir or os.path.join('runs', 'trial')
    return run_trial(params, output_dir, state)


if __name__ == '__main__':
    logging.basicConfig(level=logging.INFO, format='[%(asctime)s] %(levelname)s %(name)s: %(message)s',
                        stream=sys.stderr)
    warnings.filterwarnings('ignore', message='.*is found to be not a nn.Module.*')
    logging.getLogger('nni').setLevel(logging.INFO)
    # "training_service will be ignored for sequential execution engine": true and irrelevant for one-shot runs
    logging.getLogger('nni.nas.experiment.config').setLevel(logging.ERROR)
    main()
