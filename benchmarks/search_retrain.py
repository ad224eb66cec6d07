"""Search → retrain (the paper's Table 1 at CPU scale), on the path users run: NasExperiment + Classification.

For each known-answer family, a prior is meta-trained through the README's API on the family's meta-training
classes (5-way tasks). Then, on each held-out dataset — classes no split of the family has
(:func:`nni_base.data.families.novel_classes`), with 5 or 10 classes — every method searches for the same epochs
through ``NasExperiment`` + NNI's ``Classification`` on the dataset's search split, and every exported cell is
retrained from fresh weights with one recipe (:func:`nni_base.cli.retrain.small.retrain_and_test`) and tested on
images no search saw. Methods: BASE from the prior (default, and ``freeze_architecture_after=0``: the prior's
derived cell trained from the first step), ``BaseStrategy()`` without a prior, NNI's ``GumbelDARTS`` and
``DARTS``, and random cells of the space. Reported: mean ± 95% t-interval of retrained accuracy over datasets,
the paired difference of each method against BASE from the prior, search seconds, and a picture of retrained
accuracy against search time::

    python -m benchmarks.search_retrain --output-dir benchmarks/results/search_retrain [--quick]

Run it on an otherwise idle machine: torch uses ``--threads`` threads (2 by default).
"""

from __future__ import annotations

import argparse
import logging
import random
from pathlib import Path

import numpy as np
import torch
from nni.nas.oneshot.pytorch.strategy import DARTS, GumbelDARTS
from torch.utils.data import ConcatDataset

from benchmarks.common import (
    add_size_arguments,
    classification_search,
    darts_space,
    family_data,
    meta_train,
    quiet,
    retrain,
    save_figure,
    settings_of,
    split_dataset,
    write_json_result,
    write_markdown_result,
)
from nni_base import BaseStrategy, TaskDistribution
from nni_base.data.families import novel_classes
from nni_base.search.evaluation import mean_ci
from nni_base.search.top_k import darts_cell_shapes, random_architecture

DARTS_SHAPES = darts_cell_shapes()


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--output-dir', type=Path, default=Path('benchmarks/results/search_retrain'))
    p.add_argument('--families', nargs='+', default=['texture', 'peaks'])
    p.add_argument('--datasets', type=int, default=5, help='held-out datasets per family')
    p.add_argument('--random-cells', type=int, default=10)
    p.add_argument('--search-epochs', type=int, default=6)
    p.add_argument('--retrain-epochs', type=int, default=6)
    p.add_argument('--meta-epochs', type=int, default=3)
    p.add_argument('--meta-steps', type=int, default=10, help='meta-steps per epoch (of 4 tasks)')
    p.add_argument('--images-per-class', type=int, default=60)
    add_size_arguments(p)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--quick', action='store_true', help='tiny sizes, to check that the script runs')
    args = p.parse_args(argv)
    if args.quick:
        args.families, args.datasets, args.random_cells = args.families[:1], 2, 2
        args.search_epochs, args.retrain_epochs, args.meta_epochs, args.meta_steps, args.images_per_class = (
            1,
            1,
            1,
            1,
            12,
        )
        args.width, args.num_cells = 4, 3
    return args


def meta_train_family(args, family: str, out: Path) -> Path:
    """A prior through the README's API at its defaults (5-way, 4 tasks per meta-step, 10 meta-steps per epoch)."""
    train = TaskDistribution(family_data(family, seed=args.seed)['train'], 5, 5, 5, name=f'{family}-train')
    path = out / f'prior_{family}.pt'
    meta_train(
        darts_space(args.width, args.num_cells, 5),
        train,
        path,
        tasks_per_step=4,
        steps_per_epoch=args.meta_steps,
        max_epochs=args.meta_epochs,
        seed=args.seed,
    )
    return path


def run_dataset(args, family: str, index: int, prior: Path) -> dict[str, dict]:
    classes = 10 if index % 2 else 5  # every other dataset has another class count than meta-training
    data = novel_classes(family, classes, images_per_class=args.images_per_class, seed=args.seed + 1 + index)
    search_train, search_val, test = split_dataset(data, index)
    retrain_set = ConcatDataset([search_train, search_val])
    methods = {
        'BASE from the prior': lambda: BaseStrategy(prior=prior, seed=args.seed),
        'BASE from the prior, freeze at 0': lambda: BaseStrategy(
            prior=prior, freeze_architecture_after=0, seed=args.seed
        ),
        'BaseStrategy() without a prior': lambda: BaseStrategy(seed=args.seed),
        "NNI's GumbelDARTS": GumbelDARTS,
        "NNI's DARTS": DARTS,
    }
    rows: dict[str, dict] = {}

    def retrained(sample: dict) -> float:
        return retrain(
            darts_space(args.width, args.num_cells, classes),
            sample,
            retrain_set,
            test,
            epochs=args.retrain_epochs,
            seed=args.seed,
        )

    for name, make in methods.items():
        sample, seconds = classification_search(
            darts_space(args.width, args.num_cells, classes),
            make(),
            classes,
            search_train,
            search_val,
            epochs=args.search_epochs,
            seed=args.seed,
            val_batch_size=128,
        )
        rows[name] = {'accuracy': retrained(sample), 'seconds': seconds}
        logging.getLogger('bench').warning(
            '%s #%d (%d classes) %s: %.3f in %.0f s', family, index, classes, name, rows[name]['accuracy'], seconds
        )
    rng = random.Random(1000 * index + args.seed)
    randoms = [retrained(random_architecture(DARTS_SHAPES, rng)) for _ in range(args.random_cells)]
    rows['random cell (median)'] = {'accuracy': float(np.median(randoms)), 'seconds': 0.0, 'all': randoms}
    return rows


def summarise(results: dict[str, list[dict]]) -> tuple[dict, str]:
    summary, lines = {}, []
    for family, datasets in results.items():
        lines += [
            f'### {family} ({len(datasets)} held-out datasets)',
            '',
            '| method | retrained accuracy (mean ± 95% CI) | paired diff vs BASE from the prior | search s |',
            '|---|---|---|---|',
        ]
        reference = [d['BASE from the prior']['accuracy'] for d in datasets]
        summary[family] = {}
        for method in datasets[0]:
            acc = [d[method]['accuracy'] for d in datasets]
            diff = mean_ci([a - r for a, r in zip(acc, reference)])
            seconds = float(np.mean([d[method]['seconds'] for d in datasets]))
            summary[family][method] = {'mean_ci': mean_ci(acc), 'paired_diff_ci': diff, 'seconds': seconds}
            m, h = mean_ci(acc)
            lines.append(f'| {method} | {m:.3f} ± {h:.3f} | {diff[0]:+.3f} ± {diff[1]:.3f} | {seconds:.0f} |')
        lines.append('')
    return summary, '\n'.join(lines)


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(summary), figsize=(5 * len(summary), 4), squeeze=False)
    for ax, (family, methods) in zip(axes[0], summary.items()):
        for method, row in methods.items():
            (m, h), s = row['mean_ci'], row['seconds']
            ax.errorbar(max(s, 1.0), m, yerr=h, fmt='o', capsize=3, label=method)
        ax.set_xscale('log')
        ax.set(title=family, xlabel='search seconds (log; random cells: 0, drawn at 1)', ylabel='retrained accuracy')
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def main(argv=None) -> dict:
    args = parse_args(argv)
    quiet()
    torch.set_num_threads(args.threads)
    out = args.output_dir
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for family in args.families:
        prior = meta_train_family(args, family, out)
        results[family] = [run_dataset(args, family, i, prior) for i in range(args.datasets)]
    summary, table = summarise(results)
    write_json_result(
        out / 'search_retrain.json',
        {'threads': args.threads, 'settings': settings_of(args), 'summary': summary, 'per_dataset': results},
    )
    write_markdown_result(out / 'search_retrain.md', table)
    plot(summary, out / 'search_retrain.png')
    print(table)
    return summary


if __name__ == '__main__':
    main()
