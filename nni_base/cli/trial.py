"""NNI trial entry point: one BASE run per hyper-parameter set, for ``nnictl create --config base_exp.yml``.

Each trial receives its hyper-parameters from the tuner (on NNI's trial channel), meta-trains a prior on
few-shot tasks (or loads a shared one), adapts it to held-out tasks, exports the architecture and reports:

- after every meta-epoch, ``nni.report_intermediate_result(held-out accuracy after adaptation)``;
- at the end, ``nni.report_final_result({'default': accuracy, 'accuracy_before_adaptation': ..., 'params': ...,
  'macs': ..., 'search_seconds': ..., 'meta_train_seconds': ...})`` (``latency_ms`` too under a latency budget).

With ``budget_params`` / ``budget_macs`` / ``budget_latency_ms`` the exported cells fit that budget
(:mod:`nni_base.cli.trial_budget`).

It writes ``arch.json`` (the NNI sample), ``probs.json`` (operation probabilities per edge), ``top_k.json`` (the
``top_k`` most probable distinct samples under the task-averaged alpha, best first, with log-probabilities),
with ``zero_shot`` ``zero_shot.json`` (per held-out task, the ``top_k`` architectures a dataset-conditioned prior
generates from the support set alone, with their scores and seconds) and ``prior.pt`` into
the trial's output directory (``$NNI_OUTPUT_DIR``, else ``--output-dir``, else ``./runs/trial``).

Outside NNI::

    python -m nni_base.cli.trial --params '{"meta_epochs": 1, "steps_per_epoch": 2}' --output-dir runs/trial

Bad parameters (unknown names, out-of-range values) raise :class:`ValueError` before any work, so the trial
fails with the message on stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from nni.nas.experiment import NasExperiment

from ..api import adaptation_accuracy, build_supernet, sample_tasks, zero_shot
from ..callbacks import THREADS_VARIABLE, environment, torch_threads
from ..config_groups import grouped_arguments
from ..errors import CorruptPriorError, PriorMismatchError
from ..evaluator import EpisodicClassification
from ..io import UnusablePathError, check_output_dir, write_atomic, write_text
from ..prior import load_prior
from ..space.darts import DartsTaskSpace
from ..strategy import BaseStrategy
from .nni_channel import TrialChannel
from .trial_budget import export_with_costs, input_size_of
from .trial_data import load_task_splits
from .trial_params import (
    ACCELERATORS,
    BASE_PARAMS,
    BASE_TRIAL_DEFAULTS,
    DATASETS,
    DEFAULT_PARAMS,
    RANK_PARAMS_ENV,
    STRATEGIES,
    TRIAL_FILES,
    TrialSettings,
    search_space,
    validate_params,
)

__all__ = [
    'BASE_PARAMS',
    'BASE_TRIAL_DEFAULTS',
    'DEFAULT_PARAMS',
    'ACCELERATORS',
    'STRATEGIES',
    'DATASETS',
    'TrialSettings',
    'search_space',
    'validate_params',
    'load_task_splits',
    'run_trial',
    'main',
]

_logger = logging.getLogger('nni_base.trial')


def _write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=True) + '\n')


class ReportHeldOutAccuracy(pl.Callback):
    """Send held-out accuracy after adaptation (``val_acc``) to NNI once per meta-epoch."""

    def __init__(self, channel: TrialChannel) -> None:
        self.channel = channel
        self.reported: list[float] = []

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero or 'val_acc' not in trainer.callback_metrics:
            return
        value = float(trainer.callback_metrics['val_acc'])
        self.reported.append(value)
        self.channel.report_intermediate(value)


def _strategy_kwargs(params: dict[str, Any]) -> dict[str, Any]:
    """BaseStrategy's arguments for the trial's flat parameters (the grouped ones in their config objects)."""
    return grouped_arguments({name: params[name] for name in BASE_PARAMS}) | {
        'temperature': (params['temperature_start'], params['temperature_end'])
    }


def _meta_train(
    params: dict[str, Any], train_tasks, held_out, prior_path: Path, channel: TrialChannel
) -> tuple[list[float], bool]:
    """Meta-train the prior on ``devices`` x ``num_nodes`` processes; returns the reports and whether this is rank 0."""
    callback = ReportHeldOutAccuracy(channel)
    evaluator = EpisodicClassification(
        train_tasks,
        held_out,
        tasks_per_step=params['tasks_per_step'],
        steps_per_epoch=params['steps_per_epoch'],
        val_episodes=params['val_episodes'],
        seed=params['seed'],
        max_epochs=params['meta_epochs'],
        callbacks=[callback],
        logger=False,
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        accelerator=params['accelerator'],
        devices=params['devices'],
        num_nodes=params['num_nodes'],
        strategy=params['strategy'],
    )
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
    rank_zero = strategy.oneshot_module.trainer.is_global_zero
    if rank_zero:
        strategy.save_prior(prior_path)
    return callback.reported, rank_zero


def _adapt_and_export(params: dict[str, Any], prior_path: Path, held_out) -> dict[str, Any]:
    """Adapt the prior to held-out tasks: accuracy before/after, and the task-averaged architecture."""

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
        for label, alpha in supernet.alphas().items():
            alpha.copy_(averaged[label])
    sample, ranked, costs = export_with_costs(params, supernet, space(), input_size_of(tasks))
    probs = supernet.export_probs()
    top_k = [{'rank': i + 1, 'log_prob': round(score, 6), 'sample': s} for i, (s, score) in enumerate(ranked)]
    network = space().freeze(sample)
    return {
        'accuracy': accuracy,
        'sample': sample,
        'probs': probs,
        'top_k': top_k,
        'params': sum(p.numel() for p in network.parameters()),
        'costs': costs,
    }


def _zero_shot(params: dict[str, Any], prior_path: Path, held_out) -> list[dict[str, Any]]:
    """Top-k architectures of each held-out task from its support set alone (the adaptation's tasks)."""
    prior = load_prior(prior_path)
    records = []
    for i, task in enumerate(sample_tasks(held_out, params['eval_tasks'], seed=10_000 + params['seed'])):
        start = time.perf_counter()
        result = zero_shot(
            prior,
            task.support_x,
            task.support_y,
            top_k=params['top_k'],
            pool=params['zero_shot_pool'],
            candidates=params['zero_shot_candidates'],
            seed=i,
        )
        seconds = time.perf_counter() - start
        records.append(
            {
                'task': i,
                'seconds': round(seconds, 4),
                'ranked_by': result.ranked_by,
                'top_k': [
                    {'rank': r + 1, 'score': round(score, 6), 'log_prob': round(lp, 6), 'sample': s}
                    for r, (s, score, lp) in enumerate(zip(result.samples, result.scores, result.log_probs))
                ],
            }
        )
    return records


def _check_user_prior(path: Path) -> None:
    """Read the user's prior before it is copied into the trial folder, so an error names the user's file."""
    try:
        load_prior(path)
    except CorruptPriorError as e:
        raise CorruptPriorError(f"parameter 'prior' ({path}) cannot be used: {e}") from e


def _remove_copy(params: dict[str, Any], prior_path: Path) -> None:
    """Remove the trial's copy of a user-given prior (the user's file stays where it is)."""
    if params['prior'] is not None and Path(params['prior']) != prior_path.resolve():
        prior_path.unlink(missing_ok=True)


def run_trial(
    params: dict[str, Any], output_dir: str | os.PathLike, channel: TrialChannel | None = None
) -> dict[str, Any]:
    """Run one trial with validated ``params``: meta-train (or load a prior), adapt, export, report.

    Parameters
    ----------
    params
        Output of :func:`validate_params`.
    output_dir
        Where ``arch.json``, ``probs.json`` and ``prior.pt`` go (each written atomically).
    channel
        Where results go: the :class:`TrialChannel` the parameters came from (``main`` receives them on it);
        by default NNI's current channel, reporting without a parameter id.

    Returns
    -------
    dict[str, Any]
        The final metrics also sent with ``nni.report_final_result``.
    """
    channel = channel if channel is not None else TrialChannel()
    threads = params['num_threads']
    # the fits' count (nni-base's thread rule reads the variable) and the rest's, for this trial only
    with environment({THREADS_VARIABLE: str(threads)} if threads else {}), torch_threads(threads):
        return _run_trial(params, output_dir, channel)


def _run_trial(params: dict[str, Any], output_dir: str | os.PathLike, channel: TrialChannel) -> dict[str, Any]:
    # Refused before meta-training: a file, FIFO or device where the folder or one of its files must be.
    out = check_output_dir(output_dir, 'trial output folder', files=TRIAL_FILES)
    out.mkdir(parents=True, exist_ok=True)
    prior_path = out / 'prior.pt'
    train_tasks, held_out = load_task_splits(params)

    start = time.perf_counter()
    if params['prior'] is None:
        intermediate, rank_zero = _meta_train(params, train_tasks, held_out, prior_path, channel)
        if not rank_zero:  # the other DDP ranks helped meta-train; rank 0 adapts, exports and reports
            return {}
    else:
        _check_user_prior(Path(params['prior']))
        if Path(params['prior']) != prior_path.resolve():
            write_atomic(prior_path, lambda tmp: shutil.copyfile(params['prior'], tmp))
        intermediate = []
    meta_train_seconds = time.perf_counter() - start

    start = time.perf_counter()
    try:
        result = _adapt_and_export(params, prior_path, held_out)
    except PriorMismatchError as e:
        if params['prior'] is None:
            raise
        _remove_copy(params, prior_path)
        raise PriorMismatchError(
            f"parameter 'prior' ({params['prior']}) does not fit this trial's space "
            f'(width={params["width"]}, num_cells={params["num_cells"]}, ways={params["ways"]}): '
            f'{e}'
        ) from e
    except BaseException:
        _remove_copy(params, prior_path)
        raise
    search_seconds = time.perf_counter() - start

    _write_json(out / 'arch.json', result['sample'])
    _write_json(out / 'probs.json', result['probs'])
    _write_json(out / 'top_k.json', result['top_k'])
    generated = _zero_shot(params, prior_path, held_out) if params['zero_shot'] else None
    if generated is not None:
        _write_json(out / 'zero_shot.json', generated)
    metrics = {
        'default': float(result['accuracy']['after']),
        'accuracy_before_adaptation': float(result['accuracy']['before']),
        'params': int(result['params']),
        **{m: v for m, v in result['costs'].items() if m != 'params'},  # MACs (and latency): sortable in the web UI
        'search_seconds': round(search_seconds, 3),
        'meta_train_seconds': round(meta_train_seconds, 3),
    }
    if generated is not None:
        metrics['zero_shot_seconds'] = float(np.median([g['seconds'] for g in generated]))
    _logger.info('intermediate results (held-out accuracy per meta-epoch): %s', intermediate)
    _logger.info('final result: %s', metrics)
    channel.report_final(metrics)
    return metrics


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog='python -m nni_base.cli.trial', description=__doc__.split('\n\n')[0])
    parser.add_argument(
        '--params', default=None, help="JSON object of parameters, merged over the tuner's (for runs outside NNI)"
    )
    parser.add_argument(
        '--output-dir', default=None, help='output folder when $NNI_OUTPUT_DIR is not set (default: runs/trial)'
    )
    parser.add_argument(
        '--search-space',
        action='store_true',
        help='print the NNI search space of the tunable parameters (search_spaces/base_hparams.json) and exit',
    )
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
    args = _parse_args(argv)
    if args.search_space:
        print(json.dumps(search_space(), indent=2))
        return {}
    cli: dict[str, Any] = {}
    if args.params is not None:
        try:
            cli = json.loads(args.params)
        except json.JSONDecodeError as err:
            raise ValueError(f'--params is not valid JSON ({err}): {args.params!r}') from err
        if not isinstance(cli, dict):
            raise ValueError(f'--params must be a JSON object, got {args.params!r}')
    channel = TrialChannel()
    inherited = os.environ.get(RANK_PARAMS_ENV)
    if inherited is not None and os.environ.get('LOCAL_RANK', '0') != '0':
        # A DDP rank that Lightning started by running this command again: rank 0 already took the parameters
        # from NNI and handed them down; asking NNI again would take another trial's.
        tuned = json.loads(inherited)
    else:
        with warnings.catch_warnings():
            # outside NNI, the standalone channel warns that there is no runtime and returns no parameters
            warnings.simplefilter('ignore', RuntimeWarning)
            tuned = channel.receive_parameters()
    params = validate_params({**tuned, **cli})
    _logger.info('trial parameters: %s', json.dumps(params, sort_keys=True))
    output_dir = os.environ.get('NNI_OUTPUT_DIR') or args.output_dir or os.path.join('runs', 'trial')
    try:
        with environment({RANK_PARAMS_ENV: json.dumps(params)}):  # inherited by the ranks Lightning's 'ddp' starts
            return run_trial(params, output_dir, channel)
    except UnusablePathError as e:  # one line on stderr, not a traceback
        raise SystemExit(f'python -m nni_base.cli.trial: error: {e}') from None


if __name__ == '__main__':
    logging.basicConfig(
        level=logging.INFO, format='[%(asctime)s] %(levelname)s %(name)s: %(message)s', stream=sys.stderr
    )
    warnings.filterwarnings('ignore', message='.*is found to be not a nn.Module.*')
    logging.getLogger('nni').setLevel(logging.INFO)
    # "training_service will be ignored for sequential execution engine": true and irrelevant for one-shot runs
    logging.getLogger('nni.nas.experiment.config').setLevel(logging.ERROR)
    main()
