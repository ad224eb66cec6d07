"""Known answers by exhaustive evaluation: rank every single-operation cell on each task family.

For every family (procedural, :mod:`nni_base.data.families`, and digits at 16 px) and every DARTS
operation ``o``, build the network whose every edge is ``o`` (:func:`nni_base.search.evaluation.single_op_sample`),
train it from scratch on the same held-out tasks, and record the query accuracy. The ranking of the
operations (mean ± 95% CI over tasks, and paired differences against the winner) is the family's known
answer that the prior's α must recover (``benchmarks/alpha_recovery.py``).

A searched cell type does not face the single-op network: the other cell type is there too. With
``--per-cell-type`` the ranking is redone for each cell type on its own — that cell type's edges all
``o``, the other cell type's edges all the family's single-op winner (read from ``--output``) — so the
normal cell and the reduction cell each get their own known answer.

    python -m benchmarks.known_answer --output benchmarks/results/known_answer.json
    python -m benchmarks.known_answer --output benchmarks/results/known_answer.json --per-cell-type \
        --families peaks texture
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import write_json_result
from nni_base import DartsTaskSpace, TaskDistribution
from nni_base.api import sample_tasks
from nni_base.data import digits_splits
from nni_base.data.families import FAMILIES, family_splits
from nni_base.search.evaluation import DARTS_OPS, mean_ci, single_op_sample, train_on_task


def family_data(name: str, image_size: int):
    if name == 'digits':
        return digits_splits(image_size=image_size)
    return family_splits(name, image_size=image_size)


def cell_type_sample(op: str, cell_type: str | None, other_op: str | None) -> dict:
    """Every edge ``op`` (``cell_type=None``), or ``cell_type``'s edges ``op`` and the other cell's ``other_op``."""
    if cell_type is None:
        return single_op_sample(op)
    other = 'reduce' if cell_type == 'normal' else 'normal'
    return {**single_op_sample(op, labels=(cell_type,)), **single_op_sample(other_op, labels=(other,))}


def rank_family(name: str, args, cell_type: str | None = None, other_op: str | None = None) -> dict:
    split = family_data(name, args.image_size)['test']
    tasks = sample_tasks(
        TaskDistribution(split, args.ways, args.shots, args.queries, name=name), args.tasks, seed=args.seed + 1000
    )
    acc = {op: [] for op in DARTS_OPS}
    for t, task in enumerate(tasks):
        for op in DARTS_OPS:
            torch.manual_seed(args.seed + t)
            net = DartsTaskSpace(width=args.width, num_cells=args.num_cells, num_classes=args.ways).freeze(
                cell_type_sample(op, cell_type, other_op)
            )
            acc[op].append(train_on_task(net, task, args.steps, lr=args.lr, batch_size=args.batch_size, seed=t))
    summary = {op: dict(zip(('mean', 'ci95'), mean_ci(v))) for op, v in acc.items()}
    order = sorted(DARTS_OPS, key=lambda o: -summary[o]['mean'])
    best = order[0]
    for op in DARTS_OPS:  # paired per-task difference to the winner
        summary[op]['diff_to_best'] = dict(zip(('mean', 'ci95'), mean_ci(np.subtract(acc[op], acc[best]))))
    return {'ranking': order, 'winner': best, 'ops': summary, 'per_task': acc}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--families', nargs='+', default=list(FAMILIES) + ['digits'])
    p.add_argument('--image-size', type=int, default=16)
    p.add_argument('--width', type=int, default=8)
    p.add_argument('--num-cells', type=int, default=4)
    p.add_argument('--ways', type=int, default=5)
    p.add_argument('--shots', type=int, default=20)
    p.add_argument('--queries', type=int, default=20)
    p.add_argument('--tasks', type=int, default=8)
    p.add_argument('--steps', type=int, default=40)
    p.add_argument('--lr', type=float, default=3e-3)
    p.add_argument('--batch-size', type=int, default=32)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--output', type=Path, default=None)
    p.add_argument('--threads', type=int, default=None)
    p.add_argument(
        '--per-cell-type',
        action='store_true',
        help="rank each cell type's op with the other cell type at the family's winner (from --output)",
    )
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings('ignore')
    logging.getLogger('nni').setLevel(logging.WARNING)
    settings = {k: v for k, v in vars(args).items() if k not in ('output', 'threads', 'families', 'per_cell_type')}
    results: dict = {'settings': settings, 'families': {}}
    if args.output is not None and args.output.is_file():  # add families to an earlier run with the same settings
        earlier = json.loads(args.output.read_text())
        if {k: v for k, v in earlier['settings'].items() if k != 'families'} == settings:
            results['families'] = earlier['families']
    if args.per_cell_type and not all(name in results['families'] for name in args.families):
        raise SystemExit(
            '--per-cell-type needs the single-op ranking of every family in --output (same settings); '
            'run without --per-cell-type first'
        )
    for name in args.families:
        start = time.time()
        if args.per_cell_type:
            winner = results['families'][name]['winner']
            results['families'][name]['cell_types'] = {}
            for cell_type in ('normal', 'reduce'):
                res = rank_family(name, args, cell_type, winner)
                results['families'][name]['cell_types'][cell_type] = {**res, 'other_cell_op': winner}
                _print_ranking(f'{name} {cell_type} (other cell {winner})', res, start)
        else:
            res = rank_family(name, args)
            results['families'][name] = res
            _print_ranking(name, res, start)
        if args.output is not None:
            write_json_result(args.output, results)
    return results


def _print_ranking(title: str, res: dict, start: float) -> None:
    line = '  '.join(f'{op} {res["ops"][op]["mean"]:.3f}±{res["ops"][op]["ci95"]:.3f}' for op in res['ranking'])
    print(f'{title} ({time.time() - start:.0f} s): {line}', flush=True)


if __name__ == '__main__':
    main()
