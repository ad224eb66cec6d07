"""Step time against supernet size (BASE vs NNI GumbelDARTS), and meta-step throughput on 1 vs 2 processes.

One command::

    python -m benchmarks.step_curve --output-dir benchmarks/results/step_curve [--quick]

writes ``step_curve.json``, ``step_curve.md`` and ``step_curve.png``. Two measurements:

1. **Step time curve** (:func:`bench_curve`). From the base point ``3x8x8, width 8, 3 cells`` (the size of
   :mod:`benchmarks.run`) one knob at a time moves: width (4 ... 16), cells (3 ... 8), resolution (8 ... 32);
   plus the size users search at, ``3x32x32, width 16, 5 cells`` (CIFAR-like). At each point BASE's sparse inner
   step (``nni_base.search.loop.adapt``, one Gumbel sample, weights and alpha) and NNI GumbelDARTS's step doing
   the same work (one forward/backward, weight and architecture optimizer steps;
   :func:`benchmarks.baselines.nni_method`) run interleaved on the same random batch of 32; medians are
   reported. Step time does not depend on the pixel values, so the batch is random noise of the right shape.
2. **Meta-step throughput** (:func:`bench_throughput`): tasks per second of Reptile meta-training (8 tasks per
   meta-step, digits 5-way 5-shot, width 8, 3 cells) run by one process and by two DDP processes (gloo, launched
   as torchrun would), timed from the second meta-step's start to the end of training so that start-up does not
   count. Two processes can only go faster where there are two free devices (cores or GPUs).

Threads: one torch thread per process (``--threads``), recorded with the machine description and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks import baselines
from benchmarks.common import (
    RESULTS,
    ROOT,
    darts_space,
    episodic_evaluator,
    machine_info,
    run_experiment,
    save_figure,
    write_json_result,
    write_markdown_result,
)
from nni_base import BaseStrategy, Task
from nni_base.api import build_supernet
from nni_base.config_groups import SupernetConfig

__all__ = ['BASE_POINT', 'CIFAR_LIKE', 'curve_points', 'measure_point', 'bench_curve', 'bench_throughput', 'main']

BATCH = 32
WAYS = 5
#: (resolution, width, cells) of run.py's supernet, the curve's base point.
BASE_POINT = (8, 8, 3)
#: The size users search at: 3x32x32 images, width 16, 5 cells.
CIFAR_LIKE = (32, 16, 5)
#: The ratio of BASE's inner step to GumbelDARTS's step aimed for at the CIFAR-like size.
TARGET_RATIO = 0.15


def curve_points(widths: list[int], cells: list[int], resolutions: list[int]) -> list[dict[str, Any]]:
    """The points of the curve: one knob moved at a time from :data:`BASE_POINT`, then :data:`CIFAR_LIKE`."""
    r0, w0, c0 = BASE_POINT
    points = [{'axis': 'width', 'resolution': r0, 'width': w, 'cells': c0} for w in widths]
    points += [{'axis': 'cells', 'resolution': r0, 'width': w0, 'cells': c} for c in cells]
    points += [{'axis': 'resolution', 'resolution': r, 'width': w0, 'cells': c0} for r in resolutions]
    r, w, c = CIFAR_LIKE
    points.append({'axis': 'cifar_like', 'resolution': r, 'width': w, 'cells': c})
    return points


def measure_point(
    resolution: int,
    width: int,
    cells: int,
    *,
    repeats: int,
    warmup: int,
    seed: int = 0,
    batch: int = BATCH,
    device: str = 'cpu',
    precision: str = '32-true',
) -> dict[str, Any]:
    """Median ms per step of BASE (sparse inner step) and GumbelDARTS (same work) at one supernet size.

    BASE runs as ``BaseStrategy`` builds it (channels-last by default) and with ``channels_last=False``;
    GumbelDARTS as NNI runs it (contiguous) and channels-last, so that a ratio can be read at the same layout.
    ``precision='bf16-mixed'`` runs every step under bfloat16 autocast; on a GPU each step ends with a synchronise.
    """
    torch.manual_seed(seed)
    x = torch.randn(batch, 3, resolution, resolution, device=device)
    y = torch.randint(0, WAYS, (batch,), device=device)
    task = Task(x, y, x, y)

    def base_step(**options: Any):
        supernet = build_supernet(darts_space(width, cells, WAYS), BaseStrategy(seed=seed, **options)).to(device)
        supernet.set_temperature(1.0)
        state = supernet.model_state()
        return lambda: supernet.adapt(task, 1, state, where='step curve')

    def gumbel_step(channels_last: bool):
        method = baselines.nni_method(
            'GumbelDARTS',
            'gumbel',
            darts_space(width, cells, WAYS),
            same_work=True,
            device=device,
            channels_last=channels_last,
        )
        return lambda: method.step(x, y)

    # BASE at the defaults, with the straight-through estimator (what the paired estimator's runner-up forward
    # costs) and in the contiguous layout; GumbelDARTS in both layouts
    steps = {
        'BASE': base_step(),
        'BASE straight-through': base_step(supernet=SupernetConfig(alpha_estimator='straight_through')),
        'BASE contiguous': base_step(supernet=SupernetConfig(channels_last=False)),
        'GumbelDARTS': gumbel_step(False),
        'GumbelDARTS channels-last': gumbel_step(True),
    }
    autocast = torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=precision == 'bf16-mixed')
    cuda = torch.device(device).type == 'cuda'
    samples: dict[str, list[float]] = {k: [] for k in steps}
    for r in range(warmup + repeats):
        order = list(steps) if r % 2 == 0 else list(reversed(steps))
        for name in order:
            start = time.perf_counter()
            with autocast:
                steps[name]()
            if cuda:
                torch.cuda.synchronize()
            if r >= warmup:
                samples[name].append((time.perf_counter() - start) * 1e3)
    ms = {k: float(statistics.median(v)) for k, v in samples.items()}
    return {
        'resolution': resolution,
        'width': width,
        'cells': cells,
        'batch': batch,
        'device': device,
        'precision': precision,
        'ms': ms,
        'ms_all': samples,
        'ratio': ms['BASE'] / ms['GumbelDARTS'],
        'ratio_same_layout': ms['BASE'] / ms['GumbelDARTS channels-last'],
        'ratio_contiguous': ms['BASE contiguous'] / ms['GumbelDARTS'],
        'ratio_straight_through': ms['BASE straight-through'] / ms['GumbelDARTS'],
    }


def bench_curve(points: list[dict[str, Any]], *, repeats: int, warmup: int, log=print) -> list[dict[str, Any]]:
    """:func:`measure_point` at every point of :func:`curve_points`."""
    out = []
    for p in points:
        result = {
            'axis': p['axis'],
            **measure_point(p['resolution'], p['width'], p['cells'], repeats=repeats, warmup=warmup),
        }
        log(
            f'  {p["axis"]:>10} 3x{p["resolution"]}x{p["resolution"]} width {p["width"]} cells {p["cells"]}: '
            f'BASE {result["ms"]["BASE"]:.1f} ms (straight-through {result["ms"]["BASE straight-through"]:.1f}), '
            f'GumbelDARTS {result["ms"]["GumbelDARTS"]:.1f} ms, '
            f'ratio {result["ratio"]:.3f}',
            flush=True,
        )
        out.append(result)
    return out


# ---- meta-step throughput, 1 vs 2 processes ---------------------------------------------------------------------
def _throughput_child(out: Path, meta_steps: int, tasks_per_step: int, inner_steps: int) -> None:
    """One process of a throughput run (rank from the torchrun-style environment); rank 0 writes the timing."""
    import logging
    import warnings

    import pytorch_lightning as pl
    from pytorch_lightning.strategies import DDPStrategy

    from nni_base import TaskDistribution
    from nni_base.data import digits_splits

    warnings.filterwarnings('ignore')
    logging.getLogger('nni').setLevel(logging.ERROR)
    world_size = int(os.environ.get('WORLD_SIZE', '1'))

    class Clock(pl.Callback):
        def __init__(self) -> None:
            self.start: float | None = None

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if batch_idx == 1:  # the first meta-step pays for lazy initialisation
                self.start = time.perf_counter()

        def on_train_end(self, trainer, pl_module):
            if trainer.is_global_zero and self.start is not None:
                seconds = time.perf_counter() - self.start
                tasks = (meta_steps - 1) * tasks_per_step
                out.write_text(
                    json.dumps(
                        {'processes': world_size, 'seconds': seconds, 'tasks': tasks, 'tasks_per_s': tasks / seconds}
                    )
                )

    kwargs: dict[str, Any] = {'accelerator': 'cpu', 'devices': world_size}
    if world_size > 1:
        kwargs['strategy'] = DDPStrategy(process_group_backend='gloo')
    train = TaskDistribution(digits_splits()['train'], WAYS, 5, 5, name='digits-train')
    evaluator = episodic_evaluator(
        train, None, tasks_per_step=tasks_per_step, steps_per_epoch=meta_steps, seed=0, callbacks=[Clock()], **kwargs
    )
    _, w, c = BASE_POINT
    run_experiment(darts_space(w, c, WAYS), evaluator, BaseStrategy(inner_steps=inner_steps, seed=0))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _launch(processes: int, out: Path, args: list[str], threads: int) -> list[subprocess.Popen]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ('RANK', 'LOCAL_RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT')
    }
    env.update(PYTHONPATH=os.pathsep.join([str(ROOT), env.get('PYTHONPATH', '')]), OMP_NUM_THREADS=str(threads))
    port = _free_port()
    procs = []
    for rank in range(processes):
        rank_env = dict(env)
        if processes > 1:
            rank_env.update(
                RANK=str(rank),
                LOCAL_RANK=str(rank),
                WORLD_SIZE=str(processes),
                MASTER_ADDR='127.0.0.1',
                MASTER_PORT=str(port),
            )
        procs.append(
            subprocess.Popen(
                [sys.executable, '-m', 'benchmarks.step_curve', '--throughput-child', str(out), *args],
                env=rank_env,
                cwd=str(ROOT),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    return procs


def bench_throughput(
    meta_steps: int, tasks_per_step: int = 8, inner_steps: int = 2, threads: int = 1, timeout_s: float = 900
) -> dict[str, Any]:
    """Tasks per second of Reptile meta-training with 1 and with 2 processes (one after the other)."""
    args = [f'--meta-steps={meta_steps}', f'--tasks-per-step={tasks_per_step}', f'--inner-steps={inner_steps}']
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for processes in (1, 2):
            out = Path(tmp) / f'{processes}.json'
            procs = _launch(processes, out, args, threads)
            for p in procs:
                _, err = p.communicate(timeout=timeout_s)
                if p.returncode != 0:
                    raise RuntimeError(f'throughput run with {processes} process(es) failed:\n{err[-3000:]}')
            runs[processes] = json.loads(out.read_text())
    return {
        'meta_steps': meta_steps,
        'tasks_per_step': tasks_per_step,
        'inner_steps': inner_steps,
        'threads_per_process': threads,
        'runs': runs,
        'speedup': runs[2]['tasks_per_s'] / runs[1]['tasks_per_s'],
        'target_speedup': 1.6,
    }


# ---- output -------------------------------------------------------------------------------------------------------
def _load(values: Any) -> str:
    return '/'.join(f'{v:.1f}' for v in values) if values else 'unknown'


def _markdown(results: dict[str, Any]) -> str:
    info = results['machine']
    load = f'{_load(info["load_average_at_start"])} at start, {_load(info.get("load_average_at_end"))} at end'
    lines = [
        '# Step time against supernet size, and meta-step throughput',
        '',
        # docs/benchmarks.md includes everything below the title (MkDocs snippet section)
        '<!-- --8<-- [start:body] -->',
        f'Machine: {info["cpu"]} ({info["cpu_count"]} cores), torch {info["torch"]}, NNI {info["nni"]}, '
        f'torch threads {info["threads"]}, load average (1/5/15 min) {load}.',
        '',
    ]
    if 'curve' in results:
        lines += [
            f'#### Step time (batch {BATCH}, median of {results["repeats"]} interleaved rounds after '
            f'{results["warmup"]} warm-up)',
            '',
            'BASE runs channels-last (its default), GumbelDARTS as NNI runs it (contiguous); the last two columns '
            'compare both at one layout.',
            '',
            '| varied | image | width | cells | BASE ms | BASE straight-through ms | GumbelDARTS ms | '
            'BASE / GumbelDARTS | straight-through / GumbelDARTS | both channels-last | both contiguous |',
            '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
        ]
        nan = float('nan')
        for p in results['curve']:
            st = p['ms'].get('BASE straight-through', nan)
            lines.append(
                f'| {p["axis"]} | 3x{p["resolution"]}x{p["resolution"]} | {p["width"]} | {p["cells"]} | '
                f'{p["ms"]["BASE"]:.1f} | {st:.1f} | {p["ms"]["GumbelDARTS"]:.1f} | {p["ratio"]:.3f} | '
                f'{p.get("ratio_straight_through", nan):.3f} | {p.get("ratio_same_layout", nan):.3f} | '
                f'{p.get("ratio_contiguous", nan):.3f} |'
            )
        cifar = [p for p in results['curve'] if p['axis'] == 'cifar_like']
        if cifar:
            r = cifar[0]['ratio']
            lines += [
                '',
                f'**CIFAR-like size (3x32x32, width 16, 5 cells): BASE / GumbelDARTS = {r:.3f}** '
                f'(target <= {TARGET_RATIO}: {"met" if r <= TARGET_RATIO else "missed"}); with the '
                f'straight-through estimator {cifar[0].get("ratio_straight_through", float("nan")):.3f}.',
            ]
    if 'throughput' in results:
        t = results['throughput']
        lines += [
            '',
            f'#### Meta-step throughput (Reptile, {t["tasks_per_step"]} tasks per meta-step, '
            f'{t["inner_steps"]} inner steps, {t["threads_per_process"]} thread per process)',
            '',
            '| processes | tasks | seconds | tasks / s |',
            '|---:|---:|---:|---:|',
        ]
        for n, run in sorted(t['runs'].items()):
            lines.append(f'| {n} | {run["tasks"]} | {run["seconds"]:.2f} | {run["tasks_per_s"]:.2f} |')
        lines += [
            '',
            f'**2 processes / 1: {t["speedup"]:.2f}x** (target >= {t["target_speedup"]} where there are '
            f'two free devices; this machine had {info["cpu_count"]} cores, load average {load}).',
        ]
    lines.append('<!-- --8<-- [end:body] -->')
    return '\n'.join(lines)


def _plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    axes_names = [a for a in ('width', 'cells', 'resolution') if any(p['axis'] == a for p in results['curve'])]
    fig, axes = plt.subplots(1, len(axes_names), figsize=(4 * len(axes_names), 3.4), squeeze=False)
    for ax, name in zip(axes[0], axes_names):
        pts = [p for p in results['curve'] if p['axis'] == name]
        xs = [p[name] for p in pts]
        for method, style in (('BASE', 'o-'), ('BASE straight-through', 'o:'), ('GumbelDARTS', 's--')):
            if all(method in p['ms'] for p in pts):
                ax.plot(xs, [p['ms'][method] for p in pts], style, label=method)
        ax.set_xlabel(name if name != 'resolution' else 'image side (px)')
        ax.set_ylabel('ms / step (batch 32)')
        ax.set_yscale('log')
        ax.grid(alpha=0.3)
    axes[0][0].legend()
    fig.suptitle('Step time vs supernet size (one knob at a time from 3x8x8, width 8, 3 cells)')
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--output-dir', type=Path, default=RESULTS / 'step_curve')
    parser.add_argument('--quick', action='store_true', help='fewer points and rounds (a few minutes on 2 cores)')
    parser.add_argument('--threads', type=int, default=1, help='torch threads per process')
    parser.add_argument('--only-cifar-like', action='store_true', help='the curve at the CIFAR-like size only')
    parser.add_argument('--skip-curve', action='store_true')
    parser.add_argument('--skip-throughput', action='store_true')
    parser.add_argument('--throughput-child', type=Path, help=argparse.SUPPRESS)
    parser.add_argument('--meta-steps', type=int, default=None, help='meta-steps per throughput run')
    parser.add_argument('--tasks-per-step', type=int, default=8)
    parser.add_argument('--inner-steps', type=int, default=2)
    parser.add_argument('--render', action='store_true', help='rewrite the Markdown and PNG from the JSON only')
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.throughput_child:
        _throughput_child(args.throughput_child, args.meta_steps or 4, args.tasks_per_step, args.inner_steps)
        return 0
    out = args.output_dir
    if args.render:
        results = json.loads((out / 'step_curve.json').read_text())
        write_markdown_result(out / 'step_curve.md', _markdown(results))
        if 'curve' in results:
            _plot(results, out / 'step_curve.png')
        return 0
    quick = args.quick
    results: dict[str, Any] = {'machine': machine_info(), 'repeats': 3 if quick else 10, 'warmup': 1 if quick else 2}
    if not args.skip_curve:
        points = curve_points([4, 16], [5], [16, 32]) if quick else curve_points([4, 8, 12, 16], [3, 5, 8], [8, 16, 32])
        if args.only_cifar_like:
            points = [p for p in points if p['axis'] == 'cifar_like']
        print('step time curve ...', flush=True)
        results['curve'] = bench_curve(points, repeats=results['repeats'], warmup=results['warmup'])
    if not args.skip_throughput:
        print('meta-step throughput, 1 then 2 processes ...', flush=True)
        results['throughput'] = bench_throughput(
            args.meta_steps or (4 if quick else 11), args.tasks_per_step, args.inner_steps, args.threads
        )
    results['machine']['load_average_at_end'] = os.getloadavg()
    write_json_result(out / 'step_curve.json', results)
    write_markdown_result(out / 'step_curve.md', _markdown(results))
    if 'curve' in results:
        _plot(results, out / 'step_curve.png')
    print((out / 'step_curve.md').read_text())
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
