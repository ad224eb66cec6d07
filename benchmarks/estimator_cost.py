"""What the α estimator costs per step: paired (default) vs gate-only straight-through, same supernet and batch.

One sampled forward + backward, batch 32, median of 10 steps after 2 warm-up, torch threads 2:

    python -m benchmarks.estimator_cost
"""

from __future__ import annotations

import logging
import statistics
import time
import warnings

import torch

from benchmarks.common import provenance_line
from nni_base import BaseStrategy, DartsTaskSpace
from nni_base.api import build_supernet

VARIANTS = {
    'paired + pool normalisation (default)': {},
    'paired': {'pool_batchnorm': False},
    'straight_through (before)': {'alpha_estimator': 'straight_through', 'pool_batchnorm': False},
}


def step_ms(strategy: BaseStrategy, size: int, width: int, cells: int, steps: int = 12) -> float:
    torch.manual_seed(0)
    supernet = build_supernet(DartsTaskSpace(width=width, num_cells=cells, num_classes=5), strategy)
    x, y = torch.randn(32, 3, size, size), torch.randint(0, 5, (32,))
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        supernet.resample()
        loss, _ = supernet.model_loss(x, y)
        loss.backward()
        times.append(time.perf_counter() - start)
    return statistics.median(times[2:]) * 1000


def main() -> None:
    warnings.filterwarnings('ignore')
    logging.getLogger('nni').setLevel(logging.ERROR)
    torch.set_num_threads(2)
    for size, width, cells in [(16, 8, 4), (32, 16, 5)]:
        row = {name: step_ms(BaseStrategy(**kw), size, width, cells) for name, kw in VARIANTS.items()}
        print(f'{size}x{size}, width {width}, {cells} cells: ' + ', '.join(f'{k} {v:.0f} ms' for k, v in row.items()))

    print(provenance_line())


if __name__ == '__main__':
    main()
