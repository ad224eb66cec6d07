"""The prepared device check at toy size on CPU: every part runs on the device it is given and the file holds them."""

from __future__ import annotations

import json
import math

import pytest

# slow: `make test-slow`. CI never has a GPU, and this toy run (40 s on 2 cores) only shows the script still runs on
# a CPU; whoever runs the device check runs it there first (benchmarks/README.md).
pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_the_device_check_runs_every_part_and_writes_one_file(tmp_path):
    from benchmarks import gpu_check

    out = tmp_path / 'gpu_check.json'
    gpu_check.run_check('cpu', out, tiny=True, log=lambda *a, **k: None)
    results = json.loads(out.read_text())
    assert results['device'] == 'cpu' and results['provenance']['commit'] is not None
    meta = {m['precision']: m for m in results['meta_training']}
    assert set(meta) == {'32-true', 'bf16-mixed'}
    assert all(m['finite'] and m['seconds'] > 0 and 0 <= m['val_acc'] <= 1 for m in meta.values())
    adaptation = results['adaptation']
    assert adaptation['base']['curve'] and adaptation['base']['sample'] and adaptation['gumbel_darts']['sample']
    assert math.isfinite(adaptation['time_fraction'])
    assert {k: set(v) for k, v in results['retraining'].items()} == {
        'base': {'32-true', 'bf16-mixed'},
        'gumbel_darts': {'32-true', 'bf16-mixed'},
    }
    steps = results['step_time']
    assert {s['precision'] for s in steps} == {'32-true', 'bf16-mixed'}
    assert all(s['ratio'] > 0 and s['ratio_same_layout'] > 0 for s in steps)
