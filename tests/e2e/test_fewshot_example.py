"""examples/fewshot.py end to end at toy size: the command the README's few-shot table comes from."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import pytest
import torch
from nni.nas.hub.pytorch import DARTS

# at test size an epoch has fewer batches than the example's log_every_n_steps; Lightning says so
pytestmark = pytest.mark.filterwarnings('ignore:The number of training batches')

EXAMPLE = Path(__file__).resolve().parents[2] / 'examples' / 'fewshot.py'
TINY = [
    '--width',
    '4',
    '--shots',
    '1',
    '--queries',
    '2',
    '--tasks-per-step',
    '2',
    '--search-steps',
    '2',
    '--darts-steps',
    '2',
    '--train-steps',
    '2',
    '--test-episodes',
    '4',
]


def load_example():
    spec = importlib.util.spec_from_file_location('fewshot_example', EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    return example


@pytest.mark.e2e
def test_fewshot_example_writes_the_comparison(tmp_path):
    example = load_example()
    out = tmp_path / 'run'
    tiny = TINY
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
            first[row['method']]['test_acc'],
            first[row['method']]['test_ci95'],
            first[row['method']]['params'],
        )
    assert (tmp_path / 'again' / 'arch_base-gumbel.json').read_text() == (out / 'arch_base-gumbel.json').read_text()


@pytest.mark.e2e
def test_several_search_seeds_share_the_test_episodes_and_matched_widths_near_the_budget(tmp_path):
    """--search-seeds: one network per (method, seed), all scored on the episodes of the test seed, whatever the
    search seed; --param-budget: each network's width gives a count nearer the budget than the default width."""
    from nni_base import TaskDistribution
    from nni_base.data import digits_splits
    from nni_base.fewshot import Conv4, count_parameters, full_network
    from nni_base.fewshot.maml import update_task_digest
    from nni_base.tasks import episode_loader

    example, out, budget = load_example(), tmp_path / 'seeds', 3000
    results = example.main(
        [
            '--output-dir',
            str(out),
            '--methods',
            'base-gumbel',
            'conv4',
            '--search-seeds',
            '3',
            '5',
            '--param-budget',
            str(budget),
            *TINY,
        ]
    )
    rows = results['rows']
    assert [(r['method'], r['seed']) for r in rows] == [
        ('base-gumbel', 3),
        ('base-gumbel', 5),
        ('conv4', 3),
        ('conv4', 5),
    ]

    # Every network saw exactly the episodes of test seed 1000 (--seed 0 + 1000), not ones drawn from its own seed.
    test_tasks = TaskDistribution(digits_splits(val_digits=(6, 7))['test'], 5, 1, 2, name='digits-test')

    def digest(seed: int) -> str:
        h = hashlib.sha256()
        for batch in episode_loader(test_tasks, 1, 4, seed=seed):
            for task in batch:
                update_task_digest(h, task)
        return h.hexdigest()

    assert results['test_seed'] == 1000 and digest(1000) != digest(1003)
    assert {r['episodes_digest'] for r in rows} == {digest(1000)}
    episodes = json.loads((out / 'episodes.json').read_text())
    for summary in results['summary']:
        own = [r for r in rows if r['method'] == summary['method']]
        assert summary['per_seed_acc'] == [r['test_acc'] for r in own] and summary['seeds'] == [3, 5]
        pooled = [a for seed in ('3', '5') for a in episodes[summary['method']][seed]]
        assert len(pooled) == 8 and summary['test_acc'] == pytest.approx(sum(pooled) / 8, abs=1e-5)
        assert summary['seed_sd'] is not None and summary['pooled_ci95'] > 0
    assert [d['second'] for d in results['paired']] == ['conv4']
    table = (out / 'results.md').read_text()
    assert 'search seeds 3, 5' in table and '| BASE (Gumbel) - MAML 4-layer conv |' in table
    assert (out / 'arch_base-gumbel-seed3.json').is_file() and (out / 'cells_base-gumbel-seed5.png').is_file()

    # The matched widths beat the default ones (--width 4 for the cells, 32 filters for Conv4) on |params - budget|.
    for row in rows:
        if row['method'] == 'conv4':
            default = count_parameters(Conv4(5, channels=3, hidden=32, image_size=8))
        else:
            arch = json.loads((out / f'arch_{row["method"]}-seed{row["seed"]}.json').read_text())
            default = count_parameters(full_network(arch, 5, width=4, num_cells=3))
        assert abs(row['params'] - budget) < abs(default - budget), (row, default)
        assert abs(row['params'] - budget) < 0.5 * budget, row
