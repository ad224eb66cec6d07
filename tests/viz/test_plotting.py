"""Tests for nni_base.viz.plotting: PNG output, sparse Lightning CSVs, and atomic writes."""

from __future__ import annotations

import pytest

from nni_base.space.genotype import DARTS_V2, genotype_to_sample
from nni_base.viz.plotting import plot_cell, plot_cells, plot_curves

PNG_MAGIC = b'\x89PNG\r\n\x1a\n'

# Shaped like a Lightning CSVLogger file: one row per logging call, so each metric is blank on the others' rows.
METRICS_CSV = """epoch,step,train_loss,val_acc,val_loss
0,0,2.30,,
0,1,2.10,,
0,1,,0.21,2.05
1,2,1.90,,
1,3,1.70,,
1,3,,0.35,1.80
"""


def _assert_png(path):
    data = path.read_bytes()
    assert len(data) > 1000
    assert data.startswith(PNG_MAGIC)


def _assert_only(directory, *names):
    # Anything else (e.g. '.cells.png.xxxx.tmp') would be a temp file left behind.
    assert sorted(p.name for p in directory.iterdir()) == sorted(names)


def test_plot_cells_writes_png(tmp_path):
    out = plot_cells(genotype_to_sample(DARTS_V2), tmp_path / 'cells.png')
    assert out == tmp_path / 'cells.png'
    _assert_png(out)
    _assert_only(tmp_path, 'cells.png')


def test_plot_cell_with_probs_and_overwrite(tmp_path):
    sample = genotype_to_sample(DARTS_V2)
    path = tmp_path / 'sub' / 'reduce.png'
    probs = {'reduce/op_2_0': 0.4, 'reduce/op_5_1': {'max_pool_3x3': 0.9, 'skip_connect': 0.1}}
    plot_cell(sample, 'reduce', path, probs=probs)
    plot_cell(sample, 'reduce', path)  # overwriting an existing file goes through os.replace too
    _assert_png(path)
    _assert_only(path.parent, 'reduce.png')


def test_plot_cell_rejects_bad_input(tmp_path):
    sample = genotype_to_sample(DARTS_V2)
    with pytest.raises(ValueError, match='unknown cell'):
        plot_cell(sample, 'stem', tmp_path / 'x.png')
    del sample['normal/op_2_0']
    with pytest.raises(ValueError, match='missing'):
        plot_cell(sample, 'normal', tmp_path / 'x.png')
    _assert_only(tmp_path)


def test_plot_curves_writes_png(tmp_path):
    csv_path = tmp_path / 'metrics.csv'
    csv_path.write_text(METRICS_CSV)
    out = plot_curves(csv_path, tmp_path / 'curves.png', ['train_loss', 'val_acc', 'val_loss', 'epoch'])
    _assert_png(out)
    _assert_only(tmp_path, 'metrics.csv', 'curves.png')


def test_plot_curves_errors(tmp_path):
    csv_path = tmp_path / 'metrics.csv'
    csv_path.write_text(METRICS_CSV)
    with pytest.raises(ValueError, match=r"no column\(s\) 'train_acc'; columns are: epoch, step"):
        plot_curves(csv_path, tmp_path / 'curves.png', ['train_loss', 'train_acc'])
    with pytest.raises(ValueError, match='at least one metric key'):
        plot_curves(csv_path, tmp_path / 'curves.png', [])
    (tmp_path / 'nostep.csv').write_text('epoch,loss\n0,1.0\n')
    with pytest.raises(ValueError, match="no 'step' column"):
        plot_curves(tmp_path / 'nostep.csv', tmp_path / 'curves.png', ['loss'])
    _assert_only(tmp_path, 'metrics.csv', 'nostep.csv')
