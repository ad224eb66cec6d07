"""Does ``torch.compile`` pay for BASE's sampled step on a CPU? Eager against every candidate operation compiled.

The sampled sub-network changes every step, so the whole cell cannot be one compiled graph without a recompile
per sample; what can be compiled once is each candidate operation (``nn.Module.compile``: fixed shapes, its
weights graph inputs). This times BASE's inner step (``supernet.adapt``, one step) at the meta-training defaults
(3x16x16, width 8, 3 cells, 25 support images) and at the CIFAR-like size (3x32x32, width 16, 5 cells, batch 32),
eager and compiled, interleaved, after ``--warmup`` steps in which the compiled operations are built (with a fresh
inductor cache unless ``--warm-cache``), and reports the warm-up seconds (compilation), the steady-state ms per step
and whether the first step's losses agree::

    python -m benchmarks.compile_ops --output benchmarks/results/compile_ops.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import RESULTS, darts_space, quiet, settings_of, write_json_result
from nni_base import BaseStrategy
from nni_base.api import build_supernet
from nni_base.tasks import Task

#: (name, resolution, width, cells, batch)
SIZES = (('meta_training_defaults', 16, 8, 3, 25), ('cifar_like', 32, 16, 5, 32))


def compile_operations(supernet: Any) -> int:
    """Compile every candidate operation of the supernet's cells in place; how many."""
    count = 0
    for cell in supernet.structure().cells:
        for node_ops in cell.ops:
            for ops in node_ops:
                for op in ops.values():
                    op.compile(dynamic=False)
                    count += 1
    return count


def measure(resolution: int, width: int, cells: int, batch: int, *, warmup: int, repeats: int) -> dict[str, Any]:
    torch.manual_seed(0)
    x, y = torch.randn(batch, 3, resolution, resolution), torch.randint(0, 5, (batch,))
    task = Task(x, y, x, y)
    supernets, ops = {}, 0
    for name in ('eager', 'compiled'):
        torch.manual_seed(0)
        supernets[name] = build_supernet(darts_space(width, cells, 5), BaseStrategy(seed=0))
        supernets[name].set_temperature(1.0)
    ops = compile_operations(supernets['compiled'])
    states = {k: s.model_state() for k, s in supernets.items()}
    seconds: dict[str, list[float]] = {k: [] for k in supernets}
    losses: dict[str, list[float]] = {k: [] for k in supernets}
    for r in range(warmup + repeats):
        for name in supernets if r % 2 == 0 else reversed(list(supernets)):
            torch.manual_seed(1000 + r)  # the same Gumbel samples for both
            start = time.perf_counter()
            loss = supernets[name].adapt(task, 1, states[name], where='compile probe')
            seconds[name].append(time.perf_counter() - start)
            losses[name].append(loss)
    steady = {k: 1e3 * statistics.median(v[warmup:]) for k, v in seconds.items()}
    return {
        'resolution': resolution,
        'width': width,
        'cells': cells,
        'batch': batch,
        'compiled_operations': ops,
        'seconds_per_step': seconds,
        'ms': steady,
        'compiled_over_eager': steady['compiled'] / steady['eager'],
        'warmup_seconds': {k: sum(v[:warmup]) for k, v in seconds.items()},
        # the first step starts from equal weights; later ones from weights trained apart by float rounding
        'first_step_loss_difference': abs(losses['eager'][0] - losses['compiled'][0]),
        'max_loss_difference': max(abs(a - b) for a, b in zip(losses['eager'], losses['compiled'])),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--warmup', type=int, default=20, help='steps in which compiled operations are built')
    p.add_argument('--repeats', type=int, default=10)
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--sizes', nargs='+', default=[s[0] for s in SIZES], choices=[s[0] for s in SIZES])
    p.add_argument(
        '--recompile-limit', type=int, default=None, help="raise dynamo's recompiles per function (default: torch's 8)"
    )
    p.add_argument('--warm-cache', action='store_true', help="reuse inductor's on-disk cache (default: a fresh one)")
    p.add_argument('--output', type=Path, default=RESULTS / 'compile_ops.json')
    args = p.parse_args(argv)
    if not args.warm_cache:  # what a user's first compiled run pays
        os.environ['TORCHINDUCTOR_CACHE_DIR'] = tempfile.mkdtemp(prefix='nni_base_inductor_')
    quiet()
    torch.set_num_threads(args.threads)
    if args.recompile_limit is not None:
        # an operation class's forward meets several shapes and both grad modes (the runner-up runs without grad):
        # past the limit dynamo runs it eagerly
        torch._dynamo.config.recompile_limit = args.recompile_limit
    result: dict[str, Any] = {'settings': settings_of(args), 'sizes': {}}
    for name, *size in SIZES:
        if name in args.sizes:
            result['sizes'][name] = row = measure(*size, warmup=args.warmup, repeats=args.repeats)
            print(
                f'{name}: eager {row["ms"]["eager"]:.0f} ms, compiled {row["ms"]["compiled"]:.0f} ms '
                f'({row["compiled_over_eager"]:.2f}x), compile {row["warmup_seconds"]["compiled"]:.0f} s over '
                f'{args.warmup} steps, first-step loss difference {row["first_step_loss_difference"]:.1e}',
                flush=True,
            )
    write_json_result(args.output, result)
    return result


if __name__ == '__main__':
    main()
