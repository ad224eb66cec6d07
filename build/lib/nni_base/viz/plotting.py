"""Matplotlib plots of DARTS cells and training curves.

Only matplotlib's Agg canvas is used (no pyplot, no graphviz), so plotting works on headless machines and leaves
the process-wide pyplot backend and figure registry untouched. Every PNG is written atomically: it is rendered to
a temporary file in the destination directory and moved into place with :func:`os.replace`, so a reader never
sees a half-written image.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Circle, FancyArrowPatch

from nni_base.io import write_atomic
from nni_base.space.genotype import CELLS, DARTS_OPS, NODES, cell_from_sample

__all__ = ['plot_cell', 'plot_cells', 'plot_curves', 'plot_prior']

# One colour per op (tab10), so the same op reads the same in both cells.
_OP_COLORS = dict(zip(DARTS_OPS, ('#1f77b4', '#ff7f0e', '#7f7f7f', '#2ca02c', '#d62728', '#9467bd', '#8c564b')))
_NODE_RADIUS = 0.32
_LABEL_T = 0.6  # where along an edge its op label sits (0 = source, 1 = target)


def plot_cell(
    sample: Mapping[str, Any],
    cell: str,
    path: str | os.PathLike[str],
    probs: Mapping[str, Any] | None = None,
    *,
    dpi: int = 150,
) -> Path:
    """Draw one cell of a DARTS architecture as a DAG and save it as a PNG.

    Parameters
    ----------
    sample
        An NNI sample of the DARTS space (see :mod:`nni_base.space.genotype`); only the keys of ``cell`` are needed.
    cell
        ``'normal'`` or ``'reduce'``.
    path
        Destination PNG; parent directories are created.
    probs
        Optional confidence per edge, keyed by op label (``'normal/op_2_0'``). A value is either a float (the
        probability of the chosen op) or a mapping ``op -> probability`` (the chosen op's entry is used). Edges
        are then drawn with width and opacity proportional to it, and the probability is printed under the op.
    dpi
        Resolution of the PNG.

    Returns
    -------
    Path
        The written file.

    Raises
    ------
    ValueError
        If ``cell`` is unknown or the sample is missing or has invalid keys for it.
    """
    pairs = cell_from_sample(sample, cell)
    fig = Figure(figsize=(6, 6))
    _draw_cell(fig.add_subplot(), pairs, cell, probs)
    return _save_atomic(fig, path, dpi)


def plot_cells(
    sample: Mapping[str, Any],
    path: str | os.PathLike[str],
    probs: Mapping[str, Any] | None = None,
    *,
    dpi: int = 150,
) -> Path:
    """Draw the normal and reduction cells side by side in one PNG.

    Parameters
    ----------
    sample
        An NNI sample of the DARTS space with the keys of both cells.
    path
        Destination PNG; parent directories are created.
    probs
        Optional per-edge confidence, as in :func:`plot_cell`.
    dpi
        Resolution of the PNG.

    Returns
    -------
    Path
        The written file.
    """
    cells = [(cell, cell_from_sample(sample, cell)) for cell in CELLS]
    fig = Figure(figsize=(12, 6))
    axes = fig.subplots(1, len(cells))
    for ax, (cell, pairs) in zip(axes, cells):
        _draw_cell(ax, pairs, cell, probs)
    return _save_atomic(fig, path, dpi)


def plot_prior(
    sample: Mapping[str, Any],
    probs: Mapping[str, Mapping[str, float]],
    path: str | os.PathLike[str],
    *,
    dpi: int = 120,
) -> Path:
    """The architecture distribution beside the cell it exports: per-edge probability heat maps over the cells.

    Parameters
    ----------
    sample
        The exported NNI sample (DARTS space).
    probs
        ``BaseStrategy.export_probs()``: ``{'normal/3_1': {'sep_conv_3x3': p, ..., 'none': p}}``.
    path
        Destination PNG.
    """
    fig = Figure(figsize=(12, 11))
    axes = fig.subplots(2, len(CELLS), gridspec_kw={'height_ratios': [1, 1.1]})
    for col, cell in enumerate(CELLS):
        edges = sorted(
            (k for k in probs if k.startswith(f'{cell}/')),
            key=lambda k: tuple(int(v) for v in k.split('/')[1].split('_')),
        )
        ops = list(probs[edges[0]]) if edges else []
        grid = [[probs[e][op] for op in ops] for e in edges]
        ax = axes[0][col]
        image = ax.imshow(grid, vmin=0.0, vmax=1.0, cmap='viridis', aspect='auto')
        ax.set_xticks(range(len(ops)), [op.replace('_', ' ') for op in ops], rotation=45, ha='right', fontsize=8)
        ax.set_yticks(range(len(edges)), [f'{e.split("/")[1].replace("_", " <- ")}' for e in edges], fontsize=8)
        mean_max = sum(max(row) for row in grid) / max(len(grid), 1)
        ax.set_title(f'{cell}: p(op | edge), mean max {mean_max:.2f} (uniform {1 / max(len(ops), 1):.2f})', fontsize=10)
        for i, row in enumerate(grid):
            for j, value in enumerate(row):
                ax.text(
                    j,
                    i,
                    f'{value:.2f}',
                    ha='center',
                    va='center',
                    fontsize=6,
                    color='black' if value > 0.5 else 'white',
                )
        fig.colorbar(image, ax=ax, fraction=0.04)
        _draw_cell(axes[1][col], cell_from_sample(sample, cell), cell, None)
    fig.tight_layout()
    return _save_atomic(fig, path, dpi)


def plot_curves(
    metrics_csv: str | os.PathLike[str],
    path: str | os.PathLike[str],
    keys: Sequence[str],
    *,
    dpi: int = 150,
) -> Path:
    """Plot metrics from a Lightning ``CSVLogger`` ``metrics.csv`` against the global step.

    Lightning writes one row per logging call, so rows are sparse: a metric's cell is empty on rows where it was
    not logged. Each key gets its own panel, since losses and accuracies have unrelated scales.

    Parameters
    ----------
    metrics_csv
        The ``metrics.csv`` file; it must have a ``step`` column.
    path
        Destination PNG; parent directories are created.
    keys
        Metric columns to plot, e.g. ``['train_loss', 'val_acc']``.
    dpi
        Resolution of the PNG.

    Returns
    -------
    Path
        The written file.

    Raises
    ------
    ValueError
        If ``keys`` is empty, the file has no ``step`` column, a key is not a column, or a value is not numeric.
    """
    if isinstance(keys, str):
        keys = [keys]  # a lone string would otherwise be plotted letter by letter
    if not keys:
        raise ValueError('plot_curves needs at least one metric key')
    series = _read_metrics(Path(metrics_csv), keys)

    ncols = min(3, len(keys))
    nrows = math.ceil(len(keys) / ncols)
    fig = Figure(figsize=(4.5 * ncols, 3.2 * nrows), layout='constrained')
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, key in zip(axes, keys):
        points = sorted(series[key], key=lambda p: p[0])
        if points:
            steps, values = zip(*points)
            # Markers keep sparse metrics (e.g. one validation value per epoch) visible as points.
            ax.plot(steps, values, marker='o' if len(points) <= 50 else None, markersize=3, linewidth=1.2)
        else:
            ax.text(0.5, 0.5, 'no data', ha='center', va='center', transform=ax.transAxes, color='gray')
        ax.set_title(key)
        ax.set_xlabel('step')
        ax.grid(True, alpha=0.3)
    for ax in axes[len(keys) :]:
        ax.set_visible(False)
    return _save_atomic(fig, path, dpi)


def _read_metrics(metrics_csv: Path, keys: Sequence[str]) -> dict[str, list[tuple[float, float]]]:
    """Read ``(step, value)`` points for each key, skipping the rows where the key was not logged."""
    with metrics_csv.open(newline='') as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        if 'step' not in columns:
            raise ValueError(f"{metrics_csv} has no 'step' column; columns are: {', '.join(columns) or '(none)'}")
        missing = [key for key in keys if key not in columns]
        if missing:
            raise ValueError(
                f'{metrics_csv} has no column(s) {", ".join(map(repr, missing))}; columns are: {", ".join(columns)}'
            )
        series: dict[str, list[tuple[float, float]]] = {key: [] for key in keys}
        for line, row in enumerate(reader, start=2):
            step = row.get('step')
            if not step:
                continue
            for key in keys:
                value = row.get(key)
                if value is None or value == '':
                    continue
                try:
                    series[key].append((float(step), float(value)))
                except ValueError:
                    raise ValueError(
                        f'{metrics_csv}:{line}: non-numeric step {step!r} or {key} value {value!r}'
                    ) from None
    return series


def _node_positions() -> dict[int, tuple[float, float]]:
    """Place the 7 nodes evenly on a circle: inputs on the left, nodes 0..3 clockwise round the bottom and right.

    Points on a circle are in convex position, so no straight edge passes through a third node; even spacing
    keeps the op labels (placed at edge midpoints) apart.
    """
    order = [1, 2, 3, 4, 5, -1, 0]  # counter-clockwise from lower left; -1 is the output c_{k}
    step = 2 * math.pi / len(order)
    start = math.pi + step / 2  # c_{k-1} just below the horizontal, c_{k-2} just above it
    return {node: (3.0 * math.cos(start + m * step), 3.0 * math.sin(start + m * step)) for m, node in enumerate(order)}


def _node_label(node: int) -> str:
    if node == 0:
        return '$c_{k-2}$'
    if node == 1:
        return '$c_{k-1}$'
    if node == -1:
        return '$c_{k}$'
    return str(node - NODES[0])


def _edge_prob(probs: Mapping[str, Any] | None, key: str, op: str) -> float | None:
    if probs is None or key not in probs:
        return None
    value = probs[key]
    if isinstance(value, Mapping):
        value = value.get(op)
        if value is None:
            return None
    # Clamp so a slightly off estimate cannot produce a negative line width or alpha above 1.
    return min(1.0, max(0.0, float(value)))


def _draw_cell(ax: Any, pairs: Sequence[tuple[str, int]], cell: str, probs: Mapping[str, Any] | None) -> None:
    pos = _node_positions()
    ax.set_aspect('equal')  # arc3 curvature is applied in display space; equal aspect keeps labels on the curves
    xs, ys = zip(*pos.values())
    ax.set_xlim(min(xs) - 0.6, max(xs) + 0.6)
    ax.set_ylim(min(ys) - 0.6, max(ys) + 0.6)
    ax.axis('off')
    ax.set_title(f'{cell} cell', fontsize=12)

    fills = {0: '#cfe2f3', 1: '#cfe2f3', -1: '#d9ead3'}
    circles = {}
    for node, (x, y) in pos.items():
        circles[node] = Circle((x, y), _NODE_RADIUS, facecolor=fills.get(node, '#fff2cc'), edgecolor='black', zorder=5)
        ax.add_patch(circles[node])
        ax.text(x, y, _node_label(node), ha='center', va='center', fontsize=9, zorder=6)

    # Concatenation edges first so op edges are drawn over them.
    for i in NODES:
        _arrow(ax, circles[i], circles[-1], rad=0.0, color='#b0b0b0', linewidth=1.0, linestyle='--', alpha=1.0)

    for p, (op, j) in enumerate(pairs):
        i, k = NODES[p // 2], p % 2
        prob = _edge_prob(probs, f'{cell}/op_{i}_{k}', op)
        # Opposite bends for the two slots keep parallel edges (same input twice) apart.
        rad = 0.12 if k == 0 else -0.12
        color = _OP_COLORS.get(op, 'black')
        width = 1.6 if prob is None else 0.6 + 2.4 * prob
        alpha = 1.0 if prob is None else 0.35 + 0.65 * prob
        _arrow(ax, circles[j], circles[i], rad=rad, color=color, linewidth=width, linestyle='-', alpha=alpha)

        # Label a little past the middle of the arc3 curve (a quadratic Bezier with control point
        # chord midpoint + rad * (dy, -dx)): edges crossing near the centre then get their labels apart.
        (x0, y0), (x1, y1) = pos[j], pos[i]
        cx = (x0 + x1) / 2 + rad * (y1 - y0)
        cy = (y0 + y1) / 2 - rad * (x1 - x0)
        t = _LABEL_T
        lx = (1 - t) ** 2 * x0 + 2 * t * (1 - t) * cx + t**2 * x1
        ly = (1 - t) ** 2 * y0 + 2 * t * (1 - t) * cy + t**2 * y1
        # Rotate the text along the curve's tangent, kept upright.
        angle = math.degrees(math.atan2((1 - t) * (cy - y0) + t * (y1 - cy), (1 - t) * (cx - x0) + t * (x1 - cx)))
        if angle > 90:
            angle -= 180
        elif angle <= -90:
            angle += 180
        text = op if prob is None else f'{op} ({prob:.2f})'
        ax.text(
            lx,
            ly,
            text,
            fontsize=6.5,
            ha='center',
            va='center',
            color=color,
            zorder=4,
            rotation=angle,
            rotation_mode='anchor',
            bbox={'boxstyle': 'round,pad=0.15', 'facecolor': 'white', 'edgecolor': 'none', 'alpha': 0.85},
        )


def _arrow(
    ax: Any,
    start: Circle,
    end: Circle,
    *,
    rad: float,
    color: str,
    linewidth: float,
    linestyle: str,
    alpha: float,
) -> None:
    # patchA/patchB clip the arrow at the circles' rims, so arrow heads stay visible at any figure size.
    ax.add_patch(
        FancyArrowPatch(
            start.center,
            end.center,
            connectionstyle=f'arc3,rad={rad}',
            arrowstyle='-|>',
            mutation_scale=10,
            patchA=start,
            patchB=end,
            shrinkA=1,
            shrinkB=1,
            color=color,
            linewidth=linewidth,
            linestyle=linestyle,
            alpha=alpha,
            zorder=3,
        )
    )


def _save_atomic(fig: Figure, path: str | os.PathLike[str], dpi: int) -> Path:
    """Render ``fig`` to a temp file next to ``path`` and move it into place."""
    FigureCanvasAgg(fig)  # attach an Agg canvas explicitly; no pyplot, so no global backend switch
    return write_atomic(path, lambda tmp: fig.savefig(tmp, format='png', dpi=dpi, bbox_inches='tight'))
