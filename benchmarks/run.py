"""Performance benchmark: BASE's supernet steps and adaptation speed against NNI's DARTS / GumbelDARTS.

One command::

    python -m benchmarks.run --output-dir benchmarks/results [--quick]

writes ``results.json``, ``results.md`` and ``results.png`` to the output directory. Every method uses the same
supernet (``DartsTaskSpace(width=8, num_cells=3, num_classes=5)``, 3x8x8 rotated digits), the same data and
``torch.set_num_threads(2)``. Four measurements:

1. **Time per training step** (:func:`bench_step_time`). Each method's supernet is built with its own
   strategy's ``mutate_model`` and runs interleaved, one step each per round, on the same batch of 32:

   * BASE: one inner step, ``nni_base.search.loop.adapt(task, 1, ...)`` (Gumbel sample, forward, ``autograd.grad``,
     in-place SGD on weights and alpha), for the sparse hard path, the dense hard path and soft samples.
   * NNI ``GumbelDARTS`` / ``DARTS``, *same work*: one forward + backward on the batch, then the weight optimizer
     and the architecture optimizer (Adam) step -- one batch, weights and alpha updated, as in BASE's step.
   * NNI ``GumbelDARTS`` / ``DARTS``, *as their training_step*: NNI's ``DartsLightningModule.training_step`` takes
     an architecture step on a validation batch and then a weight step on a training batch, i.e. two
     forward/backward passes; reproduced here without the Lightning trainer around it.

   The headline ratio is BASE (sparse) over GumbelDARTS *same work* (the conservative one).
2. **Peak memory** (:func:`bench_memory`): a short BASE meta-training run and a short GumbelDARTS single-task search,
   each through ``NasExperiment`` in a fresh subprocess, reading the child's peak RSS (``VmHWM``). An import-only child
   gives the floor (torch + NNI + Lightning), so the increments are reported too.
3. **Time to accuracy on held-out tasks** (:func:`bench_time_to_accuracy`): meta-train a prior on the digits train
   classes (its cost on its own line), then on held-out 5-way tasks from the test classes adapt the prior (a few
   Gumbel search steps, then the derived cell; :class:`nni_base.search.adaptation.TaskAdapter`), run the same procedure
   from scratch as a control, and search from scratch with GumbelDARTS and DARTS, round-robin one step each, on the
   task's support set; query accuracy is measured every few steps with the clock stopped.
4. **The K tasks' inner step vectorised with torch.func** (:func:`bench_vectorized_tasks`): the weight gradients of
   K tasks' support losses for one shared hard sample, sequentially vs one ``vmap(grad(functional_call))`` over K
   stacked weight copies; the two must agree.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# OpenMP runs with its defaults, as users run it (OMP_WAIT_POLICY=PASSIVE made GumbelDARTS's 8x8 steps 930 ms
# instead of 412 ms); the thread settings are recorded with the machine.
import torch
from nni.nas.oneshot.pytorch.strategy import GumbelDARTS

from benchmarks import baselines
from benchmarks.baselines import NNI_ARC_LR, NNI_WEIGHT_LR, Method
from benchmarks.common import (
    QUIET_TRAINER,
    RESULTS,
    ROOT,
    darts_space,
    episodic_evaluator,
    machine_info,
    meta_train,
    quiet,
    run_experiment,
    save_figure,
    write_json_result,
    write_markdown_result,
)
from benchmarks.step_curve import CIFAR_LIKE, TARGET_RATIO, measure_point
from nni_base import BaseStrategy, DartsTaskSpace, Task, TaskDistribution
from nni_base.api import build_supernet, load_strategy, sample_tasks
from nni_base.config_groups import SupernetConfig
from nni_base.data import digits_splits
from nni_base.search.adaptation import TaskAdapter
from nni_base.search.meta_update import ModelState

quiet()

__all__ = [
    'SPACE',
    'machine_info',
    'bench_step_time',
    'bench_memory',
    'bench_time_to_accuracy',
    'meta_train_prior',
    'bench_vectorized_tasks',
    'sequential_task_grads',
    'vectorized_task_grads',
    'write_results',
    'main',
]

#: The supernet every method searches.
SPACE = {'width': 8, 'num_cells': 3, 'num_classes': 5}
THREADS = 2
BATCH = 32
WAYS = 5

# Learning rates. BASE uses its meta-trained inner loop (inner_lr / inner_lr_alpha of the prior); the NNI baselines
# their own optimizers (baselines.NNI_WEIGHT_LR / NNI_ARC_LR).


def space() -> DartsTaskSpace:
    """A fresh copy of the benchmark's model space."""
    return darts_space(**SPACE)


def _digits(shots: int, queries: int) -> tuple[TaskDistribution, TaskDistribution]:
    splits = digits_splits()
    return (
        TaskDistribution(splits['train'], WAYS, shots, queries, name='digits-train'),
        TaskDistribution(splits['test'], WAYS, shots, queries, name='digits-test'),
    )


# ---- methods ------------------------------------------------------------------------------------------------------
def base_method(name: str, strategy: BaseStrategy, tau: float | None = None) -> Method:
    """BASE inner steps (``nni_base.search.loop.adapt``) on the supernet that ``strategy`` builds."""
    supernet = build_supernet(space(), strategy)
    supernet.set_temperature(tau if tau is not None else strategy.config.temperature.end)
    state = ModelState(supernet.training_module.model)

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        supernet.adapt(Task(x, y, x, y), 1, state, where=name)

    def accuracy(x: torch.Tensor, y: torch.Tensor) -> float:
        return supernet.query_metrics(Task(x, y, x, y))[1]

    return Method(name, step, accuracy)


def adapter_method(
    name: str, strategy: BaseStrategy, search_steps: int | None, *, weight_lr: float = NNI_WEIGHT_LR
) -> Method:
    """BASE adaptation (:class:`~nni_base.TaskAdapter`): ``search_steps`` Gumbel-sampled steps on weights
    and alpha, then the derived cell's weights only; Adam at the NNI baselines' weight step size."""
    supernet = build_supernet(space(), strategy)
    supernet.set_temperature(strategy.config.temperature.end)
    # Adam on both, as the NNI baselines this section compares with (the library's default is the SGD inner loop).
    adapter = TaskAdapter(supernet, search_steps=search_steps, optimizer='adam', weight_lr=weight_lr)
    return Method(name, lambda x, y: adapter.step(x, y), adapter.accuracy)


def nni_method(
    name: str, kind: str, *, same_work: bool, weight_lr: float = NNI_WEIGHT_LR, arc_lr: float = NNI_ARC_LR
) -> Method:
    """NNI's GumbelDARTS / DARTS on a fresh copy of the benchmark's space (:func:`baselines.nni_method`)."""
    return baselines.nni_method(name, kind, space(), same_work=same_work, weight_lr=weight_lr, arc_lr=arc_lr)


def _median(xs: list[float]) -> float:
    return float(statistics.median(xs))


# ---- 1. time per step ---------------------------------------------------------------------------------------------
def bench_step_time(repeats: int = 20, warmup: int = 3, seed: int = 0) -> dict[str, Any]:
    """Median wall time of one training step per method, measured interleaved on the same batch of 32.

    Parameters
    ----------
    repeats
        Timed rounds; every round runs one step of every method, in a rotating order.
    warmup
        Untimed rounds first.
    seed
        Seeds the batch and the supernets.

    Returns
    -------
    dict
        ``ms`` (median per method), ``ms_all`` (every sample), ``ratios`` and the settings.
    """
    torch.manual_seed(seed)
    train, _ = _digits(5, 5)
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(train.dataset), generator=g)[:BATCH].tolist()
    x = torch.stack([train.dataset[i][0] for i in idx])
    y = torch.as_tensor([int(train.dataset[i][1]) for i in idx])
    y = y % WAYS  # any 5 labels: the classifier is 5-way
    methods = [
        base_method('BASE sparse (hard)', BaseStrategy(seed=seed), tau=1.0),
        base_method('BASE dense (hard, sparse=False)', BaseStrategy(sparse=False, seed=seed), tau=1.0),
        base_method('BASE soft (hard=False)', BaseStrategy(hard=False, seed=seed), tau=1.0),
        nni_method('GumbelDARTS (same work)', 'gumbel', same_work=True),
        nni_method('DARTS (same work)', 'darts', same_work=True),
        nni_method('GumbelDARTS (training_step)', 'gumbel', same_work=False),
        nni_method('DARTS (training_step)', 'darts', same_work=False),
    ]
    samples: dict[str, list[float]] = {m.name: [] for m in methods}
    for r in range(warmup + repeats):
        shift = r % len(methods)
        for m in methods[shift:] + methods[:shift]:
            start = time.perf_counter()
            m.step(x, y)
            elapsed = time.perf_counter() - start
            if r >= warmup:
                samples[m.name].append(elapsed * 1e3)
    ms = {k: _median(v) for k, v in samples.items()}
    base = ms['BASE sparse (hard)']
    ratios = {
        'base_sparse_over_gumbel_same_work': base / ms['GumbelDARTS (same work)'],
        'base_sparse_over_darts_same_work': base / ms['DARTS (same work)'],
        'base_sparse_over_gumbel_training_step': base / ms['GumbelDARTS (training_step)'],
        'base_dense_over_gumbel_same_work': ms['BASE dense (hard, sparse=False)'] / ms['GumbelDARTS (same work)'],
        'base_soft_over_gumbel_same_work': ms['BASE soft (hard=False)'] / ms['GumbelDARTS (same work)'],
        'base_sparse_over_base_dense': base / ms['BASE dense (hard, sparse=False)'],
    }
    return {
        'batch': BATCH,
        'repeats': repeats,
        'warmup': warmup,
        'ms': ms,
        'ms_all': samples,
        'ratios': ratios,
        'target': {'base_sparse_over_gumbel_same_work': 0.3},
    }


def bench_step_time_cifar_like(repeats: int, warmup: int, seed: int = 0) -> dict[str, Any]:
    """BASE's sparse inner step vs GumbelDARTS (same work) at the size users search at: 3x32x32, width 16, 5 cells.

    See :mod:`benchmarks.step_curve`, which measures the same pair along width, cells and resolution.
    """
    resolution, width, cells = CIFAR_LIKE
    result = measure_point(resolution, width, cells, repeats=repeats, warmup=warmup, seed=seed)
    return {**result, 'batch': BATCH, 'repeats': repeats, 'warmup': warmup, 'target': TARGET_RATIO}


# ---- 2. peak memory -----------------------------------------------------------------------------------------------
def _memory_child(kind: str, steps: int) -> None:
    """Body of a memory subprocess: run ``kind`` for ``steps`` steps, then print the peak RSS as JSON."""
    torch.set_num_threads(THREADS)
    train, test = _digits(5, 5)
    if kind == 'base':
        with tempfile.TemporaryDirectory() as tmp:
            evaluator = episodic_evaluator(train, test, tasks_per_step=4, steps_per_epoch=steps, val_episodes=2)
            run_experiment(space(), evaluator, BaseStrategy(save_prior_to=Path(tmp) / 'p.pt'))
    elif kind == 'gumbel':
        import nni
        from nni.nas.evaluator.pytorch import Classification
        from torch.utils.data import DataLoader

        data = test.dataset.subset_classes(list(range(WAYS)))
        evaluator = Classification(
            num_classes=WAYS,
            learning_rate=NNI_WEIGHT_LR,
            train_dataloaders=nni.trace(DataLoader)(data, batch_size=BATCH, shuffle=True),
            val_dataloaders=nni.trace(DataLoader)(data, batch_size=BATCH, shuffle=True),
            max_epochs=1,
            limit_train_batches=steps,
            limit_val_batches=2,
            logger=False,
            **QUIET_TRAINER,
        )
        run_experiment(space(), evaluator, GumbelDARTS())
    elif kind != 'idle':
        raise ValueError(kind)
    # Linux keeps ru_maxrss across fork + exec, so a child of a big parent reports the parent's peak; VmHWM (the
    # high-water mark of this process's own address space, reset by exec) is the child's true peak RSS.
    hwm = (
        next(
            (
                int(ln.split()[1])
                for ln in Path('/proc/self/status').read_text().splitlines()
                if ln.startswith('VmHWM:')
            ),
            None,
        )
        if Path('/proc/self/status').exists()
        else None
    )
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({'kind': kind, 'maxrss_kb': hwm if hwm is not None else maxrss, 'ru_maxrss_kb': maxrss}))


def bench_memory(base_steps: int = 5, gumbel_steps: int = 10) -> dict[str, Any]:
    """Peak RSS of a short BASE meta-training run and a short GumbelDARTS search, each in a fresh subprocess.

    Each child reports its own peak: ``VmHWM`` from ``/proc/self/status`` where it exists, else ``ru_maxrss``.
    (``ru_maxrss`` of a child started by this large process is inherited across fork + exec on Linux, so it
    would report this process's peak, not the child's.)
    """
    results: dict[str, float] = {}
    # The children run concurrently: contention changes their speed, not their peak RSS.
    procs = {
        kind: subprocess.Popen(
            [sys.executable, '-m', 'benchmarks.run', '--memory-child', kind, '--memory-steps', str(steps)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=str(ROOT),
        )
        for kind, steps in (('idle', 0), ('base', base_steps), ('gumbel', gumbel_steps))
    }
    for kind, proc in procs.items():
        out, err = proc.communicate()
        lines = [ln for ln in out.splitlines() if ln.startswith('{"kind"')]
        if proc.returncode != 0 or not lines:
            raise RuntimeError(f'memory child {kind} failed ({proc.returncode}):\n{err[-3000:]}')
        results[kind] = json.loads(lines[-1])['maxrss_kb'] / 1024
    idle = results['idle']
    return {
        'peak_rss_mb': results,
        'base_steps': base_steps,
        'gumbel_steps': gumbel_steps,
        'ratio_base_over_gumbel': results['base'] / results['gumbel'],
        'increment_mb': {'base': results['base'] - idle, 'gumbel': results['gumbel'] - idle},
        'ratio_increment_base_over_gumbel': (results['base'] - idle) / max(results['gumbel'] - idle, 1e-6),
        'target': {'ratio_base_over_gumbel': 1.3},
    }


# ---- 3. time to accuracy ------------------------------------------------------------------------------------------
def meta_train_prior(
    path: Path, *, steps_per_epoch: int, max_epochs: int, tasks_per_step: int = 4, inner_steps: int = 5, seed: int = 0
) -> dict[str, Any]:
    """Meta-train a BASE prior on the digits train classes with ``NasExperiment``; returns its cost."""
    train, test = _digits(5, 5)
    strategy, seconds = meta_train(
        space(),
        train,
        path,
        tasks_per_step=tasks_per_step,
        steps_per_epoch=steps_per_epoch,
        max_epochs=max_epochs,
        seed=seed,
        val=test,
        evaluator_kwargs={'val_episodes': 2},
        inner_steps=inner_steps,
    )
    return {
        'seconds': seconds,
        'meta_steps': steps_per_epoch * max_epochs,
        'tasks_per_step': tasks_per_step,
        'inner_steps': inner_steps,
        'inner_sgd_steps': steps_per_epoch * max_epochs * tasks_per_step * inner_steps,
        'last_metrics': dict(strategy.oneshot_module.last_metrics),
    }


#: Names of the time-to-accuracy methods; the first is the headline BASE adaptation.
TTA_BASE = 'BASE (prior): search, then cell'
TTA_BASE_SEARCH = 'BASE (prior): search only'
TTA_CONTROL = 'same procedure from scratch (control)'
TTA_GUMBEL = 'GumbelDARTS (scratch)'
TTA_DARTS = 'DARTS (scratch)'


def bench_time_to_accuracy(
    prior: Path,
    *,
    tasks: int = 4,
    steps: int = 30,
    eval_every: int = 5,
    shots: int = 5,
    queries: int = 15,
    search_steps: int = 5,
    seed: int = 1234,
) -> dict[str, Any]:
    """Held-out query accuracy against wall time and steps: BASE from the prior vs GumbelDARTS / DARTS from scratch.

    For each held-out task every method starts fresh (the prior, or a new random supernet) and the methods take
    their steps round-robin on the task's support set (full batch of ``WAYS * shots`` images); query accuracy is
    measured at step 0 and every ``eval_every`` steps with the clock stopped. Curves are averaged over tasks.

    Methods, all with Adam at the same weight step size:

    * BASE (prior): search, then cell -- ``search_steps`` sampled steps on weights and alpha from the prior, then the
      derived cell's weights (``freeze_architecture_after``); scored on the derived cell (what a user exports).
    * BASE (prior): search only -- sampled steps throughout (``BaseStrategy(prior=...)`` with NNI Classification).
    * the control: the first procedure from a fresh, un-meta-trained supernet; the gap to it is the prior's share.
    * NNI's GumbelDARTS and DARTS from scratch, as their ``training_step`` (two passes), scored on the supernet.
    """
    _, test = _digits(shots, queries)
    task_list = sample_tasks(test, tasks, seed=seed)
    names = [TTA_BASE, TTA_BASE_SEARCH, TTA_CONTROL, TTA_GUMBEL, TTA_DARTS]
    checkpoints = sorted({0, *range(eval_every, steps + 1, eval_every), steps})
    acc = {n: [[0.0] * len(checkpoints) for _ in task_list] for n in names}
    clock = {n: [[0.0] * len(checkpoints) for _ in task_list] for n in names}
    for t, task in enumerate(task_list):
        torch.manual_seed(seed + t)
        methods = [
            adapter_method(TTA_BASE, load_strategy(prior), search_steps),
            adapter_method(TTA_BASE_SEARCH, load_strategy(prior), None),
            adapter_method(TTA_CONTROL, BaseStrategy(seed=seed + t), search_steps),
            nni_method(TTA_GUMBEL, 'gumbel', same_work=False),
            nni_method(TTA_DARTS, 'darts', same_work=False),
        ]
        elapsed = {n: 0.0 for n in names}
        for s in range(steps + 1):
            if s in checkpoints:
                c = checkpoints.index(s)
                for m in methods:
                    acc[m.name][t][c] = m.accuracy(task.query_x, task.query_y)
                    clock[m.name][t][c] = elapsed[m.name]
            if s == steps:
                break
            shift = s % len(methods)
            for m in methods[shift:] + methods[:shift]:
                start = time.perf_counter()
                m.step(task.support_x, task.support_y)
                elapsed[m.name] += time.perf_counter() - start
    curves = {}
    for n in names:
        curves[n] = {
            'steps': checkpoints,
            'accuracy': [
                sum(acc[n][t][c] for t in range(len(task_list))) / len(task_list) for c in range(len(checkpoints))
            ],
            'seconds': [
                sum(clock[n][t][c] for t in range(len(task_list))) / len(task_list) for c in range(len(checkpoints))
            ],
            'per_task_final_accuracy': [acc[n][t][-1] for t in range(len(task_list))],
        }
    return {
        'tasks': tasks,
        'steps': steps,
        'eval_every': eval_every,
        'shots': shots,
        'queries': queries,
        'search_steps': search_steps,
        'curves': curves,
        'summary': _time_to_accuracy_summary(curves),
    }


def _time_to_accuracy_summary(curves: dict[str, Any]) -> dict[str, Any]:
    """When each method first reaches GumbelDARTS's final accuracy, as a fraction of GumbelDARTS's wall time."""
    gumbel = curves[TTA_GUMBEL]
    target, gumbel_time = gumbel['accuracy'][-1], gumbel['seconds'][-1]
    reached: dict[str, Any] = {}
    for name, c in curves.items():
        i = next((i for i, a in enumerate(c['accuracy']) if a >= target), None)
        seconds = math.inf if i is None else c['seconds'][i]
        reached[name] = {
            'reached': i is not None,
            'seconds': seconds,
            'step': None if i is None else c['steps'][i],
            'fraction_of_gumbel_time': seconds / gumbel_time if gumbel_time > 0 else math.inf,
            'final_accuracy': c['accuracy'][-1],
            'total_seconds': c['seconds'][-1],
            'initial_accuracy': c['accuracy'][0],
        }
    head = reached[TTA_BASE]
    return {
        'gumbel_final_accuracy': target,
        'gumbel_total_seconds': gumbel_time,
        'per_method': reached,
        'base_reached': head['reached'],
        'base_seconds_to_target': head['seconds'],
        'base_steps_to_target': head['step'],
        'fraction_of_gumbel_time': head['fraction_of_gumbel_time'],
        'target': {'fraction_of_gumbel_time': 0.1},
    }


# ---- 4. K tasks vectorised with torch.func -------------------------------------------------------------------------
def _task_batch(tasks: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    train, _ = _digits(5, 5)
    task_list = sample_tasks(train, tasks, seed=seed)
    return torch.stack([t.support_x for t in task_list]), torch.stack([t.support_y for t in task_list])


def sequential_task_grads(supernet, xs: torch.Tensor, ys: torch.Tensor) -> dict[str, torch.Tensor]:
    """Weight gradients of each task's support loss, one task after another (what the inner loop does now)."""
    model = supernet.training_module.model
    arch = {id(p) for p in supernet.arch_parameters()}
    named = [(n, p) for n, p in model.named_parameters() if id(p) not in arch]
    per_task = []
    for x, y in zip(xs, ys):
        loss, _ = supernet.model_loss(x, y)
        per_task.append(torch.autograd.grad(loss, [p for _, p in named], allow_unused=True))
    return {
        n: torch.stack([g[i] if g[i] is not None else torch.zeros_like(p) for g in per_task])
        for i, (n, p) in enumerate(named)
    }


def vectorized_task_grads(supernet, xs: torch.Tensor, ys: torch.Tensor) -> dict[str, torch.Tensor]:
    """The same gradients for all K tasks in one ``torch.func.vmap(grad(...))`` call over K stacked weight copies.

    Batching needs one computation for all tasks, so every task runs the current sample: the K tasks share one
    Gumbel sample per inner step, whereas BASE draws one per task. BatchNorm buffers are stacked too, so each task
    keeps its own running statistics.
    """
    from torch.func import functional_call, grad, vmap

    model = supernet.training_module.model
    arch = {id(p) for p in supernet.arch_parameters()}
    k = xs.shape[0]
    params = {n: p.detach().expand(k, *p.shape).clone() for n, p in model.named_parameters() if id(p) not in arch}
    buffers = {n: b.expand(k, *b.shape).clone() for n, b in model.named_buffers()}

    def loss_of(p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor):
        logits = functional_call(model, (p, b), (x,))
        return supernet.training_module.criterion(logits[0] if isinstance(logits, tuple) else logits, y)

    return vmap(grad(loss_of))(params, buffers, xs, ys)


def bench_vectorized_tasks(tasks: int = 4, repeats: int = 5, warmup: int = 1, seed: int = 0) -> dict[str, Any]:
    """Median time of the K tasks' weight gradients for one inner step: sequential vs ``torch.func.vmap``.

    Both run the same hard sample (sparse path), so the comparison isolates batching; the gradients must agree.
    """
    torch.manual_seed(seed)
    # contiguous: torch.func's vmap cannot clone into channels-last
    supernet = build_supernet(space(), BaseStrategy(seed=seed, supernet=SupernetConfig(channels_last=False)))
    supernet.set_temperature(supernet.config.temperature.end)
    supernet.training_module.model.train()
    supernet.resample()
    xs, ys = _task_batch(tasks, seed)
    seq, vec = sequential_task_grads(supernet, xs, ys), vectorized_task_grads(supernet, xs, ys)
    diff = max(float((seq[n] - vec[n]).abs().max()) for n in seq)
    times: dict[str, list[float]] = {'sequential': [], 'vmap': []}
    for r in range(warmup + repeats):
        for name, fn in (('sequential', sequential_task_grads), ('vmap', vectorized_task_grads)):
            start = time.perf_counter()
            fn(supernet, xs, ys)
            if r >= warmup:
                times[name].append(time.perf_counter() - start)
    ms = {name: 1000 * _median(ts) for name, ts in times.items()}
    return {
        'tasks': tasks,
        'support': int(xs.shape[1]),
        'repeats': repeats,
        'ms': ms,
        'ratio_vmap_over_sequential': ms['vmap'] / ms['sequential'],
        'max_abs_grad_difference': diff,
    }


# ---- output -------------------------------------------------------------------------------------------------------
def _fmt(v: float, digits: int = 3) -> str:
    return 'inf' if not math.isfinite(v) else f'{v:.{digits}g}'


def _markdown(results: dict[str, Any]) -> str:
    info = results['machine']
    lines = [
        '# BASE vs NNI DARTS / GumbelDARTS: benchmark results',
        '',
        # docs/benchmarks.md includes everything below the title (MkDocs snippet section)
        '<!-- --8<-- [start:body] -->',
        f'Machine: {info["cpu"]} ({info["cpu_count"]} cores), torch {info["torch"]}, NNI {info["nni"]}, '
        f'Python {info["python"]}, torch threads {info["threads"]}. Mode: {results["mode"]}. '
        f'Supernet: DartsTaskSpace(width={SPACE["width"]}, num_cells={SPACE["num_cells"]}, '
        f'num_classes={SPACE["num_classes"]}), 3x8x8 rotated digits.',
        '',
    ]
    st = results.get('step_time')
    if st:
        lines += [
            f'### 1. Time per training step (batch {st["batch"]}, median of {st["repeats"]} interleaved '
            f'rounds after {st["warmup"]} warm-up)',
            '',
            '| method | ms / step | vs GumbelDARTS (same work) |',
            '|---|---:|---:|',
        ]
        ref = st['ms']['GumbelDARTS (same work)']
        lines += [f'| {k} | {v:.1f} | {v / ref:.3f} |' for k, v in st['ms'].items()]
        r = st['ratios']['base_sparse_over_gumbel_same_work']
        lines += [
            '',
            f'**BASE sparse / GumbelDARTS (same work): {r:.3f}** (target <= 0.3: '
            f'{"met" if r <= 0.3 else "missed"}); vs GumbelDARTS training_step (2 passes): '
            f'{st["ratios"]["base_sparse_over_gumbel_training_step"]:.3f}.',
            '',
        ]
    cl = results.get('step_time_cifar_like')
    if cl:
        lines += [
            f'#### 1b. At the size users search at (3x{cl["resolution"]}x{cl["resolution"]}, width {cl["width"]}, '
            f'{cl["cells"]} cells; batch {cl["batch"]}, median of {cl["repeats"]})',
            '',
            f'BASE sparse {cl["ms"]["BASE"]:.1f} ms, GumbelDARTS (same work) {cl["ms"]["GumbelDARTS"]:.1f} ms: '
            f'**{cl["ratio"]:.3f}** (target <= {cl["target"]}: '
            f'{"met" if cl["ratio"] <= cl["target"] else "missed"}).'
            ' The curve against width, cells and resolution: `python -m benchmarks.step_curve`.',
            '',
        ]
    mem = results.get('memory')
    if mem:
        p, inc = mem['peak_rss_mb'], mem['increment_mb']
        r = mem['ratio_base_over_gumbel']
        lines += [
            '### 2. Peak memory (fresh subprocess each, peak RSS of the child: VmHWM)',
            '',
            '| run | peak RSS (MB) | above import-only floor (MB) |',
            '|---|---:|---:|',
            f'| import-only floor | {p["idle"]:.0f} | 0 |',
            f'| BASE meta-training ({mem["base_steps"]} meta-steps x 4 tasks) | {p["base"]:.0f} | {inc["base"]:.0f} |',
            f'| GumbelDARTS search ({mem["gumbel_steps"]} steps, batch {BATCH}) | {p["gumbel"]:.0f} | '
            f'{inc["gumbel"]:.0f} |',
            '',
            f'**BASE / GumbelDARTS peak RSS: {r:.3f}** (target <= 1.3: {"met" if r <= 1.3 else "missed"}); '
            f'increments above the floor: {_fmt(mem["ratio_increment_base_over_gumbel"])}.',
            '',
        ]
    tta = results.get('time_to_accuracy')
    if tta:
        prior = results['prior']
        s = tta['summary']
        lines += [
            '### 3. Time to accuracy on held-out tasks',
            '',
            f'Prior meta-training cost: **{prior["seconds"]:.1f} s** on {info["threads"]} CPU threads '
            f'({prior["meta_steps"]} meta-steps x {prior["tasks_per_step"]} tasks x {prior["inner_steps"]} '
            f'inner steps = {prior["inner_sgd_steps"]} inner SGD steps), paid once for all tasks.',
            '',
            f'{tta["tasks"]} held-out 5-way tasks (digits 8/9 x 4 rotations), support {WAYS}x{tta["shots"]}, '
            f'query {WAYS}x{tta["queries"]}, {tta["steps"]} steps per method, averaged over tasks.',
            '',
            '| method | query acc @0 | final query acc | total adaptation/search time (s) |',
            '|---|---:|---:|---:|',
        ]
        for name, c in tta['curves'].items():
            lines.append(f'| {name} | {c["accuracy"][0]:.3f} | {c["accuracy"][-1]:.3f} | {c["seconds"][-1]:.2f} |')
        lines += [
            '',
            f"Time to GumbelDARTS's final accuracy ({s['gumbel_final_accuracy']:.3f}, reached by it in "
            f'{s["gumbel_total_seconds"]:.2f} s):',
            '',
            '| method | step | seconds | fraction of GumbelDARTS time |',
            '|---|---:|---:|---:|',
        ]
        for name, r in s['per_method'].items():
            lines.append(
                f'| {name} | {r["step"] if r["step"] is not None else "-"} | {_fmt(r["seconds"])} | '
                f'{_fmt(r["fraction_of_gumbel_time"])} |'
            )
        frac = s['fraction_of_gumbel_time']
        lines += [
            '',
            f'**{TTA_BASE}: fraction {_fmt(frac)}** (target <= 0.1: {"met" if frac <= 0.1 else "missed"}). '
            f'BASE searches for {tta["search_steps"]} steps, then trains the derived cell; the control runs '
            'the same procedure from an un-meta-trained supernet.',
            '',
        ]
    vec = results.get('vectorized')
    if vec:
        lines += [
            f"### 4. The K tasks' inner step vectorised with torch.func ({vec['tasks']} tasks, support "
            f'{vec["support"]}, median of {vec["repeats"]})',
            '',
            '| path | ms for all tasks |',
            '|---|---:|',
            f'| sequential (as meta-training runs) | {vec["ms"]["sequential"]:.1f} |',
            f'| torch.func vmap(grad) over stacked weights | {vec["ms"]["vmap"]:.1f} |',
            '',
            f'**vmap / sequential: {vec["ratio_vmap_over_sequential"]:.3f}**; largest gradient difference '
            f'{vec["max_abs_grad_difference"]:.2e}. Both run one shared hard sample (vmap needs one computation '
            'for all tasks); BASE itself draws a sample per task.',
            '',
        ]
    lines.append('<!-- --8<-- [end:body] -->')
    return '\n'.join(lines)


def _plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt  # after choosing the file-only backend

    tta = results['time_to_accuracy']
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, c in tta['curves'].items():
        axes[0].plot(c['seconds'], c['accuracy'], marker='o', label=name)
        axes[1].plot(c['steps'], c['accuracy'], marker='o', label=name)
    axes[0].set_xscale('symlog', linthresh=0.1)
    axes[0].set_xlabel('wall time (s, adaptation / search only)')
    axes[1].set_xlabel('steps')
    for ax in axes:
        ax.set_ylabel('held-out query accuracy')
        ax.grid(alpha=0.3)
        ax.axhline(1 / WAYS, color='gray', ls=':', lw=1)
    axes[0].legend()
    fig.suptitle(
        f'BASE from prior (meta-training {results["prior"]["seconds"]:.0f} s, once) vs NNI from scratch, '
        f'{tta["tasks"]} held-out 5-way tasks'
    )
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    plt.close(fig)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, torch.Tensor):
        return obj.item()
    return obj


def write_results(results: dict[str, Any], output_dir: Path, figure: Path | None = None) -> dict[str, Path]:
    """Write ``results.json``, ``results.md`` and (with time-to-accuracy results) the figure, to ``figure``
    (default ``results.png`` beside them; ``make bench`` writes the one copy the docs show, in ``docs/images``)."""
    paths = {'json': output_dir / 'results.json', 'md': output_dir / 'results.md'}
    write_json_result(paths['json'], _jsonable(results))
    write_markdown_result(paths['md'], _markdown(results))
    if 'time_to_accuracy' in results:
        paths['png'] = figure or output_dir / 'results.png'
        _plot(results, paths['png'])
    return paths


SIZES = {
    'tiny': {
        'step_repeats': 1,
        'step_warmup': 0,
        'mem_base': 1,
        'mem_gumbel': 1,
        'meta_steps': 1,
        'meta_epochs': 1,
        'inner_steps': 1,
        'tasks': 1,
        'steps': 1,
        'eval_every': 1,
        'search_steps': 1,
        'vec_repeats': 1,
    },
    'quick': {
        'step_repeats': 3,
        'step_warmup': 1,
        'mem_base': 2,
        'mem_gumbel': 4,
        'meta_steps': 5,
        'meta_epochs': 1,
        'inner_steps': 5,
        'tasks': 1,
        'steps': 6,
        'eval_every': 2,
        'search_steps': 2,
        'vec_repeats': 2,
    },
    # The prior matches examples/quickstart.py (4 epochs x 10 meta-steps); fewer steps leave it under-trained.
    'full': {
        'step_repeats': 10,
        'step_warmup': 2,
        'mem_base': 4,
        'mem_gumbel': 8,
        'meta_steps': 10,
        'meta_epochs': 4,
        'inner_steps': 5,
        'tasks': 4,
        'steps': 20,
        'eval_every': 2,
        'search_steps': 5,
        'vec_repeats': 7,
    },
}


def run_all(mode: str, output_dir: Path, figure: Path | None = None, *, verbose: bool = True) -> dict[str, Any]:
    """Run the three benchmarks at the sizes of ``mode`` (``'tiny'``, ``'quick'`` or ``'full'``) and write them."""
    torch.set_num_threads(THREADS)
    size = SIZES[mode]
    log = print if verbose else (lambda *a, **k: None)
    results: dict[str, Any] = {'mode': mode, 'machine': machine_info(), 'sizes': size}
    t0 = time.perf_counter()
    log('[1/4] time per step ...', flush=True)
    results['step_time'] = bench_step_time(size['step_repeats'], size['step_warmup'])
    log(json.dumps(results['step_time']['ms'], indent=1), flush=True)
    log('[1b] time per step at the CIFAR-like size (3x32x32, width 16, 5 cells) ...', flush=True)
    results['step_time_cifar_like'] = bench_step_time_cifar_like(size['step_repeats'], size['step_warmup'])
    log(json.dumps(results['step_time_cifar_like']['ms']), flush=True)
    log('[2/4] peak memory ...', flush=True)
    results['memory'] = bench_memory(size['mem_base'], size['mem_gumbel'])
    log(json.dumps(results['memory']['peak_rss_mb']), flush=True)
    log('[3/4] K tasks vectorised with torch.func ...', flush=True)
    results['vectorized'] = bench_vectorized_tasks(repeats=size['vec_repeats'])
    log(json.dumps(results['vectorized']['ms']), flush=True)
    log('[4/4] meta-training a prior, then time to accuracy ...', flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        prior = Path(tmp) / 'prior.pt'
        results['prior'] = meta_train_prior(
            prior, steps_per_epoch=size['meta_steps'], max_epochs=size['meta_epochs'], inner_steps=size['inner_steps']
        )
        log(f'prior: {results["prior"]["seconds"]:.1f} s', flush=True)
        results['time_to_accuracy'] = bench_time_to_accuracy(
            prior,
            tasks=size['tasks'],
            steps=size['steps'],
            eval_every=size['eval_every'],
            search_steps=size['search_steps'],
        )
    results['total_seconds'] = time.perf_counter() - t0
    paths = write_results(results, output_dir, figure)
    log(paths['md'].read_text())
    return results


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--output-dir', type=Path, default=RESULTS)
    parser.add_argument('--figure', type=Path, default=None, help='where the picture goes (default: in --output-dir)')
    parser.add_argument('--quick', action='store_true', help='small budgets (about 3 minutes on 2 cores)')
    parser.add_argument('--tiny', action='store_true', help=argparse.SUPPRESS)
    parser.add_argument('--memory-child', choices=['idle', 'base', 'gumbel'], help=argparse.SUPPRESS)
    parser.add_argument('--memory-steps', type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        _memory_child(args.memory_child, args.memory_steps)
        return 0
    run_all('tiny' if args.tiny else 'quick' if args.quick else 'full', args.output_dir, args.figure)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
