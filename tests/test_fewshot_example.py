"""examples/fewshot.py end to end at toy size: the command the README's few-shot table comes from."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from nni.nas.hub.pytorch import DARTS

EXAMPLE = Path(__file__).resolve().parents[1] / 'examples' / 'fewshot.py'


@pytest.mark.e2e
def test_fewshot_example_writes_the_comparison(tmp_path):
    spec = importlib.util.spec_from_file_location('fewshot_example', EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    out = tmp_path / 'run'
    tiny = ['--width', '4', '--shots', '1', '--queries', '2', '--tasks-per-step', '2', '--search-steps', '2',
            '--darts-steps', '2', '--train-steps', '2', '--test-episodes', '4']
    threads = torch.get_num_threads()
    results = example.main(['--output-dir', str(out), '--methods', 'base-gumbel', 'darts', 'conv4', *tiny])
    assert torch.get_num_threads() == threads  # main() restores the caller's thread count
    assert results['machine']['torch_threads'] == 1  # the default --threads, whatever the machine
    assert [row['method'] for row in results['rows']] == ['base-gumbel', 'darts', 'conv4']
    for row in results['rows']:
        assert 0.0 <= row['test_acc'] <= 1.0 and row['episodes'] == 4 and row['params'] > 0
    assert json.loads((out / 'results.json').read_text())['rows'] == results['rows']
    table = (out / 'results.md').read_text()
    assert '| BASE (Gumbel) |' in table and '| MAML 4-layer conv |' in table and '±' in table
    for method in ('base-gumbel', 'darts'):
        DARTS(width=4, num_cells=3).freeze(json.loads((out / f'arch_{method}.json').read_text()))
        assert (out / f'cells_{method}.png').stat().st_size > 0
    assert (out / 'logs' / 'maml-conv4').is_dir()

    # Same seed, same table: a rerun (here of two of the methods, in another order) reproduces their rows and cells.
    again = example.main(['--output-dir', str(tmp_path / 'again'), '--methods', 'conv4', 'base-gumbel', *tiny])
    first = {row['method']: row for row in results['rows']}
    for row in again['rows']:
        assert (row['test_acc'], row['test_ci95'], row['params']) == (
            first[row['method']]['test_acc'], first[row['method']]['test_ci95'], first[row['method']]['params'])
    assert (tmp_path / 'again' / 'arch_base-gumbel.json').read_text() == (out / 'arch_base-gumbel.json').read_text()
