"""How well a latency table predicts whole networks: predicted vs measured CPU latency of random cells.

One command (run it alone on the machine: a second busy process changes every measured number)::

    python -m benchmarks.latency_table                      # the shipped prior's space, 16 px, 20 random cells
    python -m benchmarks.latency_table --width 16 --num-cells 8 --image-size 32 --cells 20

Builds the table as ``python -m nni_base.cli.latency`` does (one thread, median of ``--repeats`` runs per
operation module), then measures each random cell's whole network twice (two passes, same repeats) and reports
the Spearman correlation of predicted with measured latency, beside two controls: the measurement's own
repeatability (pass 1 against pass 2: the ceiling any table can reach) and the MACs count as a predictor (what a
FLOPs budget assumes). Writes ``benchmarks/results/latency_table.{json,md}``. Target (issue 38): Spearman >= 0.9.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from scipy import stats

from benchmarks.common import RESULTS, write_json_result, write_markdown_result
from nni_base import BaseStrategy, DartsTaskSpace
from nni_base.api import build_supernet
from nni_base.hardware import build_cost_table
from nni_base.prior import prior_space
from nni_base.search.top_k import cell_shapes, random_architecture
from nni_base.space.costs import cpu_latency_ms


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--width', type=int, help='DartsTaskSpace width (default: the shipped prior space)')
    p.add_argument('--num-cells', type=int)
    p.add_argument('--image-size', type=int, default=16)
    p.add_argument('--cells', type=int, default=20, help='random cells to measure')
    p.add_argument('--repeats', type=int, default=100)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--output-dir', default=str(RESULTS))
    return p.parse_args(argv)


def _rho(a: list[float], b: list[float]) -> float:
    return round(float(stats.spearmanr(a, b).statistic), 3)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.width is not None:
        space = DartsTaskSpace(width=args.width, num_cells=args.num_cells or 4, num_classes=5)
    else:
        space = prior_space('default', num_classes=5)
    size = (3, args.image_size, args.image_size)
    start = time.perf_counter()
    table = build_cost_table(space, size, latency=True, repeats=args.repeats)
    table_s = time.perf_counter() - start
    shapes = cell_shapes(build_supernet(space, BaseStrategy()).cells())
    rng = random.Random(args.seed)
    samples = [random_architecture(shapes, rng) for _ in range(args.cells)]
    nets = [space.freeze(s).eval() for s in samples]
    passes: list[list[float]] = [[], []]
    for measured in passes:  # whole passes, so slow drift of the machine shows as pass-to-pass disagreement
        measured.extend(cpu_latency_ms(net, size, repeats=args.repeats) for net in nets)
    predicted = [table.cost_of(s)['latency_ms'] for s in samples]
    macs = [table.cost_of(s)['macs'] for s in samples]
    errors = [abs(p - m) / m for p, m in zip(predicted, passes[0])]
    result = {
        'space': table.space,
        'input_size': list(size),
        'cells': args.cells,
        'repeats': args.repeats,
        'seed': args.seed,
        'table_seconds': round(table_s, 1),
        'spearman_predicted_vs_measured': _rho(predicted, passes[0]),
        'spearman_pass1_vs_pass2': _rho(passes[0], passes[1]),
        'spearman_macs_vs_measured': _rho(macs, passes[0]),
        'median_relative_error': round(statistics.median(errors), 3),
        'measured_ms': {'min': round(min(passes[0]), 3), 'max': round(max(passes[0]), 3)},
        'rows': [
            {'predicted_ms': round(p, 4), 'measured_ms': [round(a, 4), round(b, 4)], 'macs': m}
            for p, a, b, m in zip(predicted, *passes, macs)
        ],
        'machine': table.machine,
    }
    lines = [
        '# Latency table: predicted vs measured',
        '',
        f'Space {table.space.get("arguments")}, images {size}, {args.cells} random cells, median of {args.repeats} '
        f'runs, one thread; the table took {table_s:.0f} s to measure.',
        '',
        '<!-- --8<-- [start:table] -->',
        '| Spearman with measured latency | rho |',
        '|---|---|',
        f'| table prediction | {result["spearman_predicted_vs_measured"]} |',
        f'| a second measurement (ceiling) | {result["spearman_pass1_vs_pass2"]} |',
        f'| MACs | {result["spearman_macs_vs_measured"]} |',
        '',
        f'Measured {result["measured_ms"]["min"]}-{result["measured_ms"]["max"]} ms; median relative error of the '
        f'prediction {result["median_relative_error"]:.1%}.',
        '<!-- --8<-- [end:table] -->',
        '',
    ]
    write_json_result(f'{args.output_dir}/latency_table.json', result)
    write_markdown_result(f'{args.output_dir}/latency_table.md', '\n'.join(lines))
    print('\n'.join(lines))
    return result


if __name__ == '__main__':
    main()
