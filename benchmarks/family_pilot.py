"""Before a database build: does a candidate task family repeat, and does its architecture matter?

For each family, a few of the database's random cells are trained twice (two seeds) on one held-out task at the
database's recipe. Reported per family: the best and median seed-averaged accuracy (the spread a database needs:
at least 0.05), the seed-to-seed Spearman of the cells' accuracies (the ground truth must repeat), and the
Spearman of each operation's count with accuracy (which operation the family rewards). Minutes, one thread.

    python -m benchmarks.family_pilot --families stripes shapes layout scenes pairs --output \
        benchmarks/results/database/family_pilot.json
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from scipy import stats

from benchmarks.common import write_json_result
from nni_base.database.ground_truth import DATABASE_FAMILIES, DatabaseSpec, pair_seed
from nni_base.search.evaluation import train_on_task
from nni_base.tasks import TaskDistribution, sample_tasks


def op_counts(sample: dict, ops: tuple[str, ...]) -> np.ndarray:
    chosen = [v for k, v in sample.items() if '/op_' in k]
    return np.array([chosen.count(op) for op in ops], dtype=float)


def pilot_family(spec: DatabaseSpec, family: str, architectures: int, seeds: int) -> dict:
    split = spec.family_splits(family)['test']
    task = sample_tasks(TaskDistribution(split, spec.ways, spec.shots, spec.queries, name=family), 1, seed=12345)[0]
    space, archs = spec.space(), spec.sample_architectures()[:architectures]
    acc = np.zeros((architectures, seeds))
    start = time.process_time()
    for s in range(seeds):
        for a, sample in enumerate(archs):
            seed = pair_seed(999, a, 100 + s)
            torch.manual_seed(seed)
            acc[a, s] = train_on_task(
                space.freeze(sample), task, spec.steps, lr=spec.lr, batch_size=spec.batch_size, seed=seed
            )
    mean = acc.mean(1)
    counts = np.stack([op_counts(sample, spec.ops) for sample in archs])
    op_rho = {op: float(stats.spearmanr(counts[:, i], mean).statistic) for i, op in enumerate(spec.ops)}
    return {
        'best': float(mean.max()),
        'median': float(np.median(mean)),
        'spread': float(mean.max() - np.median(mean)),
        'seed_spearman': float(stats.spearmanr(acc[:, 0], acc[:, 1]).statistic) if seeds > 1 else None,
        'op_spearman': op_rho,
        'cpu_seconds': round(time.process_time() - start, 1),
        'accuracy': acc.tolist(),
    }


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--families', nargs='+', default=list(DATABASE_FAMILIES))
    p.add_argument('--architectures', type=int, default=24)
    p.add_argument('--seeds', type=int, default=2)
    p.add_argument('--queries', type=int, default=50, help='query images per class of the pilot task')
    p.add_argument('--steps', type=int, default=DatabaseSpec.steps, help='Adam steps per training')
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--output', default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    spec = DatabaseSpec(families=tuple(args.families), queries=args.queries, steps=args.steps)
    results = {}
    for family in args.families:
        results[family] = r = pilot_family(spec, family, args.architectures, args.seeds)
        top = sorted(r['op_spearman'].items(), key=lambda kv: -kv[1])
        print(
            f'{family}: best {r["best"]:.3f} median {r["median"]:.3f} spread {r["spread"]:.3f} '
            f'seed Spearman {r["seed_spearman"]} | {", ".join(f"{o} {v:+.2f}" for o, v in top)} '
            f'({r["cpu_seconds"]} CPU s)',
            flush=True,
        )
    out = {'settings': vars(args), 'families': results}
    if args.output:
        write_json_result(args.output, out)
    return out


if __name__ == '__main__':
    main()
