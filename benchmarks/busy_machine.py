"""The demo's meta-training on a busy machine: idle, beside one busy single-thread process and beside two, one run.

One command (run it alone on the machine: every other process is part of the measurement)::

    python -m benchmarks.busy_machine                        # nni-base's thread default and 2 threads, 0/1/2 busy
    python -m benchmarks.busy_machine --variants default --repeats 3
    python -m benchmarks.busy_machine --smoke                # one meta-step, to check the script (not a result)

Each measurement is a fresh process that meta-trains as ``make demo`` does: ``examples/quickstart.py``'s settings
(its own ``parse_args`` defaults: texture family, 16 px, 5-way 20-shot, width 8, 4 cells, 3 x 10 meta-steps of 2
tasks, 10 inner steps; its ``--threads`` when given), built by ``benchmarks.common.meta_train`` (no CSV
logs or progress bar), timed around ``NasExperiment.run()``. Beside it run 0, 1 or 2 busy processes (a pure-Python
loop: one thread each), started before it and stopped after. ``OMP_NUM_THREADS`` is removed from the children's
environment, so nni-base's own rule decides. Variants:

* ``default``: nni-base's rule (one torch thread in its CPU fits unless the user chose; ``nni_base.callbacks``);
* a number N: ``NNI_BASE_THREADS=N``, e.g. ``2``: what the demo ran with before the rule, on a 2-core machine.

The variants and busy counts interleave over ``--repeats`` rounds. Writes ``benchmarks/results/busy_machine.{json,md}``
(``--smoke``: a temporary folder): seconds, their medians, and each median against the variant's idle one. Target
(issue 36): beside one busy process at most 1.5x the idle time, and idle not more than 10% slower than 2 threads.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS, ROOT, write_json_result, write_markdown_result

__all__ = ['main', 'meta_train_as_the_demo', 'quickstart_args']

#: A busy process: one thread that never sleeps (what a build step or a second Python job does to a core).
BUSY = 'while True:\n    pass\n'
#: The smoke check's demo arguments: one meta-step of one task, one inner step.
SMOKE_ARGS = ['--meta-epochs', '1', '--steps-per-epoch', '1', '--tasks-per-step', '1', '--inner-steps', '1']


def quickstart_args(argv: list[str]) -> argparse.Namespace:
    """``examples/quickstart.py``'s arguments (its own parser and defaults), ``argv`` on top."""
    spec = importlib.util.spec_from_file_location('quickstart', ROOT / 'examples' / 'quickstart.py')
    assert spec is not None and spec.loader is not None
    quickstart = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(quickstart)
    return quickstart.parse_args(argv)


def meta_train_as_the_demo(argv: list[str], prior: Path) -> dict[str, Any]:
    """Meta-train as the demo does (``argv``: more quickstart arguments), writing ``prior``; seconds and threads."""
    import torch

    from benchmarks.common import meta_train
    from nni_base import DartsTaskSpace, MetaTrainingConfig, TaskDistribution
    from nni_base.callbacks import fit_threads
    from nni_base.data.families import family_splits

    args = quickstart_args(['--output-dir', str(prior.parent), *argv])
    if args.threads is not None:  # as quickstart.main does
        os.environ['NNI_BASE_THREADS'] = str(args.threads)
        torch.set_num_threads(args.threads)
    splits = family_splits(args.family, image_size=16, images_per_class=args.images_per_class, seed=args.seed)
    train = TaskDistribution(splits['train'], args.ways, args.shots, args.queries, name=f'{args.family}-train')
    heldout = TaskDistribution(splits['test'], args.ways, args.shots, args.queries, name=f'{args.family}-heldout')
    space = DartsTaskSpace(width=args.width, num_cells=args.num_cells, num_classes=args.ways)
    before = torch.get_num_threads()
    threads = fit_threads('cpu', before) or before  # what nni-base's fit will use
    _, seconds = meta_train(
        space,
        train,
        prior,
        tasks_per_step=args.tasks_per_step,
        steps_per_epoch=args.steps_per_epoch,
        max_epochs=args.meta_epochs,
        seed=args.seed,
        val=heldout,
        evaluator_kwargs={'val_episodes': 2},
        inner_steps=args.inner_steps,
        meta_training=MetaTrainingConfig(inner_batch_size=args.inner_batch_size),
    )
    return {'seconds': seconds, 'fit_threads': threads, 'threads_outside_fit': before}


def _child_env(variant: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ('OMP_NUM_THREADS', 'NNI_BASE_THREADS')}
    if variant != 'default':
        env['NNI_BASE_THREADS'] = variant
    return {**env, 'PYTHONPATH': str(ROOT)}


def measure(variant: str, busy: int, demo_argv: list[str], work: Path) -> dict[str, Any]:
    """One meta-training child beside ``busy`` busy processes; its result and the load when it started."""
    hogs = [subprocess.Popen([sys.executable, '-c', BUSY]) for _ in range(busy)]
    try:
        time.sleep(2.0 if busy else 0.0)  # the hogs are on the cores before the child starts
        load = os.getloadavg()[0] if hasattr(os, 'getloadavg') else None
        prior = work / f'{variant}_{busy}_{time.monotonic_ns()}' / 'prior.pt'
        prior.parent.mkdir(parents=True)
        child = subprocess.run(
            [sys.executable, '-m', 'benchmarks.busy_machine', '--child', json.dumps(demo_argv), str(prior)],
            cwd=ROOT,
            env=_child_env(variant),
            capture_output=True,
            text=True,
            timeout=7200,
        )
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    line = next((ln for ln in child.stdout.splitlines() if ln.startswith('RESULT ')), None)
    if child.returncode != 0 or line is None:
        raise RuntimeError(f'the meta-training child failed (exit {child.returncode}): {child.stderr[-2000:]}')
    return {**json.loads(line[len('RESULT ') :]), 'load_at_start': load}


def _threads(runs: list[dict[str, Any]]) -> str:
    """The torch threads nni-base's fit ran on, in these runs (the rule decides per fit, after the busy processes
    started)."""
    counts = sorted({r['fit_threads'] for r in runs})
    return '/'.join(map(str, counts)) + (' thread' if counts == [1] else ' threads')


def _markdown(results: dict[str, Any]) -> str:
    med, ratio = results['median_seconds'], results['against_idle']
    busy_counts = results['busy_processes']
    head = ' | '.join(f'{b} busy' for b in busy_counts)
    lines = [
        "# The demo's meta-training on a busy machine",
        '',
        f'{results["settings"]}; median of {results["repeats"]} run(s) each. Seconds (x the same variant idle, '
        'torch threads of the fit):',
        '',
        f'| variant | {head} |',
        '|---|' + '---:|' * len(busy_counts),
    ]
    for variant in med:
        cells = ' | '.join(
            f'{med[variant][str(b)]:.1f} ({ratio[variant][str(b)]:.2f}x, {_threads(results["runs"][variant][str(b)])})'
            for b in busy_counts
        )
        lines.append(f'| {variant} | {cells} |')
    lines += ['', 'Target (issue 36): beside one busy process at most 1.5x idle; idle not >10% slower than 2 threads.']
    return '\n'.join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--variants', nargs='+', default=['default', '2'], help="'default' or a thread count N")
    parser.add_argument('--busy', type=int, nargs='+', default=[0, 1, 2], help='busy processes beside the run')
    parser.add_argument('--repeats', type=int, default=1)
    parser.add_argument('--smoke', action='store_true', help='one meta-step, into a temporary folder')
    parser.add_argument('--output-dir', type=Path, default=None)
    parser.add_argument('--child', nargs=2, metavar=('DEMO_ARGV', 'PRIOR'), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        result = meta_train_as_the_demo(json.loads(args.child[0]), Path(args.child[1]))
        print('RESULT ' + json.dumps(result), flush=True)
        return 0
    bad = [v for v in args.variants if v != 'default' and not (v.isdigit() and int(v) >= 1)]
    if bad or min(args.busy) < 0:
        parser.error(f"--variants takes 'default' or positive thread counts, --busy counts from 0 (got {bad})")
    demo_argv = SMOKE_ARGS if args.smoke else []
    work = Path(tempfile.mkdtemp(prefix='busy_machine_'))
    out = args.output_dir or (work / 'results' if args.smoke else RESULTS)
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {v: {str(b): [] for b in args.busy} for v in args.variants}
    for r in range(args.repeats):
        for variant in args.variants:
            for busy in args.busy:
                result = measure(variant, busy, demo_argv, work)
                runs[variant][str(busy)].append(result)
                print(f'round {r + 1}, {variant}, {busy} busy: {result["seconds"]:.1f} s', flush=True)
    median = {v: {b: statistics.median(x['seconds'] for x in rs) for b, rs in per.items()} for v, per in runs.items()}
    idle = {v: median[v].get('0') for v in median}
    results: dict[str, Any] = {
        'settings': "examples/quickstart.py's meta-training"
        + (f' with {" ".join(demo_argv)} (smoke check, not a result)' if args.smoke else ' at its defaults'),
        'variants': args.variants,
        'busy_processes': args.busy,
        'repeats': args.repeats,
        'runs': runs,
        'median_seconds': median,
        'against_idle': {
            v: {b: s / idle[v] if idle[v] else float('nan') for b, s in median[v].items()} for v in median
        },
    }
    write_json_result(out / 'busy_machine.json', results)
    write_markdown_result(out / 'busy_machine.md', _markdown(results))
    print(f'wrote {out / "busy_machine.json"} and {out / "busy_machine.md"}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
