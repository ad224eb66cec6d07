"""Measure a latency table on this machine for budgeted search: ``python -m nni_base.cli.latency``.

The table (a JSON file, :class:`~nni_base.hardware.CostTable`) holds the CPU latency of every (cell type, node,
input, operation) of a :class:`~nni_base.DartsTaskSpace` at one image size, with the fixed part (stem,
preprocessors, classifier), and parameters and MACs beside them; ``Budget(latency_ms=..., latency_table=path)``
reads it, checked against the space and image size of the search::

    python -m nni_base.cli.latency --output latency.json                        # the shipped prior's space, 3x16x16
    python -m nni_base.cli.latency --width 16 --num-cells 8 --image-size 3 32 32 --output latency_c10.json
    python -m nni_base.cli.latency --show latency.json                           # what a table holds, validated

Measured as the search would run it: one torch thread, median of ``--repeats`` forward passes of one image per
operation module, eval mode. Run it on an idle machine (a second busy process changes every number).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..hardware import CostTable, build_cost_table, load_cost_table
from ..io import check_file_target, write_json
from ..prior import prior_space
from ..space import DartsTaskSpace

__all__ = ['main', 'summary']


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog='python -m nni_base.cli.latency', description=__doc__.split('\n\n')[0])
    p.add_argument('--output', type=Path, help='where to write the table (JSON); refused if it is not a file')
    p.add_argument('--show', type=Path, metavar='TABLE', help='validate and describe an existing table, then exit')
    p.add_argument('--prior', default='default', help="the space of this prior (default: the shipped 'default')")
    p.add_argument('--width', type=int, help='DartsTaskSpace width (instead of the prior)')
    p.add_argument('--num-cells', type=int, help='DartsTaskSpace cells (instead of the prior)')
    p.add_argument('--num-classes', type=int, default=5, help='classifier outputs (only its own cost depends on it)')
    p.add_argument('--image-size', type=int, nargs=3, default=(3, 16, 16), metavar=('C', 'H', 'W'))
    p.add_argument('--repeats', type=int, default=20, help='timed forward passes per module (the median is kept)')
    args = p.parse_args(argv)
    if (args.output is None) == (args.show is None):
        p.error('give --output FILE to measure a table, or --show TABLE to describe one')
    if (args.width is None) != (args.num_cells is None):
        p.error('--width and --num-cells go together (a DartsTaskSpace of that size); or neither, for --prior')
    if args.repeats < 1 or min(args.image_size) < 1:
        p.error('--repeats and every --image-size value must be >= 1')
    return args


def _space(args: argparse.Namespace) -> DartsTaskSpace:
    if args.width is not None:
        return DartsTaskSpace(width=args.width, num_cells=args.num_cells, num_classes=args.num_classes)
    return prior_space(args.prior, num_classes=args.num_classes)


def summary(table: CostTable) -> dict[str, Any]:
    """What a table holds: its space, image size, machine, and each metric's fixed part and range per choice."""
    ranges = {}
    for metric in table.metrics:
        values = [
            v
            for per_metric in table.slots.values()
            for inputs in per_metric[metric]
            for row in inputs
            for v in row
            if v is not None
        ]
        ranges[metric] = {'fixed': table.fixed[metric], 'per_choice_min': min(values), 'per_choice_max': max(values)}
    return {
        'space': table.space,
        'input_size': list(table.input_size),
        'cells': {label: list(ops) for label, ops in table.op_names.items()},
        'machine': table.machine,
        'metrics': ranges,
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command-line entry point; returns the :func:`summary` of the table written (or shown)."""
    args = _parse_args(argv)
    if args.show is not None:
        described = summary(load_cost_table(args.show))
        print(json.dumps(described, indent=2))
        return described
    check_file_target(args.output, 'latency table', suggest='latency.json')  # before minutes of measuring, not after
    start = time.perf_counter()
    table = build_cost_table(_space(args), tuple(args.image_size), latency=True, repeats=args.repeats)
    write_json(args.output, table.to_dict())
    described = summary(table)
    latency = described['metrics']['latency_ms']
    print(
        f'Wrote {args.output} ({time.perf_counter() - start:.0f} s): latency fixed {latency["fixed"]:.3f} ms, '
        f'{latency["per_choice_min"]:.3f}-{latency["per_choice_max"]:.3f} ms per choice. '
        f'Use it as Budget(latency_ms=..., latency_table={str(args.output)!r}).'
    )
    return described


if __name__ == '__main__':
    main()
