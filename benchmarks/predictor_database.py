"""Could a predictor learn from *trained* accuracies what it cannot learn from weight-sharing ones?

``predictor_quality.py`` found the weight-sharing label tracking trained accuracy weakly (Spearman 0.25 / 0.07), which
caps a predictor trained on it. MetaD2A's predictor learns from accuracies of trained networks. This reads that
benchmark's trained accuracies (20 random cells x 10 held-out tasks per family, every cell trained from scratch on
every task) and asks, per task, with the task's own accuracies held out:

- ``other tasks``: each cell's mean accuracy on the family's other 9 tasks (a database of those very cells);
- ``ridge, unseen cells``: a ridge regression from the cell's operation counts per cell type (16 numbers) to its
  accuracy, fitted on the other tasks *and* the other cells (5 folds of 4 cells): a database of other cells.

Spearman with the held-out task's trained accuracies (mean ± 95% CI over tasks). No training here: seconds.

    python -m benchmarks.predictor_database --input benchmarks/results/conditioning/seed1/predictor_quality.json
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np
from scipy import stats

from benchmarks.common import write_json_result
from nni_base.search.evaluation import DARTS_OPS, mean_ci
from nni_base.search.top_k import darts_cell_shapes, random_architecture

DARTS_SHAPES = darts_cell_shapes()

RESULTS = Path(__file__).parent / 'results'


def op_counts(sample: dict) -> np.ndarray:
    """Operation counts per cell type (normal, reduce): 2 x 8 numbers."""
    v = np.zeros((2, len(DARTS_OPS)))
    for key, value in sample.items():
        label, _, choice = key.partition('/')
        if choice.startswith('op_'):
            v[0 if label == 'normal' else 1, DARTS_OPS.index(value)] += 1
    return v.ravel()


def ridge(x: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
    x1 = np.hstack([x, np.ones((len(x), 1))])
    reg = lam * np.eye(x1.shape[1])
    reg[-1, -1] = 0.0  # no penalty on the intercept
    return np.linalg.solve(x1.T @ x1 + reg, x1.T @ y)


def rho(a, b) -> float:
    value = stats.spearmanr(a, b).statistic
    return float(value) if value == value else 0.0


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--input', type=Path, default=RESULTS / 'conditioning' / 'seed1' / 'predictor_quality.json')
    p.add_argument(
        '--random-results',
        nargs='+',
        type=Path,
        default=[
            RESULTS / 'alpha_recovery_80steps' / 'results.json',
            RESULTS / 'alpha_recovery_80steps_texture' / 'results.json',
        ],
    )
    p.add_argument('--ridge', type=float, default=1.0)
    p.add_argument('--folds', type=int, default=5)
    p.add_argument('--output', type=Path, default=None)
    args = p.parse_args(argv)
    data = json.loads(args.input.read_text())
    seeds = {}
    for path in args.random_results:
        results = json.loads(path.read_text())
        for name in results['families']:
            seeds[name] = results['settings']['seeds'][0]
    out: dict = {'settings': {'input': str(args.input), 'ridge': args.ridge, 'folds': args.folds}, 'families': {}}
    for name, family in data['families'].items():
        # the cells predictor_quality.py trained: alpha_recovery's 10 random cells, then its 10 extra ones
        rng, extra_rng = random.Random(seeds[name]), random.Random(10_000 + seeds[name])
        cells = {f'random{i}': random_architecture(DARTS_SHAPES, rng) for i in range(10)}
        cells |= {f'extra{i}': random_architecture(DARTS_SHAPES, extra_rng) for i in range(10)}
        keys = [k for k in family['tasks'][0]['architectures'] if k in cells]
        acc = np.array([[t['trained'][t['architectures'].index(k)] for k in keys] for t in family['tasks']])
        features = np.stack([op_counts(cells[k]) for k in keys])
        folds = np.array_split(np.random.default_rng(0).permutation(len(keys)), args.folds)
        consistency, learnt = [], []
        for t in range(len(acc)):
            others = np.delete(acc, t, axis=0)
            consistency.append(rho(others.mean(0), acc[t]))
            predicted = np.zeros(len(keys))
            for fold in folds:
                train = np.setdiff1d(np.arange(len(keys)), fold)
                x = np.repeat(features[train], len(others), axis=0)
                y = others[:, train].T.ravel()  # cell-major, as x
                w = ridge(x, y, args.ridge)
                predicted[fold] = np.hstack([features[fold], np.ones((len(fold), 1))]) @ w
            learnt.append(rho(predicted, acc[t]))
        out['families'][name] = {
            'cells': len(keys),
            'tasks': len(acc),
            'other_tasks': dict(zip(('mean', 'ci95'), mean_ci(consistency))),
            'other_tasks_per_task': consistency,
            'ridge_unseen_cells': dict(zip(('mean', 'ci95'), mean_ci(learnt))),
            'ridge_per_task': learnt,
        }
        f = out['families'][name]
        print(
            f'{name}: other tasks {f["other_tasks"]["mean"]:+.2f}±{f["other_tasks"]["ci95"]:.2f}, ridge on unseen '
            f'cells {f["ridge_unseen_cells"]["mean"]:+.2f}±{f["ridge_unseen_cells"]["ci95"]:.2f}',
            flush=True,
        )
    write_json_result(args.output or args.input.with_name('predictor_database.json'), out)
    return out


if __name__ == '__main__':
    main()
