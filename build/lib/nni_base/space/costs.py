"""What an architecture costs to run: parameters, multiply-accumulates and CPU latency.

Where it sits
    Beside the model spaces: the ground-truth database stores these columns next to every architecture's accuracy
    (version 2), and a hardware-aware search reads them. Parameters and MACs are counted on the frozen network
    (:mod:`nni_base.space.macs`: convolutions and linear layers of one image, the NAS papers' convention). NNI
    3.0's ``FlopsParamsProfiler`` would be the natural counter, but its shape inference stops at the DARTS space's
    ``CellPostprocessor`` (no formula for it), so it cannot profile NNI's own DARTS cells. Latency is measured: the
    median wall time of one image's forward pass in eval mode on this machine's CPU with one torch thread,
    comparable between architectures measured on one machine, not between machines; :func:`machine_signature`
    records where.

    >>> costs = architecture_costs(DartsTaskSpace(width=8, num_cells=3, num_classes=5), samples, (3, 16, 16))
    >>> costs['params'][0], costs['macs'][0], costs['latency_ms'][0]
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .macs import count_macs, count_parameters

__all__ = ['architecture_costs', 'cpu_latency_ms', 'machine_signature']


def machine_signature() -> dict[str, Any]:
    """Where a latency was measured: processor, core count, platform, torch version."""
    return {
        'processor': platform.processor() or platform.machine(),
        'cpus': os.cpu_count(),
        'platform': platform.platform(),
        'torch': torch.__version__,
    }


@torch.no_grad()
def cpu_latency_ms(net: nn.Module, input_size: tuple[int, int, int], *, repeats: int = 30, warmup: int = 5) -> float:
    """Median milliseconds of one ``input_size`` image's forward pass, eval mode, one torch thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    was_training = net.training
    net.eval()
    x = torch.randn(1, *input_size)
    try:
        for _ in range(warmup):
            net(x)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            net(x)
            times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(before)
        net.train(was_training)
    return 1000.0 * statistics.median(times)


def architecture_costs(
    space: nn.Module,
    samples: Sequence[dict[str, Any]],
    input_size: tuple[int, int, int],
    *,
    latency: bool = True,
    repeats: int = 30,
) -> dict[str, Any]:
    """Per sample of ``space``: ``params``, ``macs`` (one image) and ``latency_ms`` (CPU), as lists in sample
    order, with the ``machine`` the latency was measured on (``latency=False``: no latency)."""
    costs: dict[str, Any] = {'params': [], 'macs': [], 'latency_ms': []}
    for sample in samples:
        net = space.freeze(sample).eval()
        costs['params'].append(count_parameters(net))
        costs['macs'].append(count_macs(net, input_size))
        if latency:
            costs['latency_ms'].append(round(cpu_latency_ms(net, input_size, repeats=repeats), 4))
    if latency:
        costs['machine'] = machine_signature()
    else:
        del costs['latency_ms']
    return costs
