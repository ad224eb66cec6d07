"""Accuracy against cost under a MACs budget: BASE, NNI's penalised GumbelDARTS, random cells, database zero-shot.

One command (run it alone on the machine: search seconds and latencies are part of the result)::

    python -m benchmarks.budget_front                       # 2 families x 2 datasets x 3 budgets, seed 0
    python -m benchmarks.budget_front --smoke               # one dataset, one budget, 1 epoch: checks the script

Every method runs through ``NasExperiment`` + NNI's ``Classification`` on a dataset of novel classes of a database
family (classes no split of the family has; 5-way, 16 px) in the shipped prior's space, at each budget
``cheapest + f x (most expensive - cheapest)`` MACs of that space, f in ``--fractions``:

* ``base``: ``BaseStrategy(prior='default', budget=Budget(macs=b))``, ``--base-epochs`` of adaptation;
* ``gumbel_darts``: NNI's ``GumbelDARTS`` from scratch (``--darts-epochs``) with NNI's soft penalty, the budget as
  its baseline: ``loss + relu(E[MACs] / b - 1)`` (``ExpectationProfilerPenalty(..., nonlinear='positive')``). NNI's
  own profiler penalty cannot run here: ``FlopsProfiler`` stops at the DARTS cell's ``CellPostprocessor`` ("no shape
  inference formula"), and ``DartsLightningModule`` hands the penalty ``export_probs()``, plain floats, so the term
  would carry no gradient to α. The baseline keeps NNI's formula on an expectation that does
  (:class:`ExpectedMacsPenalty`: NNI's per-edge α through nni-base's cost table and DARTS expectation), i.e.
  penalised GumbelDARTS as it is meant;
* ``zero_shot``: ``BaseStrategy(zero_shot=ZeroShotConfig(database='shipped'), budget=...)``: nothing trained;
* ``random``: ``--random`` uniformly random cells of the space that fit the budget (rejection sampling).

Each exported cell is retrained from fresh weights (``--retrain-epochs``) and tested on held-out images; its MACs
(nni-base's count) and CPU latency (one thread) are measured on the frozen network. Writes
``benchmarks/results/budget_front.{json,md,png}``: per budget and method, retrained accuracy (mean ± 95% CI over
datasets), MACs / budget (mean and max), cells over the budget, search seconds.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path
from typing import Any

import nni
import torch
from nni.nas.evaluator.pytorch import Classification
from nni.nas.oneshot.pytorch.profiler import ExpectationProfilerPenalty
from nni.nas.oneshot.pytorch.strategy import GumbelDARTS
from torch.utils.data import ConcatDataset, DataLoader

from benchmarks.common import (
    QUIET_TRAINER,
    RESULTS,
    quiet,
    retrain,
    run_experiment,
    save_figure,
    settings_of,
    split_dataset,
    write_json_result,
    write_markdown_result,
)
from nni_base import BaseStrategy, Budget, ZeroShotConfig
from nni_base.api import build_supernet
from nni_base.data.families import novel_classes
from nni_base.hardware import build_cost_table
from nni_base.hardware.export import BudgetedComponents
from nni_base.hardware.penalty import cost_tensors, expected_cost
from nni_base.prior import prior_space
from nni_base.search.top_k import cell_shapes, random_architecture
from nni_base.space.costs import cpu_latency_ms
from nni_base.space.macs import count_macs
from nni_base.tasks.metrics import mean_ci

METHODS = ('base', 'gumbel_darts', 'zero_shot', 'random')
CLASSES, IMAGE = 5, 16


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--families', nargs='+', default=['texture', 'lines'])
    p.add_argument('--methods', nargs='+', default=list(METHODS), choices=METHODS)
    p.add_argument('--datasets', type=int, default=2, help='datasets (novel-class draws) per family')
    p.add_argument('--fractions', type=float, nargs='+', default=[0.1, 0.25, 0.5])
    p.add_argument('--base-epochs', type=int, default=3)
    p.add_argument('--darts-epochs', type=int, default=10)
    p.add_argument('--retrain-epochs', type=int, default=10)
    p.add_argument('--random', type=int, default=3, help='random cells per budget and dataset')
    p.add_argument('--images-per-class', type=int, default=60)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--smoke', action='store_true', help='one dataset, one budget, one epoch each: not a result')
    p.add_argument('--output-dir', default=str(RESULTS))
    p.add_argument('--report', metavar='JSON', help="re-render a finished run's budget_front.json (no run)")
    args = p.parse_args(argv)
    if args.smoke:
        args.families, args.datasets, args.fractions = args.families[:1], 1, args.fractions[:1]
        args.base_epochs = args.darts_epochs = args.retrain_epochs = 1
        args.random, args.output_dir = 1, str(RESULTS / 'smoke')
    return args


class ExpectedMacsPenalty(ExpectationProfilerPenalty):
    """NNI's penalty formula on the expected MACs under the supernet's live α (see the module docstring).

    NNI's DARTS cells hold one α row per edge (operations, then "no input"), the layout of nni-base's DARTS
    parameterisation, so the expectation is :func:`nni_base.hardware.penalty.expected_cost` on those rows.
    """

    def __init__(self, table: Any, shapes: Any, baseline: float):
        super().__init__(None, baseline, nonlinear='positive')  # type: ignore[arg-type]  (profile is ours)
        self.table, self.shapes = table, list(shapes)
        self.costs = {shape.label: cost_tensors(table, shape, 'macs') for shape in self.shapes}
        self.__dict__['module'] = None  # not a submodule: the penalty only reads the search module's α

    def profile(self, sample: Any) -> Any:
        rows: dict[str, torch.Tensor] = {}
        for module in self.module.supernet_modules():
            label = getattr(module, 'label', None)
            if label in self.costs and label not in rows:  # cells of one label share their α
                rows[label] = torch.stack(list(module.arch_parameters()))
        total = torch.tensor(self.table.fixed['macs'])
        for shape in self.shapes:
            total = total + expected_cost(rows[shape.label], self.costs[shape.label], shape)
        return total


class PenalisedGumbelDARTS(GumbelDARTS):
    """``GumbelDARTS(penalty=ExpectedMacsPenalty)``: hands the penalty the module whose α it reads."""

    def configure_oneshot_module(self, training_module: Any) -> Any:
        module = super().configure_oneshot_module(training_module)
        self.penalty.__dict__['module'] = module
        return module


def loader(data: Any, shuffle: bool) -> Any:
    return nni.trace(DataLoader)(data, batch_size=32, shuffle=shuffle)


def evaluator(train: Any, val: Any, epochs: int) -> Classification:
    return Classification(
        learning_rate=0.02,
        optimizer=torch.optim.SGD,
        num_classes=CLASSES,
        train_dataloaders=loader(train, True),
        val_dataloaders=loader(val, False),
        max_epochs=epochs,
        logger=False,
        **QUIET_TRAINER,
    )


def budgets(table: Any, supernet: Any, fractions: list[float]) -> list[float]:
    """MACs budgets at ``fractions`` of the way from the space's cheapest architecture to its most expensive."""
    alphas = {str(label): alpha.detach() for label, alpha in supernet.alphas().items()}
    components = BudgetedComponents(cell_shapes(supernet.cells()), alphas, table)
    cheapest = components.cheapest()['macs']
    dearest = table.fixed['macs'] + sum(max(cost['macs'] for cost in options) for options in components.costs)
    return [cheapest + f * (dearest - cheapest) for f in fractions]


def search(method: str, macs: float, train: Any, val: Any, args: argparse.Namespace, rng: random.Random) -> list:
    """(sample, search seconds) of each cell the method exports at the budget ``macs``."""
    space = prior_space('default', num_classes=CLASSES)
    if method == 'random':
        table = build_cost_table(space, (3, IMAGE, IMAGE))
        shapes = cell_shapes(build_supernet(space, BaseStrategy()).cells())
        found = []
        while len(found) < args.random:
            sample = random_architecture(shapes, rng)
            if table.cost_of(sample)['macs'] <= macs:
                found.append((sample, 0.0))
        return found
    if method == 'gumbel_darts':
        table = build_cost_table(space, (3, IMAGE, IMAGE))
        shapes = cell_shapes(build_supernet(prior_space('default', num_classes=CLASSES), BaseStrategy()).cells())
        strategy: Any = PenalisedGumbelDARTS(penalty=ExpectedMacsPenalty(table, shapes, macs))
        epochs = args.darts_epochs
    elif method == 'base':
        strategy, epochs = BaseStrategy(prior='default', budget=Budget(macs=macs), seed=args.seed), args.base_epochs
    else:
        strategy = BaseStrategy(zero_shot=ZeroShotConfig(database='shipped'), budget=Budget(macs=macs), seed=args.seed)
        epochs = 1
    torch.manual_seed(args.seed)
    seconds, sample = run_experiment(space, evaluator(train, val, epochs), strategy, export=True)
    return [(sample, seconds)]


def measure(sample: dict, train: Any, test: Any, args: argparse.Namespace) -> dict[str, float]:
    space = prior_space('default', num_classes=CLASSES)
    net = space.freeze(sample)
    return {
        'accuracy': retrain(space, sample, train, test, epochs=args.retrain_epochs, seed=args.seed),
        'macs': float(count_macs(net, (3, IMAGE, IMAGE))),
        'latency_ms': cpu_latency_ms(net, (3, IMAGE, IMAGE), repeats=30),
    }


def summarise(rows: list[dict], limits: list[float], fractions: list[float]) -> list[str]:
    lines = [
        '| budget (MACs) | method | retrained accuracy | MACs / budget (mean, max) | over budget | latency ms '
        '| search s |',
        '|---|---|---|---|---|---|---|',
    ]
    for f, limit in zip(fractions, limits):
        for method in METHODS:
            mine = [r for r in rows if r['budget'] == limit and r['method'] == method]
            if not mine:
                continue
            acc, h = mean_ci([r['accuracy'] for r in mine])
            ratios = [r['macs'] / limit for r in mine]
            over = sum(r > 1 + 1e-9 for r in ratios)
            latency = sum(r['latency_ms'] for r in mine) / len(mine)
            seconds = sum(r['search_s'] for r in mine) / len(mine)
            lines.append(
                f'| {limit / 1e6:.3f} M (f={f:g}) | {method} | {acc:.3f} ± {h:.3f} | '
                f'{sum(ratios) / len(ratios):.2f}, {max(ratios):.2f} | {over} of {len(mine)} | {latency:.2f} '
                f'| {seconds:.1f} |'
            )
    return lines


def plot(rows: list[dict], limits: list[float], path: str) -> None:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for method, marker in zip(METHODS, 'osD^'):
        mine = [r for r in rows if r['method'] == method]
        ax.scatter(
            [r['macs'] / 1e6 for r in mine], [r['accuracy'] for r in mine], marker=marker, label=method, alpha=0.7
        )
    for limit in limits:
        ax.axvline(limit / 1e6, color='grey', linestyle=':', linewidth=1)
    ax.set_xlabel('MACs of the exported cell (M, one 16 px image); dotted: the budgets')
    ax.set_ylabel('retrained test accuracy')
    ax.legend(loc='lower right')
    ax.set_title('Accuracy against cost under a MACs budget')
    fig.tight_layout()
    save_figure(fig, path)


def run(args: argparse.Namespace) -> tuple[list[float], list[dict], float]:
    """Every method at every budget on every dataset: (budgets, rows, seconds)."""
    space = prior_space('default', num_classes=CLASSES)
    table = build_cost_table(space, (3, IMAGE, IMAGE))
    limits = budgets(table, build_supernet(space, BaseStrategy()), args.fractions)
    rows: list[dict] = []
    rng = random.Random(args.seed)
    start = time.perf_counter()
    for family in args.families:
        for index in range(args.datasets):
            data = novel_classes(family, CLASSES, images_per_class=args.images_per_class, seed=100 + index)
            train, val, test = split_dataset(data, args.seed + index)
            for limit in limits:
                for method in args.methods:
                    for sample, seconds in search(method, limit, train, val, args, rng):
                        row = {'family': family, 'dataset': index, 'budget': limit, 'method': method}
                        row |= measure(sample, ConcatDataset([train, val]), test, args) | {'search_s': seconds}
                        rows.append(row | {'sample': sample})
                        print(
                            f'{family}/{index} budget {limit / 1e6:.3f} M {method}: acc {row["accuracy"]:.3f}, '
                            f'{row["macs"] / limit:.2f} of the budget, {seconds:.1f} s',
                            flush=True,
                        )
    return limits, rows, time.perf_counter() - start


def report(args: argparse.Namespace, limits: list[float], rows: list[dict], seconds: float | None) -> None:
    """Write the table, the picture and (unless it is what was read) the JSON."""
    took = f' in {seconds:.0f} s' if seconds is not None else ''
    lines = [
        '# Accuracy against cost under a MACs budget',
        '',
        '<!-- --8<-- [start:table] -->',
        *summarise(rows, limits, args.fractions),
        '',
        f'{len(rows)} retrained cells{took} ({", ".join(args.families)}, {args.datasets} datasets each, seed '
        f'{args.seed}; search epochs: BASE {args.base_epochs}, GumbelDARTS {args.darts_epochs}; retraining '
        f'{args.retrain_epochs} epochs).',
        '<!-- --8<-- [end:table] -->',
        '',
    ]
    out = args.output_dir
    if args.report is None:
        data = {'settings': settings_of(args), 'budgets': limits, 'rows': rows, 'seconds': seconds}
        write_json_result(f'{out}/budget_front.json', data)
    write_markdown_result(f'{out}/budget_front.md', '\n'.join(lines))
    plot(rows, limits, f'{out}/budget_front.png')
    print('\n'.join(lines))


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    quiet()
    torch.set_num_threads(args.threads)
    if args.report is not None:  # re-render a finished run's table and picture
        data = json.loads(Path(args.report).read_text())
        for name in ('families', 'datasets', 'fractions', 'seed', 'base_epochs', 'darts_epochs', 'retrain_epochs'):
            setattr(args, name, data['settings'][name])
        limits, rows, seconds = data['budgets'], data['rows'], data.get('seconds')
    else:
        limits, rows, seconds = run(args)
    report(args, limits, rows, seconds)
    return {'budgets': limits, 'rows': rows}


if __name__ == '__main__':
    main()
