"""``python -m nni_base.cli.latency``: the table it writes is validated, carries the space it was measured on, and a
search reads only its latency, refusing a table of another space or image size."""

from __future__ import annotations

import json
import os

import pytest

from nni_base import Budget, DartsTaskSpace
from nni_base.cli import latency
from nni_base.hardware import CostTableError, SearchBudget, build_cost_table, load_cost_table
from nni_base.io import UnusablePathError
from nni_base.search.top_k import cell_shapes

SMALL = ['--width', '4', '--num-cells', '3', '--image-size', '3', '8', '8', '--repeats', '2']


@pytest.fixture(scope='module')
def table_file(tmp_path_factory):
    path = tmp_path_factory.mktemp('latency') / 'latency.json'
    latency.main([*SMALL, '--output', str(path)])
    return path


def _shapes(space):
    """The cell shapes of a copy of ``space`` (the supernet is built in place)."""
    import copy

    from nni_base import BaseStrategy
    from nni_base.api import build_supernet

    return cell_shapes(build_supernet(copy.deepcopy(space), BaseStrategy()).cells())


def test_the_cli_writes_a_valid_table_that_show_describes(table_file, capsys):
    table = load_cost_table(table_file)
    assert table.metrics == ('params', 'macs', 'latency_ms') and table.input_size == (3, 8, 8)
    assert table.space['arguments'] == {'width': 4, 'num_cells': 3, 'num_classes': 5}
    assert table.machine is not None and table.fixed['latency_ms'] > 0
    shown = latency.main(['--show', str(table_file)])
    assert json.loads(capsys.readouterr().out) == shown
    assert shown['metrics']['latency_ms']['per_choice_max'] >= shown['metrics']['latency_ms']['per_choice_min'] >= 0


def test_a_search_takes_only_the_latency_of_a_matching_table(table_file):
    space = DartsTaskSpace(width=4, num_cells=3, num_classes=7)  # another class count: only the head differs
    budget = Budget(latency_ms=1e3, latency_table=str(table_file))
    searched = SearchBudget.for_space(budget, space, (3, 8, 8), _shapes(space))
    exact = build_cost_table(space, (3, 8, 8))
    measured = load_cost_table(table_file)
    assert searched.table.fixed['params'] == exact.fixed['params'] != measured.fixed['params']  # counted, not read
    assert searched.table.slots['normal']['latency_ms'] == measured.slots['normal']['latency_ms']
    wider = DartsTaskSpace(width=6, num_cells=3, num_classes=5)
    with pytest.raises(CostTableError, match=r'measured on another space or image size \(width=4, num_cells=3'):
        SearchBudget.for_space(budget, wider, (3, 8, 8), _shapes(wider))
    with pytest.raises(CostTableError, match='another space or image size'):
        SearchBudget.for_space(budget, space, (3, 16, 16), _shapes(space))


def test_the_cli_refuses_a_device_node_or_folder_as_output_before_measuring(tmp_path):
    with pytest.raises(UnusablePathError):
        latency.main([*SMALL, '--output', os.devnull])
    with pytest.raises(UnusablePathError):
        latency.main([*SMALL, '--output', str(tmp_path)])
    with pytest.raises(SystemExit):
        latency.main(['--width', '4'])  # neither --output nor --show
