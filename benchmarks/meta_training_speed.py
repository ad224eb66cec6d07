"""Meta-training's wall time at the README's defaults: this tree against an earlier commit, each speed-up by its part.

One command::

    python -m benchmarks.meta_training_speed [--before fc6eae7] [--repeats 2]

Each run is a fresh process meta-training through ``NasExperiment`` + ``EpisodicClassification`` at the library's
defaults (texture family, 16 px, 5-way 5-shot, ``DartsTaskSpace(width=8, num_cells=3)``, ``tasks_per_step=4,
steps_per_epoch=10, max_epochs=3``: 30 meta-steps and 3 validations of 8 episodes), timed around ``run()``, its
prior saved. The variants run one after another, interleaved over ``--repeats`` rounds:

* ``before``: the same script against ``--before`` (checked out with ``git worktree``), 2 threads;
* ``now, contiguous``: this tree with ``SupernetConfig(channels_last=False)``: the structure and inner-loop changes
  alone, whose prior must equal ``before``'s exactly;
* ``now``: this tree at its defaults (channels-last), 2 threads and 1 thread;
* a busy machine: two ``now`` runs at once, at 2 threads each and at 1 thread each.

Writes ``benchmarks/results/meta_training_speed.{json,md}``.
"""

from __future__ import annotations

import argparse
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

__all__ = ['CHILD', 'main', 'prior_difference']

#: The child: meta-training at the defaults, printing its seconds as JSON (public API only, so it runs on old trees).
CHILD = r"""
import json, sys, time, warnings, logging
warnings.filterwarnings('ignore'); logging.getLogger('nni').setLevel(logging.ERROR)
import torch
threads, out, layout = int(sys.argv[1]), sys.argv[2], sys.argv[3]
torch.set_num_threads(threads)
from nni.nas.experiment import NasExperiment
from nni_base import BaseStrategy, DartsTaskSpace, EpisodicClassification, TaskDistribution
from nni_base.data.families import family_splits
splits = family_splits('texture', image_size=16, images_per_class=60, seed=0)
train, val = TaskDistribution(splits['train'], 5, 5, 5), TaskDistribution(splits['test'], 5, 5, 5)
quiet = dict(logger=False, enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False)
evaluator = EpisodicClassification(train, val, tasks_per_step=4, steps_per_epoch=10, max_epochs=3, seed=0, **quiet)
options = {}
if layout != 'default':
    from nni_base.config_groups import SupernetConfig
    options['supernet'] = SupernetConfig(channels_last=layout == 'channels_last')
exp = NasExperiment(DartsTaskSpace(width=8, num_cells=3, num_classes=5), evaluator,
                    BaseStrategy(seed=0, save_prior_to=out, **options))
start = time.perf_counter()
exp.run()
seconds = time.perf_counter() - start
exp.stop()
print('RESULT ' + json.dumps({'seconds': seconds}))
"""


def run_children(tree: Path, runs: list[tuple[int, str, Path]]) -> list[float]:
    """Run one child per ``(threads, layout, prior path)`` at once from ``tree``; their seconds."""
    procs = [
        subprocess.Popen(
            [sys.executable, '-c', CHILD, str(threads), str(prior), layout],
            cwd=tree,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, 'PYTHONPATH': str(tree)},
        )
        for threads, layout, prior in runs
    ]
    seconds = []
    for proc in procs:
        out, _ = proc.communicate(timeout=3600)
        line = next((ln for ln in out.splitlines() if ln.startswith('RESULT ')), None)
        if proc.returncode != 0 or line is None:
            raise RuntimeError(f'a meta-training child failed (exit {proc.returncode}): {out[-2000:]}')
        seconds.append(json.loads(line[len('RESULT ') :])['seconds'])
    return seconds


def prior_difference(a: Path, b: Path) -> float:
    """Largest absolute difference between two priors' floating-point tensors (state dict and α)."""
    import torch

    pa, pb = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
    pairs = [(pa['state_dict'][k], pb['state_dict'][k]) for k in pa['state_dict']]
    pairs += [(pa['alpha'][k], pb['alpha'][k]) for k in pa['alpha']]
    return max(float((x.float() - y.float()).abs().max()) for x, y in pairs if x.is_floating_point())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--before', default='fc6eae7', help='the commit to compare with')
    parser.add_argument('--repeats', type=int, default=2)
    parser.add_argument('--output-dir', type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix='meta_speed_'))
    old_tree = work / 'before'
    subprocess.run(
        ['git', 'worktree', 'add', '--detach', str(old_tree), args.before], cwd=ROOT, check=True, capture_output=True
    )
    variants = {
        'before (2 threads)': (old_tree, 2, 'default'),
        'now, contiguous (2 threads)': (ROOT, 2, 'contiguous'),
        'now (2 threads)': (ROOT, 2, 'default'),
        'now (1 thread)': (ROOT, 1, 'default'),
    }
    samples: dict[str, list[float]] = {k: [] for k in variants}
    try:
        for r in range(args.repeats):
            for i, (name, (tree, threads, layout)) in enumerate(variants.items()):
                prior = work / f'variant{i}_round{r}.pt'
                seconds = run_children(tree, [(threads, layout, prior)])[0]
                samples[name].append(seconds)
                print(f'{name}: {seconds:.1f} s', flush=True)
        busy = {}
        for threads in (2, 1):
            pair = run_children(ROOT, [(threads, 'default', work / f'busy_{threads}_{i}.pt') for i in range(2)])
            busy[f'two at once, {threads} thread{"s" if threads > 1 else ""} each'] = pair
            print(f'two runs at once, {threads} threads each: {pair[0]:.1f} s / {pair[1]:.1f} s', flush=True)
        same_prior = prior_difference(work / 'variant0_round0.pt', work / 'variant1_round0.pt')
        layout_change = prior_difference(work / 'variant0_round0.pt', work / 'variant2_round0.pt')
    finally:
        subprocess.run(['git', 'worktree', 'remove', '--force', str(old_tree)], cwd=ROOT, capture_output=True)
    median = {k: statistics.median(v) for k, v in samples.items()}
    base = median['before (2 threads)']
    results: dict[str, Any] = {
        'before': args.before,
        'seconds': samples,
        'median_seconds': median,
        'speedup_over_before': {k: base / v for k, v in median.items()},
        'busy_machine_seconds': busy,
        'prior_max_abs_difference': {'now, contiguous vs before': same_prior, 'now vs before': layout_change},
        'settings': 'texture 16 px, 5-way 5-shot, width 8, 3 cells, tasks_per_step=4, steps_per_epoch=10, '
        'max_epochs=3, seed 0',
    }
    out = args.output_dir
    write_json_result(out / 'meta_training_speed.json', results)
    lines = [
        f'# Meta-training at the defaults: this tree against {args.before}',
        '',
        f'{results["settings"]}; median of {args.repeats} run(s) each, one process at a time.',
        '',
        '| variant | seconds | speed-up over before |',
        '|---|---:|---:|',
        *(f'| {k} | {median[k]:.1f} | {base / median[k]:.2f}x |' for k in median),
        '',
        '| busy machine | seconds (each run) |',
        '|---|---|',
        *(f'| {k} | {" / ".join(f"{s:.1f}" for s in v)} |' for k, v in busy.items()),
        '',
        f'Prior max |difference|: now (contiguous) vs before {same_prior:.3g}; now (channels-last) vs before '
        f'{layout_change:.3g} (channels-last changes the floating-point order of the convolutions).',
    ]
    write_markdown_result(out / 'meta_training_speed.md', '\n'.join(lines))
    print('\n'.join(lines))
    return 0


if __name__ == '__main__':
    started = time.perf_counter()
    code = main()
    print(f'{time.perf_counter() - started:.0f} s in all')
    raise SystemExit(code)
