"""NAS methods scored on the ground-truth database: BASE adapted from a prior, the same without one, NNI's
GumbelDARTS, random search given BASE's wall time, and the database's zero-shot pick.

Every pick is scored like the zero-shot picks of ``benchmarks/database_zero_shot.py``: its seed-averaged accuracy
with the database's own training recipe (looked up when the database holds the architecture, else trained with the
recipe and as many seeds: :class:`benchmarks.database_zero_shot.GroundTruth`), then its percentile among the
task's database architectures and its regret to the best.

Per pipeline seed:

- priors are meta-trained through the README's API (``EpisodicClassification`` + ``BaseStrategy``, 5-way 5-shot
  tasks, ``--tasks-per-step`` tasks per meta-step balanced over families, 10 meta-steps x 3 epochs) on the
  meta-train classes of every database family (``prior``), and once per family on the other families only
  (``prior_lofo``: that family is never seen in meta-training);
- on every held-out-class task of the database, each method searches the task's support set (80% search-train,
  20% search-validation; the query set is the database's test set and no method sees it) through ``NasExperiment``
  + NNI's ``Classification`` for ``--search-epochs`` epochs: ``base_prior`` (the default), ``base_prior_trust``
  (``AdaptationConfig(prior_trust_steps=4)``: the prior-trust probe decides how far its alpha is trusted),
  ``base_prior_weights`` (the same prior with ``AdaptationConfig(prior_alpha_scale=0)``: its weights, a uniform
  alpha), ``base_prior_lofo`` and ``base_prior_lofo_trust``,
  ``base_no_prior`` (``BaseStrategy()`` from an un-meta-trained supernet: the control), ``gumbel_darts``;
- ``random_search`` trains random cells with the database's recipe on the search-train part, scores them on the
  search-validation part, for as long as ``base_prior`` searched, and keeps the best;
- ``zero_shot`` / ``zero_shot_lofo``: the database zero-shot top-1 (frequency generator, predictor re-ranking),
  fitted on the database's meta-train-class tasks of every family / of the other families, on the pipeline seed's
  80 architectures (as in ``database_zero_shot``);
- ``zero_shot_meta``: the zero-shot top-1 of a dataset-conditioned prior (``BaseStrategy(conditioning=True)``,
  meta-trained like ``prior``; :func:`nni_base.api.zero_shot`): the generator learnt in meta-training, against
  the one learnt from the database;
- ``random``: the task's median database architecture (percentile 50 by construction).

    python -m benchmarks.database_searches --seeds 0 --output /tmp/s0.json      # one process per seed ...
    python -m benchmarks.database_searches --merge /tmp/s0.json /tmp/s1.json /tmp/s2.json   # ... then merged
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import time
from pathlib import Path

import numpy as np
import torch
from nni.nas.oneshot.pytorch.strategy import GumbelDARTS
from scipy import stats
from torch.utils.data import TensorDataset

from benchmarks.common import (
    RESULTS,
    classification_search,
    meta_train,
    quiet,
    settings_of,
    write_json_result,
    write_markdown_result,
)
from benchmarks.database_zero_shot import GroundTruth
from nni_base import AdaptationConfig, BaseStrategy, ResolutionMixture, TaskDistribution
from nni_base.api import zero_shot
from nni_base.database.ground_truth import ArchitectureDatabase, DatabaseSpec, load_database
from nni_base.database.zero_shot_models import DatabaseZeroShot, leave_one_family_out
from nni_base.search.evaluation import mean_ci, train_on_task
from nni_base.search.top_k import darts_cell_shapes, random_architecture
from nni_base.tasks import Task

METHODS = (
    'base_prior',
    'base_prior_trust',
    'base_prior_weights',
    'base_prior_lofo',
    'base_prior_lofo_trust',
    'base_no_prior',
    'gumbel_darts',
    'random_search',
    'zero_shot',
    'zero_shot_lofo',
    'zero_shot_meta',
    'random',
)
SEARCHES = (
    'base_prior',
    'base_prior_trust',
    'base_prior_weights',
    'base_prior_lofo',
    'base_prior_lofo_trust',
    'base_no_prior',
    'gumbel_darts',
)
#: ``base_prior_weights``: the prior's weights, the cell searched from a uniform alpha.
WEIGHTS_ONLY = AdaptationConfig(prior_alpha_scale=0.0)
#: ``*_trust``: the prior-trust probe on (4 steps per candidate alpha), against the default's alpha as it is.
TRUST = AdaptationConfig(prior_trust_steps=4)
#: Each method's accuracy is also reported as a paired difference to these (per task and seed).
PAIRED = ('random', 'base_prior', 'base_no_prior', 'base_prior_lofo')
PAIRED_LABELS = {
    'random': '− random median',
    'base_prior': '− BASE from the prior',
    'base_no_prior': '− BASE without a prior',
    'base_prior_lofo': '− BASE from the LOFO prior',
}
#: Operations without weights: a cell made mostly of them is what a prior biased towards pooling exports.
PARAMETER_FREE = frozenset({'max_pool_3x3', 'avg_pool_3x3', 'skip_connect', 'none'})
log = logging.getLogger('bench')


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--database', type=Path, default=None, help='default: the shipped database')
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2], help='pipeline seeds')
    p.add_argument('--search-epochs', type=int, default=10, help='epochs of every search (3 steps each at batch 32)')
    p.add_argument('--tasks-per-step', type=int, default=6, help='meta-training tasks per meta-step')
    p.add_argument('--meta-steps', type=int, default=10, help='meta-steps per epoch (3 epochs)')
    p.add_argument('--fit-architectures', type=int, default=80, help='database architectures zero-shot sees')
    p.add_argument('--tasks', type=int, nargs='+', default=None, help='database task indices (default: held-out)')
    p.add_argument('--methods', nargs='+', default=list(METHODS), choices=METHODS, help='a subset (merged by seed)')
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--work-dir', type=Path, default=Path('/tmp/nni_base_database_searches'))
    p.add_argument('--output', type=Path, default=RESULTS / 'database' / 'searches.json')
    p.add_argument('--merge', type=Path, nargs='+', default=None, help='summarise these runs into --output')
    return p.parse_args(argv)


def meta_train_prior(
    db: ArchitectureDatabase, families: list[str], path: Path, args, seed: int, conditioning: bool = False
) -> float:
    """A prior on the meta-train classes of ``families`` (dataset-conditioned with ``conditioning``); its seconds."""
    spec = db.spec
    mixture = ResolutionMixture(
        [TaskDistribution(spec.family_splits(f)['train'], spec.ways, 5, 5, name=f) for f in families]
    )
    _, seconds = meta_train(
        spec.space(), mixture, path, tasks_per_step=args.tasks_per_step, steps_per_epoch=args.meta_steps, max_epochs=3,
        seed=seed, conditioning=conditioning,
    )  # fmt: skip
    return seconds


def search_split(task: Task, seed: int) -> tuple[Task, TensorDataset, TensorDataset]:
    """The support set cut 80/20 (seeded): as a Task for random search (its query part is the 20%), and as the
    search-train and search-validation datasets. The task's own query set, the database's test set, is not in it."""
    order = torch.randperm(len(task.support_y), generator=torch.Generator().manual_seed(seed))
    cut = int(0.8 * len(order))
    tr, va = order[:cut], order[cut:]
    proxy = Task(task.support_x[tr], task.support_y[tr], task.support_x[va], task.support_y[va])
    return proxy, TensorDataset(proxy.support_x, proxy.support_y), TensorDataset(proxy.query_x, proxy.query_y)


def random_search(spec: DatabaseSpec, proxy: Task, budget: float, seed: int) -> tuple[dict, int]:
    """Random cells trained with the database's recipe on the search-train part until ``budget`` seconds have
    passed (at least one); the best on the search-validation part and how many were tried."""
    rng = random.Random(seed)
    shapes = darts_cell_shapes(spec.num_nodes, spec.ops)
    space, best, tried, start = spec.space(), (-1.0, None), 0, time.perf_counter()
    while tried == 0 or time.perf_counter() - start < budget:
        sample = random_architecture(shapes, rng)
        torch.manual_seed(seed + tried)
        acc = train_on_task(space.freeze(sample), proxy, spec.steps, lr=spec.lr, batch_size=spec.batch_size, seed=tried)
        best, tried = max(best, (acc, sample), key=lambda b: b[0]), tried + 1
    return best[1], tried


def run_seed(db: ArchitectureDatabase, args, seed: int, truth: GroundTruth) -> dict:
    work = args.work_dir / f'seed{seed}'
    work.mkdir(parents=True, exist_ok=True)
    families = list(db.spec.families)
    wanted = set(args.methods)
    uses_prior = {'base_prior', 'base_prior_trust', 'base_prior_weights', 'random_search'}
    jobs = [('all', families, False)] if wanted & uses_prior else []
    if wanted & {'base_prior_lofo', 'base_prior_lofo_trust'}:
        jobs += [(f, [g for g in families if g != f], False) for f in families]
    if 'zero_shot_meta' in wanted:
        jobs.append(('conditioned', families, True))
    priors, meta_seconds = {}, {}
    for name, fams, conditioning in jobs:
        priors[name] = work / f'prior_{name}.pt'
        meta_seconds[name] = meta_train_prior(db, fams, priors[name], args, seed, conditioning)
        log.warning('seed %d: prior %s meta-trained in %.0f s', seed, name, meta_seconds[name])
    archs = [int(a) for a in sorted(np.random.default_rng(seed).choice(len(db.architectures), args.fit_architectures,
                                                                       replace=False))]  # fmt: skip
    zero = {'all': DatabaseZeroShot.fit(db, db.task_indices(split='train'), architectures=archs)}
    for f in families:
        zero[f] = DatabaseZeroShot.fit(db, leave_one_family_out(db, f)[0], architectures=archs)
    mean, rows = db.mean_accuracy(), []
    for t in args.tasks if args.tasks is not None else db.task_indices(split='test'):
        task, family = db.task(t), db.tasks[t].family
        proxy, train, val = search_split(task, seed)
        strategies = {
            'base_prior': lambda: BaseStrategy(prior=priors['all'], seed=seed),
            'base_prior_weights': lambda: BaseStrategy(prior=priors['all'], seed=seed, adaptation=WEIGHTS_ONLY),
            'base_prior_trust': lambda: BaseStrategy(prior=priors['all'], seed=seed, adaptation=TRUST),
            'base_prior_lofo': lambda: BaseStrategy(prior=priors[family], seed=seed),  # noqa: B023 (called at once)
            'base_prior_lofo_trust': lambda: BaseStrategy(prior=priors[family], seed=seed, adaptation=TRUST),  # noqa: B023
            'base_no_prior': lambda: BaseStrategy(seed=seed),
            'gumbel_darts': GumbelDARTS,
        }
        picks, seconds, tried = {}, {}, None
        # random search is given base_prior's time, so base_prior runs whenever random search does
        for name in [n for n in SEARCHES if n in wanted or (n == 'base_prior' and 'random_search' in wanted)]:
            picks[name], seconds[name] = classification_search(
                db.spec.space(), strategies[name](), db.spec.ways, train, val, epochs=args.search_epochs, seed=seed,
                val_batch_size=len(val),
            )  # fmt: skip
        if 'random_search' in wanted:
            start = time.perf_counter()
            picks['random_search'], tried = random_search(db.spec, proxy, seconds['base_prior'], seed)
            seconds['random_search'] = time.perf_counter() - start
        for name, key in [('zero_shot', 'all'), ('zero_shot_lofo', family)]:
            if name in wanted:
                start = time.perf_counter()
                picks[name] = zero[key].top_k(task.support_x, task.support_y, k=1)[0][0]
                seconds[name] = time.perf_counter() - start
        if 'zero_shot_meta' in wanted:
            start = time.perf_counter()
            result = zero_shot(priors['conditioned'], task.support_x, task.support_y, top_k=1)
            picks['zero_shot_meta'] = result.samples[0]
            seconds['zero_shot_meta'] = time.perf_counter() - start
        picks = {m: sample for m, sample in picks.items() if m in wanted}
        scores = {m: db.score(t, truth(t, sample, seed)) for m, sample in picks.items()}
        if 'random' in wanted:
            scores['random'] = db.score(t, float(np.median(mean[t])))
        rows.append({'task': t, 'family': family, 'methods': scores, 'seconds': seconds, 'random_search_tried': tried,
                     'picks': picks})  # fmt: skip
        log.warning('seed %d task %d (%s): %s', seed, t, family,
                    ' '.join(f'{m} {s["percentile"]:.0f}' for m, s in scores.items()))  # fmt: skip
    return {'seed': seed, 'meta_seconds': meta_seconds, 'fit_architectures': archs, 'rows': rows}


def parameter_free_ops(sample: dict) -> int:
    """How many of a DARTS sample's operations (normal and reduction cell together) have no weights."""
    return sum(v in PARAMETER_FREE for k, v in sample.items() if '/op_' in k)


def database_parameter_free(db: ArchitectureDatabase) -> dict:
    """The database's random cells: their parameter-free operation counts (mean, range), and per family the mean
    over held-out tasks of the Spearman between that count and the seed-averaged accuracy."""
    counts = np.array([parameter_free_ops(a) for a in db.architectures])
    mean, out = db.mean_accuracy(), {'mean': float(counts.mean()), 'min': int(counts.min()), 'max': int(counts.max())}
    for family in db.spec.families:
        rhos = [stats.spearmanr(counts, mean[t]).statistic for t in db.task_indices(family=family, split='test')]
        out[f'spearman_{family}'] = float(np.mean(rhos))
    return out


def merge_runs(runs: list[dict]) -> list[dict]:
    """Runs of the same seed (e.g. one with ``--methods zero_shot_meta`` beside the others) as one run per seed,
    each task's methods, seconds and picks joined."""
    merged: dict[int, dict] = {}
    for run in runs:
        into = merged.setdefault(run['seed'], {**run, 'rows': [], 'meta_seconds': {}})
        into['meta_seconds'].update(run['meta_seconds'])
        by_task = {r['task']: r for r in into['rows']}
        for row in run['rows']:
            if row['task'] not in by_task:
                by_task[row['task']] = {**row, 'methods': {}, 'seconds': {}, 'picks': {}}
                into['rows'].append(by_task[row['task']])
            target = by_task[row['task']]
            for key in ('methods', 'seconds', 'picks'):
                target[key].update(row[key])
            if row.get('random_search_tried') is not None:
                target['random_search_tried'] = row['random_search_tried']
    return [merged[seed] for seed in sorted(merged)]


def summarise(runs: list[dict]) -> dict:
    """Per family and method: accuracy, percentile, paired differences to the random median, ``base_prior`` and
    ``base_no_prior`` (mean ± 95% CI over tasks x seeds), regret, per-seed percentile, search seconds. Only the
    methods every row holds."""
    rows = [(run['seed'], r) for run in runs for r in run['rows']]
    methods = [m for m in METHODS if all(m in r['methods'] for _, r in rows)]
    refs = [ref for ref in PAIRED if ref in methods]
    out: dict = {}
    for family in sorted({r['family'] for _, r in rows}) + ['all']:
        fam = [(s, r) for s, r in rows if family in ('all', r['family'])]
        entry: dict = {'tasks': len(fam), 'methods': methods}
        for m in methods:
            acc = [r['methods'][m]['accuracy'] for _, r in fam]
            paired = {ref: [a - r['methods'][ref]['accuracy'] for a, (_, r) in zip(acc, fam)] for ref in refs}
            entry[m] = {
                'accuracy': dict(zip(('mean', 'ci95'), mean_ci(acc))),
                'percentile': dict(zip(('mean', 'ci95'), mean_ci([r['methods'][m]['percentile'] for _, r in fam]))),
                **{f'minus_{ref}': dict(zip(('mean', 'ci95'), mean_ci(d))) for ref, d in paired.items()},
                'regret': float(np.mean([r['methods'][m]['regret'] for _, r in fam])),
                'percentile_per_seed': {
                    str(s): float(np.mean([r['methods'][m]['percentile'] for s2, r in fam if s2 == s]))
                    for s in sorted({s for s, _ in fam})
                },
                'seconds': float(np.mean([r['seconds'].get(m, 0.0) for _, r in fam])),
            }
            if all(m in r['picks'] for _, r in fam):
                entry[m]['parameter_free_ops'] = float(np.mean([parameter_free_ops(r['picks'][m]) for _, r in fam]))
        tried = [r['random_search_tried'] for _, r in fam if r.get('random_search_tried') is not None]
        entry['random_search_tried'] = float(np.mean(tried)) if tried else None
        out[family] = entry
    return out


def main(argv=None) -> dict:
    args = parse_args(argv)
    quiet()
    torch.set_num_threads(args.threads)
    if args.merge:
        return write_summary(args, [json.loads(p.read_text()) for p in args.merge])
    db = load_database(args.database)
    truth = GroundTruth(db)
    runs = [run_seed(db, args, seed, truth) for seed in args.seeds]
    return write_summary(args, [{'settings': settings_of(args), 'database': db.spec.as_dict(), 'runs': runs}])


def write_summary(args: argparse.Namespace, parts: list[dict]) -> dict:
    runs = merge_runs([run for part in parts for run in part['runs']])
    summary = summarise(runs)
    database = database_parameter_free(load_database(args.database))
    for family, entry in summary.items():
        pct = {m: entry[m]['percentile'] for m in entry['methods']}
        line = '  '.join(f'{m} {p["mean"]:.0f}±{p["ci95"]:.0f}' for m, p in pct.items())
        print(f'{family:8s} pct: {line}', flush=True)
    result = {
        'settings': [part['settings'] for part in parts],
        'merged': [str(p) for p in args.merge] if args.merge else None,
        'database': parts[0]['database'],
        'summary': summary,
        'database_parameter_free_ops': database,
        'runs': runs,
    }
    write_json_result(args.output, result)
    write_markdown_result(args.output.with_suffix('.md'), markdown(summary, len(runs), database))
    return result


def markdown(summary: dict, seeds: int, database: dict) -> str:
    """One table per family: each method's percentile (and at how many seeds its mean is >= 90), its paired
    differences to the random median, to BASE from the prior and to BASE without one, regret, seconds and the
    parameter-free operations of its picks (of 16)."""
    lines = [
        '# NAS methods scored on the ground-truth database',
        '',
        '<!-- --8<-- [start:body] -->',  # what the docs include (MkDocs snippet section)
        f"The database's random cells have {database['mean']:.1f} parameter-free operations of 16 on average "
        f'({database["min"]}–{database["max"]}); Spearman of that count with accuracy on held-out tasks: '
        + ', '.join(f'{k.removeprefix("spearman_")} {v:+.2f}' for k, v in database.items() if k.startswith('spearman_'))
        + '.',
        '',
    ]
    for family, entry in summary.items():
        tried = entry['random_search_tried']
        note = f'; random search tried {tried:.1f} cells on average' if tried else ''
        lines += [
            f'#### {family} ({entry["tasks"]} task x seed pairs, {seeds} seeds{note})',
            '',
            '| method | percentile | top-10% at seeds | '
            + ' | '.join(PAIRED_LABELS[ref] for ref in PAIRED)
            + ' | regret | seconds | parameter-free ops |',
            '|' + '---|' * (6 + len(PAIRED)),
        ]
        for m in entry['methods']:
            e = entry[m]
            diff = [f'{d["mean"]:+.3f} ± {d["ci95"]:.3f}' if (d := e.get(f'minus_{ref}')) else '–' for ref in PAIRED]
            top = sum(v >= 90 for v in e['percentile_per_seed'].values())
            lines.append(
                f'| {m} | {e["percentile"]["mean"]:.0f} ± {e["percentile"]["ci95"]:.0f} | {top}/{seeds} | '
                + ' | '.join(diff)
                + f' | {e["regret"]:.3f} | {e["seconds"]:.1f} | '
                + (f'{e["parameter_free_ops"]:.1f} |' if 'parameter_free_ops' in e else '– |')
            )
        lines.append('')
    lines.append('<!-- --8<-- [end:body] -->')
    return '\n'.join(lines)


if __name__ == '__main__':
    main()
