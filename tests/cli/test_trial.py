"""The NNI trial entry point (``python -m nni_base.cli.trial``) without nnictl: parameter checks and a tiny run."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import nni.trial
import pytest
from nni.runtime.trial_command_channel import (
    TrialCommandChannel,
    get_default_trial_command_channel,
    set_default_trial_command_channel,
)

import nni_base.cli.trial as trial_module
from nni_base.cli.trial import DEFAULT_PARAMS, RANK_PARAMS_ENV, main, validate_params

# Small enough for a few seconds per meta-step on 2 CPU cores.
# num_threads 0: keep the test session's thread count (conftest), rather than the trial default of 2.
TINY = {
    'width': 4,
    'num_cells': 3,
    'inner_steps': 1,
    'tasks_per_step': 1,
    'steps_per_epoch': 1,
    'meta_epochs': 2,
    'val_episodes': 1,
    'eval_tasks': 1,
    'shots': 2,
    'queries': 2,
    'num_threads': 0,
    'top_k': 3,
}
REPO = Path(__file__).resolve().parents[2]


class RecordingChannel(TrialCommandChannel):
    """Stands in for the NNI manager: hands out one parameter set and records the reported metrics."""

    def __init__(self, parameters: dict, parameter_id: int):
        self.parameters = parameters
        self.parameter_id = parameter_id
        self.metrics: list[tuple[str, int | None, object]] = []

    def receive_parameter(self):
        return {
            'parameter_id': self.parameter_id,
            'parameter_source': 'algorithm',
            'parameters': self.parameters,
            'parameter_index': 0,
        }

    def send_metric(self, type, parameter_id, trial_job_id, sequence, value):  # noqa: A002 - NNI's signature
        self.metrics.append((type, parameter_id, value))


@contextlib.contextmanager
def recording_channel(parameters: dict, parameter_id: int = 7) -> Iterator[RecordingChannel]:
    """Install a recording channel as NNI's trial channel; restore NNI's trial state afterwards."""
    previous = get_default_trial_command_channel(), nni.trial._params, nni.trial._intermediate_seq
    channel = RecordingChannel(parameters, parameter_id)
    set_default_trial_command_channel(channel)
    try:
        yield channel
    finally:
        set_default_trial_command_channel(previous[0])
        nni.trial._params, nni.trial._intermediate_seq = previous[1], previous[2]


# ---- parameter validation -----------------------------------------------------------------------------------------
def test_defaults_are_valid():
    params = validate_params(None)
    assert params == {**DEFAULT_PARAMS}
    assert params['dataset'] == 'digits' and params['prior'] is None


@pytest.mark.parametrize(
    ('params', 'message'),
    [
        ({'inner_step': 3}, "unknown parameter(s) 'inner_step'"),
        ({'inner_steps': 0}, "parameter 'inner_steps' must be >= 1, got 0"),
        ({'inner_steps': 2.5}, "parameter 'inner_steps' must be an integer"),
        ({'inner_steps': True}, "parameter 'inner_steps' must be an integer"),
        ({'inner_lr': -0.1}, "parameter 'inner_lr' must be >= 0"),
        ({'outer_lr': float('nan')}, "parameter 'outer_lr' must be a finite number"),
        ({'inner_lr_alpha': 'big'}, "parameter 'inner_lr_alpha' must be a finite number"),
        ({'temperature_start': 0.5, 'temperature_end': 2.0}, "'temperature_end' (2.0) must not exceed"),
        ({'ways': 1}, "parameter 'ways' must be >= 2"),
        ({'accelerator': 'tpu'}, 'parameter \'accelerator\' must be one of "auto", "cpu", "gpu", got "tpu"'),
        ({'dataset': 'mnist'}, 'parameter \'dataset\' must be one of "digits", "image_folder"'),
        ({'dataset': 'cifar100'}, "set parameter 'data_root'"),
        ({'data_root': '/tmp'}, "dataset 'digits' is embedded"),
        ({'prior': '/nonexistent/prior.pt'}, "parameter 'prior' is not a file"),
        ({'meta_algorithm': 'imaml'}, 'parameter \'meta_algorithm\' must be one of "reptile", "maml"'),
        ({'relaxation': 'sparsemax'}, 'parameter \'relaxation\' must be one of "gumbel", "softmax"'),
        ({'first_order': 'yes'}, 'parameter \'first_order\' must be true or false, got "yes"'),
        ({'first_order': 1}, "parameter 'first_order' must be true or false, got 1"),
        ({'image_size': 'big'}, 'parameter \'image_size\' must be an integer or null, got "big"'),
        ({'zero_shot': True}, "'zero_shot' generates architectures from a dataset-conditioned prior: set"),
    ],
)
def test_bad_parameters_are_refused_with_a_clear_message(params, message):
    with pytest.raises(ValueError) as info:
        validate_params(params)
    assert message in str(info.value)


def test_fewshot_options_reach_the_strategy():
    from nni_base import BaseStrategy
    from nni_base.cli.trial import _strategy_kwargs

    params = validate_params({'meta_algorithm': 'maml', 'first_order': True, 'relaxation': 'softmax'})
    config = BaseStrategy(**_strategy_kwargs(params)).config
    assert (config.meta_algorithm, config.first_order, config.relaxation) == ('maml', True, 'softmax')
    assert config.outer_lr == 1e-3  # the MAML default, since the trial left outer_lr unset


def test_integral_floats_from_tuners_become_ints():
    params = validate_params({'inner_steps': 3.0, 'tasks_per_step': 2.0})
    assert params['inner_steps'] == 3 and isinstance(params['inner_steps'], int)


def test_data_root_must_exist_and_hold_enough_classes(tmp_path):
    with pytest.raises(ValueError, match="'data_root' is not a folder"):
        validate_params({'dataset': 'image_folder', 'data_root': str(tmp_path / 'missing')})


def test_cli_rejects_non_object_params(tmp_path):
    with pytest.raises(ValueError, match='--params must be a JSON object'):
        main(['--params', '[1, 2]', '--output-dir', str(tmp_path)])
    with pytest.raises(ValueError, match='--params is not valid JSON'):
        main(['--params', '{inner_steps: 1}', '--output-dir', str(tmp_path)])


def test_bad_parameter_fails_the_process_with_the_message_on_stderr(tmp_path):
    proc = subprocess.run(
        [sys.executable, '-m', 'nni_base.cli.trial', '--params', '{"inner_steps": 0}', '--output-dir', str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0
    assert "ValueError: parameter 'inner_steps' must be >= 1, got 0" in proc.stderr
    assert not any(tmp_path.iterdir())


def test_a_trial_sets_its_threads_and_rank_parameters_for_its_run_only(monkeypatch, tmp_path):
    """In-process callers (a notebook, this test session) get their environment and thread count back: the trial's
    NNI_BASE_THREADS once leaked into the DDP tests' ranks and gave 5 processes 2 threads each on 2 cores."""
    import torch

    monkeypatch.delenv('NNI_BASE_THREADS', raising=False)
    monkeypatch.delenv(RANK_PARAMS_ENV, raising=False)
    before = torch.get_num_threads()
    threads = 1 if before != 1 else 2
    seen = {}

    def record(params, output_dir, channel):
        seen.update(
            threads=torch.get_num_threads(),
            variable=os.environ.get('NNI_BASE_THREADS'),
            ranks=json.loads(os.environ[RANK_PARAMS_ENV])['num_threads'],
        )
        return {}

    monkeypatch.setattr(trial_module, '_run_trial', record)
    main(['--params', json.dumps({'num_threads': threads}), '--output-dir', str(tmp_path)])
    assert seen == {'threads': threads, 'variable': str(threads), 'ranks': threads}
    assert torch.get_num_threads() == before
    assert 'NNI_BASE_THREADS' not in os.environ and RANK_PARAMS_ENV not in os.environ


# ---- tiny runs ----------------------------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory):
    """One tiny meta-training run, its parameters coming from a (recording) NNI channel."""
    out = tmp_path_factory.mktemp('trial')
    with pytest.MonkeyPatch.context() as mp, recording_channel(TINY, parameter_id=7) as channel:
        mp.delenv('NNI_OUTPUT_DIR', raising=False)
        metrics = main(['--output-dir', str(out)])
    return out, metrics, channel


def test_main_writes_arch_probs_and_prior_and_returns_final_metrics(tiny_run):
    out, metrics, _ = tiny_run
    assert set(metrics) == {
        'default', 'accuracy_before_adaptation', 'params', 'macs', 'search_seconds', 'meta_train_seconds'
    }  # fmt: skip
    assert 0.0 <= metrics['default'] <= 1.0 and 0.0 <= metrics['accuracy_before_adaptation'] <= 1.0
    assert metrics['params'] > 1000 and metrics['meta_train_seconds'] > 0 and metrics['search_seconds'] > 0
    assert sorted(p.name for p in out.iterdir()) == ['arch.json', 'prior.pt', 'probs.json', 'top_k.json']  # no temps

    sample = json.loads((out / 'arch.json').read_text())
    assert sorted(k for k in sample if k.startswith('normal/op_')) == [
        f'normal/op_{i}_{k}' for i in range(2, 6) for k in range(2)
    ]
    probs = json.loads((out / 'probs.json').read_text())
    assert abs(sum(probs['normal/2_0'].values()) - 1) < 1e-5
    top_k = json.loads((out / 'top_k.json').read_text())
    assert [t['rank'] for t in top_k] == [1, 2, 3] and top_k[0]['sample'] == sample
    assert len({json.dumps(t['sample'], sort_keys=True) for t in top_k}) == 3
    assert top_k[0]['log_prob'] >= top_k[1]['log_prob'] >= top_k[2]['log_prob']

    from nni_base import DartsTaskSpace, load_prior

    prior = load_prior(out / 'prior.pt')
    assert prior['tasks']['ways'] == DEFAULT_PARAMS['ways'] and prior['meta']['steps'] == TINY['meta_epochs']
    network = DartsTaskSpace(width=4, num_cells=3, num_classes=DEFAULT_PARAMS['ways']).freeze(sample)
    assert sum(p.numel() for p in network.parameters()) == metrics['params']


def test_reports_go_to_the_trials_channel_with_its_parameter_id(tiny_run):
    # NasExperiment swaps NNI's channel and parameter record while it runs; the trial must still report every
    # meta-epoch and the final dict to its own channel, under its own parameter id.
    _, metrics, channel = tiny_run
    periodical = [m for m in channel.metrics if m[0] == 'PERIODICAL']
    assert len(periodical) == TINY['meta_epochs']
    assert all(pid == 7 and 0.0 <= value <= 1.0 for _, pid, value in periodical)
    assert [m for m in channel.metrics if m[0] == 'FINAL'] == [('FINAL', 7, metrics)]


def _must_not_run(*args, **kwargs):
    raise AssertionError('meta-training ran although the trial was given a shared prior')


def test_shared_prior_skips_meta_training_and_output_dir_comes_from_nni(tiny_run, tmp_path, monkeypatch):
    out = tiny_run[0]
    monkeypatch.setenv('NNI_OUTPUT_DIR', str(tmp_path / 'nni'))
    with recording_channel({'inner_lr': 0.02}, parameter_id=3) as channel:
        # --params wins over the tuner's values and is merged with them
        # meta-training must not run at all with a shared prior (not merely be fast)
        monkeypatch.setattr('nni_base.cli.trial._meta_train', _must_not_run)
        metrics = main(
            ['--params', json.dumps({**TINY, 'prior': str(out / 'prior.pt')}), '--output-dir', str(tmp_path / 'cli')]
        )
    assert not (tmp_path / 'cli').exists()
    written = tmp_path / 'nni'
    assert sorted(p.name for p in written.iterdir()) == ['arch.json', 'prior.pt', 'probs.json', 'top_k.json']
    assert (written / 'prior.pt').read_bytes() == (out / 'prior.pt').read_bytes()
    assert channel.metrics == [('FINAL', 3, metrics)]


def test_a_budgeted_trial_exports_only_cells_within_the_budget(tiny_run, tmp_path, monkeypatch):
    from nni_base import DartsTaskSpace
    from nni_base.api import sample_tasks
    from nni_base.cli.trial_budget import input_size_of
    from nni_base.cli.trial_data import load_task_splits
    from nni_base.hardware import build_cost_table

    out, unbudgeted, _ = tiny_run
    limit = 0.9 * unbudgeted['macs']  # the unbudgeted export does not fit
    monkeypatch.setattr('nni_base.cli.trial._meta_train', _must_not_run)
    params = {**TINY, 'prior': str(out / 'prior.pt'), 'budget_macs': limit}
    with recording_channel({}, parameter_id=4):
        metrics = main(['--params', json.dumps(params), '--output-dir', str(tmp_path)])
    held_out = load_task_splits(validate_params(params))[1]
    table = build_cost_table(
        DartsTaskSpace(width=4, num_cells=3, num_classes=DEFAULT_PARAMS['ways']),
        input_size_of(sample_tasks(held_out, 1, seed=0)),
    )
    sample = json.loads((tmp_path / 'arch.json').read_text())
    assert metrics['macs'] == round(table.cost_of(sample)['macs']) and metrics['macs'] <= limit
    top_k = json.loads((tmp_path / 'top_k.json').read_text())
    assert top_k[0]['sample'] == sample and all(table.cost_of(t['sample'])['macs'] <= limit for t in top_k)
    with pytest.raises(ValueError, match="'latency_table' is read for a latency budget"):
        validate_params({'latency_table': str(tmp_path / 'arch.json')})


def test_tuner_parameters_are_validated(tmp_path):
    with recording_channel({'inner_steps': 0}), pytest.raises(ValueError, match="'inner_steps' must be >= 1"):
        main(['--output-dir', str(tmp_path)])
    assert not any(tmp_path.iterdir())


def test_zero_shot_trial_meta_trains_a_conditioned_prior_and_writes_generated_top_k(tmp_path):
    with recording_channel({}) as channel:
        metrics = main(
            [
                '--params',
                json.dumps({**TINY, 'meta_epochs': 1, 'dataset_conditioning': True, 'zero_shot': True}),
                '--output-dir',
                str(tmp_path),
            ]
        )
    assert 0 < metrics['zero_shot_seconds'] < 5 and channel.metrics[-1] == ('FINAL', 7, metrics)
    generated = json.loads((tmp_path / 'zero_shot.json').read_text())
    assert len(generated) == TINY['eval_tasks']
    first = generated[0]
    assert first['ranked_by'] == 'predictor' and [t['rank'] for t in first['top_k']] == [1, 2, 3]
    assert len({json.dumps(t['sample'], sort_keys=True) for t in first['top_k']}) == 3
    from nni_base import DartsTaskSpace, load_prior

    assert load_prior(tmp_path / 'prior.pt')['conditioning']['predictor_records'] > 0
    DartsTaskSpace(width=4, num_cells=3, num_classes=DEFAULT_PARAMS['ways']).freeze(first['top_k'][0]['sample'])


def test_shared_prior_adapts_to_another_class_count(tiny_run, tmp_path, monkeypatch):
    from nni_base import load_prior

    out = tiny_run[0]  # a 5-way prior
    monkeypatch.setattr('nni_base.cli.trial._meta_train', _must_not_run)
    with recording_channel({}, parameter_id=4):
        metrics = main(
            ['--params', json.dumps({**TINY, 'ways': 3, 'prior': str(out / 'prior.pt')}), '--output-dir', str(tmp_path)]
        )
    assert 0.0 <= metrics['default'] <= 1.0
    assert load_prior(tmp_path / 'prior.pt')['state_dict']['classifier.weight'].shape[0] == 5  # the file keeps its head
