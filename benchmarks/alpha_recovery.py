"""Does the prior's α learn the known answer, and does the prior help? Evidence per task family.

For each family (:mod:`benchmarks.known_answer` gives its exhaustive ranking) and each seed:

1. meta-train a prior on the family's meta-train classes through ``NasExperiment`` +
   :class:`~nni_base.BaseStrategy` at the library's defaults (CSV log: α concentration per meta-step);
2. read α: per cell type the mean probability of each operation over the edges; is the top one the
   family's winner, Kendall τ against the measured accuracies, mean max probability per edge
   (uniform: 1/8); the derived cell of every seed (stability);
3. (first seed) the derived cell against 10 random cells of the space, each trained from scratch
   on the same held-out tasks (mean ± 95% CI);
4. (first seed) paper Fig. 4 at CPU scale: on held-out tasks, adaptation from the prior with α
   adapting (the default), with α frozen at the prior, and the same procedure from an
   un-meta-trained supernet; query accuracy of the derived cell against steps and wall time (clock
   stopped while scoring). Beside them NNI's GumbelDARTS searching each task from scratch for
   ``--gumbel-steps`` steps (its ``training_step``: an architecture and a weight pass, Adam), scored on
   its supernet: time to accuracy against NNI's own search.

    python -m benchmarks.alpha_recovery --families peaks texture --meta-steps 80 --heldout-tasks 10 \
        --output-dir benchmarks/results/alpha_recovery_80steps
    python -m benchmarks.report_prior    # every alpha_recovery*/results.json against known_answer.json
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np
import torch
from pytorch_lightning.loggers import CSVLogger

from benchmarks.baselines import nni_method
from benchmarks.common import family_data, meta_train, quiet, settings_of, space_of, write_json_result
from nni_base import BaseStrategy, TaskDistribution
from nni_base.api import build_supernet, sample_tasks
from nni_base.search.adaptation import TaskAdapter
from nni_base.search.evaluation import DARTS_OPS, kendall_tau, mean_ci, train_on_task
from nni_base.search.top_k import darts_cell_shapes, random_architecture
from nni_base.viz.plotting import plot_prior

DARTS_SHAPES = darts_cell_shapes()


def alpha_summary(alphas: dict[str, torch.Tensor], known: dict | None) -> dict:
    out = {}
    for label, alpha in alphas.items():
        probs = torch.softmax(alpha.detach().float(), -1)
        per_op = probs[:, : len(DARTS_OPS)].mean(0).tolist()
        top = DARTS_OPS[int(np.argmax(per_op))]
        out[label] = {
            'per_op': dict(zip(DARTS_OPS, per_op)),
            'top_op': top,
            'mean_max_prob': float(probs.max(-1).values.mean()),
        }
        if known is not None:  # else benchmarks.report_prior compares once the known answers exist
            acc = [known['ops'][op]['mean'] for op in DARTS_OPS]
            out[label].update(top_is_winner=top == known['winner'], kendall_tau=kendall_tau(per_op, acc))
    return out


def meta_train_family(name: str, args, seed: int, out: Path) -> tuple[BaseStrategy, float, Path]:
    tasks = TaskDistribution(
        family_data(name, args.image_size)['train'], args.ways, args.shots, args.queries, name=name
    )
    logger = CSVLogger(out / 'logs', name=f'{name}-seed{seed}')  # the alpha concentration per meta-step
    strategy, seconds = meta_train(
        space_of(args),
        tasks,
        out / f'{name}-seed{seed}.pt',
        tasks_per_step=args.tasks_per_step,
        steps_per_epoch=args.meta_steps,
        seed=seed,
        evaluator_kwargs={'logger': logger, 'log_every_n_steps': 1},
        inner_steps=args.inner_steps,
        inner_batch_size=args.inner_batch_size,
        **args.strategy,
    )
    return strategy, seconds, Path(logger.log_dir) / 'metrics.csv'


def concentration_curve(metrics_csv: Path) -> dict[str, list[float]]:
    import csv

    curves: dict[str, list[float]] = {}
    with open(metrics_csv) as f:
        for row in csv.DictReader(f):
            for key, value in row.items():
                if key.startswith('alpha_max_prob/') and value:
                    curves.setdefault(key.split('/')[1], []).append(float(value))
    return curves


def cells_vs_random(sample: dict, tasks, args) -> dict:
    rng = random.Random(args.seeds[0])
    candidates = {
        'derived': sample,
        **{f'random{i}': random_architecture(DARTS_SHAPES, rng) for i in range(args.random_cells)},
    }
    acc = {}
    for name, cell in candidates.items():
        acc[name] = []
        for t, task in enumerate(tasks):
            torch.manual_seed(t)
            acc[name].append(train_on_task(space_of(args).freeze(cell), task, args.train_steps, seed=t))
    randoms = sorted((k for k in acc if k != 'derived'), key=lambda k: np.mean(acc[k]))
    median = randoms[len(randoms) // 2]
    return {
        'derived': dict(zip(('mean', 'ci95'), mean_ci(acc['derived']))),
        'random_means': [float(np.mean(acc[k])) for k in randoms],
        'random_median': float(np.median([np.mean(acc[k]) for k in randoms])),
        'random_median_cell_ci95': mean_ci(acc[median])[1],
        # per task, the derived cell minus the median random cell (same task, same seed): the paired test
        'paired_diff_to_median_cell': dict(zip(('mean', 'ci95'), mean_ci(np.subtract(acc['derived'], acc[median])))),
        'per_task': acc,
    }


def adaptation_curves(prior: Path, tasks, args) -> dict:
    checkpoints = sorted({0, *range(args.adapt_every, args.adapt_steps + 1, args.adapt_every)})
    curves = {}
    for condition in ('adapted', 'frozen_alpha', 'scratch'):
        per_task, seconds = [], []
        for t, task in enumerate(tasks):
            torch.manual_seed(t)
            strategy = BaseStrategy(
                prior=None if condition == 'scratch' else prior, seed=t, inner_batch_size=args.inner_batch_size
            )
            adapter = TaskAdapter(build_supernet(space_of(args), strategy), freeze_alpha=condition == 'frozen_alpha')
            accs, clock = _run_curve(adapter.step, adapter.accuracy, task, args.adapt_steps, checkpoints, args, t)
            per_task.append(accs)
            seconds.append(clock)
        curves[condition] = _curve(checkpoints, per_task, seconds)
    if args.gumbel_steps:
        gumbel_checkpoints = sorted({0, *range(args.adapt_every, args.gumbel_steps + 1, args.adapt_every)})
        per_task, seconds = [], []
        for t, task in enumerate(tasks[: args.gumbel_tasks]):  # dense supernet: ~10x a sampled step
            torch.manual_seed(t)
            method = nni_method('GumbelDARTS', 'gumbel', space_of(args), same_work=False)
            accs, clock = _run_curve(method.step, method.accuracy, task, args.gumbel_steps, gumbel_checkpoints, args, t)
            per_task.append(accs)
            seconds.append(clock)
        curves['gumbel_darts'] = _curve(gumbel_checkpoints, per_task, seconds)
    return curves


def _run_curve(step, accuracy, task, steps: int, checkpoints: list[int], args, seed: int):
    """Mini-batch steps on the support set; query accuracy and elapsed step time at the checkpoints."""
    gen = torch.Generator().manual_seed(seed)
    accs, clock, elapsed = [], [], 0.0
    for s in range(steps + 1):
        if s in checkpoints:
            accs.append(accuracy(task.query_x, task.query_y))
            clock.append(elapsed)
        if s < steps:
            idx = torch.randperm(len(task.support_y), generator=gen)[: args.inner_batch_size]
            start = time.perf_counter()
            step(task.support_x[idx], task.support_y[idx])
            elapsed += time.perf_counter() - start
    return accs, clock


def _curve(checkpoints: list[int], per_task: list, seconds: list) -> dict:
    arr = np.asarray(per_task)
    return {
        'steps': checkpoints,
        'mean': arr.mean(0).tolist(),
        'ci95': [mean_ci(arr[:, i])[1] for i in range(arr.shape[1])],
        'seconds': np.asarray(seconds).mean(0).tolist(),
        'per_task': per_task,
    }


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--known', type=Path, default=Path('benchmarks/results/known_answer.json'))
    p.add_argument('--families', nargs='+', default=None)
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    p.add_argument('--image-size', type=int, default=16)
    p.add_argument('--width', type=int, default=8)
    p.add_argument('--num-cells', type=int, default=4)
    p.add_argument('--ways', type=int, default=5)
    p.add_argument('--shots', type=int, default=20)
    p.add_argument('--queries', type=int, default=10)
    p.add_argument('--tasks-per-step', type=int, default=2)
    p.add_argument('--meta-steps', type=int, default=40)
    p.add_argument('--inner-steps', type=int, default=10)
    p.add_argument('--inner-batch-size', type=int, default=32)
    p.add_argument('--heldout-tasks', type=int, default=5)
    p.add_argument('--random-cells', type=int, default=10)
    p.add_argument('--train-steps', type=int, default=30)
    p.add_argument('--adapt-steps', type=int, default=30)
    p.add_argument('--adapt-every', type=int, default=5)
    p.add_argument(
        '--gumbel-steps',
        type=int,
        default=60,
        help='NNI GumbelDARTS steps per held-out task in the time-to-accuracy control (0: none)',
    )
    p.add_argument('--gumbel-tasks', type=int, default=5, help='held-out tasks (the first ones) GumbelDARTS runs on')
    p.add_argument('--strategy', type=json.loads, default={}, help='extra BaseStrategy kwargs as JSON')
    p.add_argument('--skip-controls', action='store_true', help='meta-train and read alpha only')
    p.add_argument(
        '--adaptation-only',
        action='store_true',
        help='recompute the adaptation control of the first seed from the priors in --output-dir',
    )
    p.add_argument(
        '--controls-only',
        action='store_true',
        help='recompute both controls (random cells, adaptation) of the first seed from --output-dir',
    )
    p.add_argument('--output-dir', type=Path, default=Path('benchmarks/results/alpha_recovery'))
    p.add_argument('--threads', type=int, default=None)
    args = p.parse_args(argv)
    quiet()
    if args.threads:
        torch.set_num_threads(args.threads)
    known = json.loads(args.known.read_text())['families'] if args.known.is_file() else {}
    out = args.output_dir
    out.mkdir(parents=True, exist_ok=True)
    settings = settings_of(args)
    results = {'settings': settings, 'families': {}}
    if args.adaptation_only or args.controls_only:
        results = json.loads((out / 'results.json').read_text())
        # what the controls ran with; --gumbel-steps 0 keeps the GumbelDARTS control already there (it does not
        # depend on the prior or on BASE's adaptation settings)
        keep_gumbel = args.adaptation_only and not args.gumbel_steps
        results['settings'].update(
            {k: settings[k] for k in _CONTROL_SETTINGS if not (keep_gumbel and k.startswith('gumbel'))}
        )
        for name, runs in results['families'].items():
            if args.families and name not in args.families:
                continue
            heldout = sample_tasks(
                TaskDistribution(
                    family_data(name, args.image_size)['test'], args.ways, args.shots, args.queries, name=name
                ),
                args.heldout_tasks,
                seed=10_000,
            )
            if args.controls_only:
                runs[0]['vs_random'] = cells_vs_random(runs[0]['derived_cell'], heldout, args)
                _print_vs_random(name, runs[0]['vs_random'])
            previous = runs[0].get('adaptation', {})
            runs[0]['adaptation'] = adaptation_curves(out / f'{name}-seed{runs[0]["seed"]}.pt', heldout, args)
            if keep_gumbel and 'gumbel_darts' in previous:
                runs[0]['adaptation']['gumbel_darts'] = previous['gumbel_darts']
            print(
                f'{name}: adaptation '
                + ', '.join(f'{k} {v["mean"][-1]:.3f}' for k, v in runs[0]['adaptation'].items()),
                flush=True,
            )
            write_json_result(out / 'results.json', results)
        return results
    for name in args.families or list(known) or ['peaks', 'texture', 'pairs', 'digits']:
        heldout = sample_tasks(
            TaskDistribution(
                family_data(name, args.image_size)['test'], args.ways, args.shots, args.queries, name=name
            ),
            args.heldout_tasks,
            seed=10_000,
        )
        runs = []
        for seed in args.seeds:
            strategy, seconds, csv_path = meta_train_family(name, args, seed, out)
            sample = strategy.export_sample()
            plot_prior(sample, strategy.export_probs(), out / f'{name}-seed{seed}.png')
            run = {
                'seed': seed,
                'meta_train_seconds': round(seconds, 1),
                'derived_cell': sample,
                'cells': alpha_summary(strategy.oneshot_module.alphas(), known.get(name)),
                'concentration': concentration_curve(csv_path),
            }
            for label, c in run['cells'].items():
                print(
                    f'{name} seed {seed} {label}: top {c["top_op"]} max-p {c["mean_max_prob"]:.3f} ({seconds:.0f} s) '
                    + ' '.join(f'{op[:7]}={v:.2f}' for op, v in c['per_op'].items()),
                    flush=True,
                )
            if seed == args.seeds[0] and not args.skip_controls:
                run['vs_random'] = cells_vs_random(sample, heldout, args)
                _print_vs_random(name, run['vs_random'])
                run['adaptation'] = adaptation_curves(out / f'{name}-seed{seed}.pt', heldout, args)
                print(
                    f'{name}: adaptation '
                    + ', '.join(f'{k} {v["mean"][-1]:.3f}' for k, v in run['adaptation'].items()),
                    flush=True,
                )
            runs.append(run)
            write_json_result(out / 'results.json', {**results, 'families': {**results['families'], name: runs}})
        results['families'][name] = runs
    write_json_result(out / 'results.json', results)
    return results


# Arguments of the controls only (not of meta-training): a controls-only rerun records them in results.json.
_CONTROL_SETTINGS = (
    'heldout_tasks',
    'random_cells',
    'train_steps',
    'adapt_steps',
    'adapt_every',
    'gumbel_steps',
    'gumbel_tasks',
)


def _print_vs_random(name: str, v: dict) -> None:
    d = v['paired_diff_to_median_cell']
    print(
        f'{name}: derived cell {v["derived"]["mean"]:.3f}±{v["derived"]["ci95"]:.3f} vs random median '
        f'{v["random_median"]:.3f}; paired vs the median cell {d["mean"]:+.3f}±{d["ci95"]:.3f}',
        flush=True,
    )


if __name__ == '__main__':
    main()
