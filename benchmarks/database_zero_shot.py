"""Zero-shot picks scored against the ground-truth database: percentile among a task's architectures, regret.

For each pipeline seed (which 80 of the database's architectures the models are fitted on, and the seeds of the
picks' own trainings), two evaluations:

- ``seen``: fit on the meta-train-class tasks of every family, evaluate on the held-out-class tasks;
- ``lofo:<family>``: fit on the other families' tasks only, evaluate on every task of ``<family>``.

Per evaluated task and method, the pick's accuracy is its seed-averaged database accuracy when the database holds
it, or else the mean of trainings with the database's own recipe and as many seeds (cached per task and
architecture). Methods:

- ``zero_shot``: the regression generator's top-1 (the predictor's best of the whole space);
- ``zero_shot_frequency``: the frequency generator's 50 most probable architectures, re-ranked by the predictor
  (what :meth:`DatabaseZeroShot.top_k` does by default);
- ``predictor_over_database``: the predictor's best of the database's architectures (no training: a ranking check);
- ``random``: the task's median database architecture (percentile 50 by construction) — the bar to clear.

Also per task: the predictor's Spearman with the seed-averaged accuracies of the database's architectures it
was *not* fitted on, and the labels' own repeatability (Spearman between the two training seeds); the time from a
support set to the top-5 architectures.

    python -m benchmarks.database_zero_shot --output benchmarks/results/database/zero_shot.json
    # or one process per seed, then merged:
    python -m benchmarks.database_zero_shot --seeds 0 --output /tmp/s0.json   # (and --seeds 1, 2 beside it)
    python -m benchmarks.database_zero_shot --merge /tmp/s0.json /tmp/s1.json /tmp/s2.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from benchmarks.common import RESULTS, quiet, settings_of, write_json_result
from nni_base.database.ground_truth import ArchitectureDatabase, architecture_key, load_database, pair_seed
from nni_base.database.zero_shot_models import DatabaseZeroShot, leave_one_family_out
from nni_base.search.evaluation import train_on_task
from nni_base.tasks.metrics import mean_ci

METHODS = ('zero_shot', 'zero_shot_frequency', 'predictor_over_database', 'random')
NOVEL = 999  # the architecture slot of pair_seed for picks outside the database


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--database', type=Path, default=None, help='default: the shipped database')
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2], help='pipeline seeds')
    p.add_argument('--fit-architectures', type=int, default=80, help='database architectures the models see')
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--output', type=Path, default=RESULTS / 'database' / 'zero_shot.json')
    p.add_argument(
        '--merge', type=Path, nargs='+', default=None, help='summarise these runs (e.g. one per seed) into --output'
    )
    return p.parse_args(argv)


class GroundTruth:
    """A pick's seed-averaged accuracy on a database task: looked up, or trained with the database's recipe."""

    def __init__(self, db: ArchitectureDatabase):
        self.db, self.mean, self.cache, self.trainings = db, db.mean_accuracy(), {}, 0
        self.space = db.spec.space()

    def __call__(self, task: int, sample: dict, seed: int) -> float:
        index = self.db.index_of(sample)
        if index is not None and np.isfinite(self.mean[task, index]):
            return float(self.mean[task, index])
        key = (task, architecture_key(sample, self.db.spec), seed)
        if key not in self.cache:
            spec, accs = self.db.spec, []
            for s in spec.seeds:
                torch_seed = pair_seed(task, NOVEL, s) + 7919 * seed
                torch.manual_seed(torch_seed)
                net = self.space.freeze(sample)
                accs.append(
                    train_on_task(
                        net, self.db.task(task), spec.steps, lr=spec.lr, batch_size=spec.batch_size, seed=torch_seed
                    )
                )
                self.trainings += 1
            self.cache[key] = float(np.mean(accs))
        return self.cache[key]


def rho(a, b) -> float:
    value = stats.spearmanr(a, b).statistic
    return float(value) if np.isfinite(value) else 0.0


def evaluate(db: ArchitectureDatabase, fit: list[int], tasks: list[int], archs: list[int], seed: int, truth) -> dict:
    model = DatabaseZeroShot.fit(db, fit, architectures=archs)
    unseen = [a for a in range(len(db.architectures)) if a not in set(archs)]
    mean = db.mean_accuracy()
    rows = []
    for t in tasks:
        task = db.task(t)
        start = time.perf_counter()
        top5 = model.top_k(task.support_x, task.support_y, k=5, generator='regression')
        seconds = time.perf_counter() - start
        frequency = model.top_k(task.support_x, task.support_y, k=1, generator='frequency')
        predicted = model.predict(task.support_x, task.support_y, db.architectures)
        picks = {
            'zero_shot': truth(t, top5[0][0], seed),
            'zero_shot_frequency': truth(t, frequency[0][0], seed),
            'predictor_over_database': float(mean[t, int(np.argmax(predicted))]),
            'random': float(np.median(mean[t])),
        }
        rows.append(
            {
                'task': t,
                'family': db.tasks[t].family,
                'top5_seconds': seconds,
                'spearman_unseen': rho(predicted[unseen], mean[t, unseen]),
                'repeatability': rho(db.accuracy[t, :, 0], db.accuracy[t, :, 1]) if db.accuracy.shape[2] > 1 else None,
                'methods': {m: db.score(t, acc) for m, acc in picks.items()},
            }
        )
    return {'fit_tasks': fit, 'rows': rows}


def summarise(runs: list[dict]) -> dict:
    """Per evaluation and family: each method's percentile and gain over the random median, mean ± CI over tasks
    and seeds, and per seed; the predictor's Spearman and the labels' repeatability."""
    out: dict = {}
    names = sorted({name for run in runs for name in run['evaluations']})
    for name in names:
        rows = [(run['seed'], r) for run in runs for r in run['evaluations'][name]['rows']]
        for family in sorted({r['family'] for _, r in rows}):
            fam = [(s, r) for s, r in rows if r['family'] == family]
            entry: dict = {'tasks': len(fam)}
            for m in METHODS:
                pct = [r['methods'][m]['percentile'] for _, r in fam]
                gain = [r['methods'][m]['accuracy'] - r['methods']['random']['accuracy'] for _, r in fam]
                per_seed = {
                    str(s): float(np.mean([r['methods'][m]['percentile'] for s2, r in fam if s2 == s]))
                    for s in sorted({s for s, _ in fam})
                }
                entry[m] = {
                    'percentile': dict(zip(('mean', 'ci95'), mean_ci(pct))),
                    'gain_over_random_median': dict(zip(('mean', 'ci95'), mean_ci(gain))),
                    'regret': float(np.mean([r['methods'][m]['regret'] for _, r in fam])),
                    'percentile_per_seed': per_seed,
                    'top10_at_seeds': sum(v >= 90 for v in per_seed.values()),
                }
            entry['spearman_unseen'] = dict(zip(('mean', 'ci95'), mean_ci([r['spearman_unseen'] for _, r in fam])))
            repeat = [r['repeatability'] for _, r in fam if r['repeatability'] is not None]
            if repeat:
                entry['repeatability'] = dict(zip(('mean', 'ci95'), mean_ci(repeat)))
            out[f'{name}/{family}'] = entry
    return out


def main(argv=None) -> dict:
    args = parse_args(argv)
    quiet()
    torch.set_num_threads(args.threads)
    if args.merge:
        return write_summary(args, [json.loads(p.read_text()) for p in args.merge])
    db = load_database(args.database)
    if not db.complete:
        print(f'warning: the database is incomplete ({int(np.isfinite(db.accuracy).sum())}/{db.accuracy.size})')
    truth = GroundTruth(db)
    runs = []
    for seed in args.seeds:
        archs = sorted(np.random.default_rng(seed).choice(len(db.architectures), args.fit_architectures, replace=False))
        archs = [int(a) for a in archs]
        evaluations = {
            'seen': evaluate(db, db.task_indices(split='train'), db.task_indices(split='test'), archs, seed, truth)
        }
        for family in db.spec.families:
            fit, tasks = leave_one_family_out(db, family)
            evaluations[f'lofo:{family}'] = evaluate(db, fit, tasks, archs, seed, truth)
        runs.append({'seed': seed, 'fit_architectures': archs, 'evaluations': evaluations})
        print(f'seed {seed} done ({truth.trainings} trainings so far)', flush=True)
    result = {
        'settings': settings_of(args),
        'database': {'spec': db.spec.as_dict(), 'measured': int(np.isfinite(db.accuracy).sum())},
        'runs': runs,
    }
    return write_summary(args, [result])


def write_summary(args: argparse.Namespace, parts: list[dict]) -> dict:
    """Summarise the runs of ``parts`` (one run of this module, or several merged) and write ``--output``."""
    runs = [run for part in parts for run in part['runs']]
    summary = summarise(runs)
    for key, entry in summary.items():
        line = '  '.join(
            f'{m} {entry[m]["percentile"]["mean"]:.0f}±{entry[m]["percentile"]["ci95"]:.0f}' for m in METHODS[:3]
        )
        print(f'{key:22s} pct: {line}  spearman {entry["spearman_unseen"]["mean"]:.2f}', flush=True)
    seconds = [r['top5_seconds'] for run in runs for ev in run['evaluations'].values() for r in ev['rows']]
    result = {
        'settings': settings_of(args),
        'merged': [str(p) for p in args.merge] if args.merge else None,
        'database': parts[0]['database'],
        'top5_seconds': {'max': max(seconds), 'median': float(np.median(seconds))},
        'summary': summary,
        'runs': runs,
    }
    write_json_result(args.output, result)
    return result


if __name__ == '__main__':
    main()
