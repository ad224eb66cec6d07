"""Smoke test of benchmarks.run at the tiniest sizes: every benchmark runs and the outputs are well formed."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


@pytest.fixture(scope='module')
def bench():
    from benchmarks import run

    return run


def _positive(x: float) -> bool:
    return isinstance(x, float) and math.isfinite(x) and x > 0


def test_benchmarks_run_at_tiny_sizes_and_write_results(bench, tmp_path: Path):
    results = {'mode': 'tiny', 'machine': bench.machine_info()}
    assert {'cpu', 'torch', 'threads'} <= set(results['machine'])

    step = bench.bench_step_time(repeats=1, warmup=0)
    assert all(_positive(v) for v in step['ms'].values()) and len(step['ms']) == 7
    assert all(_positive(v) for v in step['ratios'].values())
    results['step_time'] = step
    cifar = bench.bench_step_time_cifar_like(repeats=1, warmup=0)
    assert (cifar['resolution'], cifar['width'], cifar['cells']) == (32, 16, 5) and _positive(cifar['ratio'])
    results['step_time_cifar_like'] = cifar

    memory = bench.bench_memory(base_steps=1, gumbel_steps=1)
    assert set(memory['peak_rss_mb']) == {'idle', 'base', 'gumbel'}
    assert _positive(memory['ratio_base_over_gumbel'])
    results['memory'] = memory

    vec = bench.bench_vectorized_tasks(tasks=2, repeats=1, warmup=0)
    assert _positive(vec['ms']['vmap']) and _positive(vec['ms']['sequential'])
    assert vec['max_abs_grad_difference'] < 1e-4, 'vmap must compute the same per-task gradients'
    results['vectorized'] = vec

    prior = tmp_path / 'prior.pt'
    results['prior'] = bench.meta_train_prior(prior, steps_per_epoch=1, max_epochs=1, tasks_per_step=1, inner_steps=1)
    assert prior.exists() and _positive(results['prior']['seconds'])
    tta = bench.bench_time_to_accuracy(prior, tasks=1, steps=1, eval_every=1, queries=2)
    for curve in tta['curves'].values():
        assert curve['steps'] == [0, 1] and all(0.0 <= a <= 1.0 for a in curve['accuracy'])
    # The summary's time-to-accuracy, recomputed from the curves: GumbelDARTS's final accuracy is the target, and
    # each method's time is when its curve first reaches it (inf if never), as a fraction of GumbelDARTS's time.
    summary = tta['summary']
    gumbel = tta['curves'][bench.TTA_GUMBEL]
    target, gumbel_seconds = gumbel['accuracy'][-1], gumbel['seconds'][-1]
    assert summary['gumbel_final_accuracy'] == target and summary['gumbel_total_seconds'] == gumbel_seconds > 0
    for name, curve in tta['curves'].items():
        assert curve['seconds'] == sorted(curve['seconds']), f'{name}: wall times must not go back'
        hit = next((i for i, a in enumerate(curve['accuracy']) if a >= target), None)
        expected = math.inf if hit is None else curve['seconds'][hit] / gumbel_seconds
        assert summary['per_method'][name]['fraction_of_gumbel_time'] == expected, name
        assert summary['per_method'][name]['reached'] == (hit is not None)
    assert summary['fraction_of_gumbel_time'] == summary['per_method'][bench.TTA_BASE]['fraction_of_gumbel_time']
    assert summary['per_method'][bench.TTA_GUMBEL]['reached']  # GumbelDARTS reaches its own final accuracy
    results['time_to_accuracy'] = tta

    paths = bench.write_results(results, tmp_path / 'out')
    saved = json.loads(paths['json'].read_text())
    assert {'commit', 'dirty', 'command', 'machine'} <= set(saved['provenance'])
    assert 'Written by' in paths['md'].read_text()
    assert {'machine', 'step_time', 'memory', 'vectorized', 'prior', 'time_to_accuracy'} <= set(saved)
    assert '## 4.' in paths['md'].read_text()
    assert paths['png'].read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert '| method |' in paths['md'].read_text()


@pytest.mark.slow
def test_search_retrain_benchmark_runs_at_tiny_size(tmp_path: Path):
    from benchmarks import search_retrain

    summary = search_retrain.main(['--quick', '--threads', '1', '--output-dir', str(tmp_path)])
    methods = summary['texture']
    assert set(methods) == {
        'BASE from the prior',
        'BASE from the prior, freeze at 0',
        'BaseStrategy() without a prior',
        "NNI's GumbelDARTS",
        "NNI's DARTS",
        'random cell (median)',
    }
    assert tuple(methods['BASE from the prior']['paired_diff_ci']) == (0.0, 0.0)  # against itself
    assert all(0.0 <= m['mean_ci'][0] <= 1.0 for m in methods.values())
    stored = json.loads((tmp_path / 'search_retrain.json').read_text())
    assert stored['provenance']['commit'] and len(stored['per_dataset']['texture']) == 2
    assert (tmp_path / 'search_retrain.png').read_bytes()[:4] == b'\x89PNG'
