"""How a prior's value grows with meta-training: adaptation from a prior after 30 / 100 / 300 meta-steps against the
same adaptation from an un-meta-trained supernet, on families the prior never saw (leave-one-family-out) and, for
the prior meta-trained on every family (the shipped one's recipe), on every family's held-out classes.

Each prior is :func:`nni_base.cli.shipped_prior.meta_train_on_families` (what ``python -m nni_base.cli.shipped_prior``
runs), one run per (left-out family, seed) whose snapshots are the budgets. Its value on a task is the query accuracy
after ``--adapt-steps`` steps of BASE's adaptation (:func:`nni_base.api.adaptation_accuracy`: the step
``BaseStrategy(prior=...)`` takes under NNI's ``Classification``; 20 support images per class, batches of 32, 50
queries per class, the database's tasks) minus the same from the control supernet with the same seed, paired by task.

    python -m benchmarks.prior_budget --leave-out shapes scenes noisy_digits --all-families --seeds 0

Writes ``benchmarks/results/prior_budget.{json,md}``; ``--merge`` summarises several runs' JSON files.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import torch

from benchmarks.common import RESULTS, quiet, write_json_result, write_markdown_result
from nni_base import BaseStrategy, TaskDistribution
from nni_base.api import adaptation_accuracy, build_supernet
from nni_base.cli.shipped_prior import meta_train_on_families
from nni_base.database.spec import DATABASE_SPECS
from nni_base.tasks import sample_tasks
from nni_base.tasks.metrics import mean_ci

log = logging.getLogger('benchmarks.prior_budget')
SPEC = DATABASE_SPECS[2]
ALL = 'all families'


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--leave-out', nargs='*', default=list(SPEC.families), help='families for LOFO priors')
    p.add_argument('--all-families', action='store_true', help='also the prior of every family, in-family')
    p.add_argument('--budgets', type=int, nargs='+', default=[30, 100, 300], help='meta-steps (multiples of 10)')
    p.add_argument('--seeds', type=int, nargs='+', default=[0])
    p.add_argument('--tasks', type=int, default=8, help='held-out tasks per family')
    p.add_argument('--adapt-steps', type=int, default=30)
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--work-dir', type=Path, default=Path('/tmp/nni_base_prior_budget'))
    p.add_argument('--output', type=Path, default=RESULTS / 'prior_budget.json')
    p.add_argument('--merge', type=Path, nargs='+', default=None, help='summarise these runs into --output')
    return p.parse_args(argv)


def held_out_tasks(family: str, count: int, seed: int) -> list:
    """Tasks of ``family``'s held-out classes, as the database draws its tasks (ways, shots, queries)."""
    test = SPEC.family_splits(family)['test']
    return sample_tasks(TaskDistribution(test, SPEC.ways, SPEC.shots, SPEC.queries), count, seed=10_000 + seed)


def accuracy_after(prior: Path | None, tasks: list, args, seed: int) -> list[float]:
    strategy = BaseStrategy(prior=prior, seed=seed) if prior is not None else BaseStrategy(seed=seed)
    torch.manual_seed(seed)
    supernet = build_supernet(SPEC.space(), strategy)
    return adaptation_accuracy(supernet, tasks, args.adapt_steps, seed=seed)['per_task_after']


def run_one(left_out: str | None, seed: int, args) -> dict:
    """One meta-training run (without ``left_out``, or on every family) and its budgets' paired differences."""
    families = [f for f in SPEC.families if f != left_out]
    name = left_out or 'all'
    work = args.work_dir / f'{name}_seed{seed}'
    work.mkdir(parents=True, exist_ok=True)
    snapshots = {b: work / f'prior_{b}.pt' for b in args.budgets}
    start = time.perf_counter()
    seconds = meta_train_on_families(
        work / 'prior.pt', families=families, meta_steps=max(args.budgets), seed=seed, snapshots=snapshots
    )
    log.warning('%s seed %d: meta-trained %d steps in %.0f s', name, seed, max(args.budgets), seconds)
    evaluated = [left_out] if left_out else list(SPEC.families)
    rows = {}
    for family in evaluated:
        tasks = held_out_tasks(family, args.tasks, seed)
        control = accuracy_after(None, tasks, args, seed)
        rows[family] = {'no_prior': control}
        for budget, path in snapshots.items():
            rows[family][str(budget)] = accuracy_after(path, tasks, args, seed)
    return {
        'left_out': left_out,
        'seed': seed,
        'meta_seconds': round(seconds, 1),
        'seconds': round(time.perf_counter() - start, 1),
        'rows': rows,
    }


def summarise(runs: list[dict], budgets: list[int]) -> dict:
    """Per (setting, family, budget): the prior's accuracy minus no prior's, mean ± 95% CI over tasks x seeds."""
    table: dict = {}
    for run in runs:
        setting = 'leave-one-family-out' if run['left_out'] else ALL
        for family, row in run['rows'].items():
            cell = table.setdefault(setting, {}).setdefault(family, {str(b): [] for b in budgets} | {'no_prior': []})
            cell['no_prior'] += row['no_prior']
            for b in budgets:
                cell[str(b)] += [a - c for a, c in zip(row[str(b)], row['no_prior'])]
    return {
        setting: {family: {k: mean_ci(v) for k, v in cells.items() if v} for family, cells in families.items()}
        for setting, families in table.items()
    }


def markdown(summary: dict, runs: list[dict], args) -> str:
    budgets = [str(b) for b in args.budgets]
    lines = [
        "# A prior's value against its meta-training budget",
        '',
        f'Query accuracy after {args.adapt_steps} adaptation steps from the prior minus the same from an '
        'un-meta-trained supernet (paired by task, mean ± 95% CI over tasks x seeds); "no prior" is the control\'s '
        'own accuracy. Meta-training seconds per run: '
        + ', '.join(f'{r["left_out"] or "all"} {r["meta_seconds"]:.0f}' for r in runs)
        + '.',
    ]
    lines += ['', '<!-- --8<-- [start:table] -->']
    for setting, families in summary.items():
        lines += ['', f'**{setting}**', '', '| family | no prior | ' + ' | '.join(f'{b} steps' for b in budgets) + ' |']
        lines.append('|---|---|' + '---|' * len(budgets))
        for family, cells in families.items():
            control = cells['no_prior']
            diffs = [cells[b] for b in budgets]
            lines.append(
                f'| {family} | {control[0]:.3f} | ' + ' | '.join(f'{m:+.3f} ± {h:.3f}' for m, h in diffs) + ' |'
            )
    lines += ['', '<!-- --8<-- [end:table] -->']
    return '\n'.join(lines)


def main(argv=None) -> None:
    args = parse_args(argv)
    quiet()
    torch.set_num_threads(args.threads)
    if args.merge:
        runs = [r for path in args.merge for r in json.loads(path.read_text())['runs']]
    else:
        jobs = [(f, s) for s in args.seeds for f in args.leave_out] + (
            [(None, s) for s in args.seeds] if args.all_families else []
        )
        runs = [run_one(f, s, args) for f, s in jobs]
    summary = summarise(runs, args.budgets)
    write_json_result(
        args.output,
        {
            'settings': vars(args) | {'work_dir': str(args.work_dir), 'output': str(args.output), 'merge': None},
            'runs': runs,
            'summary': summary,
        },
    )
    write_markdown_result(args.output.with_suffix('.md'), markdown(summary, runs, args))


if __name__ == '__main__':
    main()
