"""Smoke test of benchmarks/run.py at the tiniest sizes: every benchmark runs and the outputs are well formed."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope='module')
def bench():
    spec = importlib.util.spec_from_file_location('benchmarks_run', ROOT / 'benchmarks' / 'run.py')
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _positive(x: float) -> bool:
    return isinstance(x, float) and math.isfinite(x) and x > 0


def test_benchmarks_run_at_tiny_sizes_and_write_results(bench, tmp_path: Path):
    results = {'mode': 'tiny', 'machine': bench.machine_info()}
    assert {'cpu', 'torch', 'threads'} <= set(results['machine'])

    step = bench.bench_step_time(repeats=1, warmup=0)
    assert all(_positive(v) for v in step['ms'].values()) and len(step['ms']) == 7
    assert all(_positive(v) for v in step['ratios'].values())
    results['step_time'] = step

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
    fraction = tta['summary']['fraction_of_gumbel_time']
    assert fraction >= 0  # 0 if the prior already matches GumbelDARTS before adapting; inf if BASE never does
    results['time_to_accuracy'] = tta

    paths = bench.write_results(results, tmp_path / 'out')
    saved = json.loads(paths['json'].read_text())
    assert {'machine', 'step_time', 'memory', 'vectorized', 'prior', 'time_to_accuracy'} <= set(saved)
    assert '## 4.' in paths['md'].read_text()
    assert paths['png'].read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert '| method |' in paths['md'].read_text()
