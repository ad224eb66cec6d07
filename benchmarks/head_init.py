"""How to start a prior's rebuilt classifier on a dataset with another class count: class means, zero or random.

A 5-way prior (meta-trained as the demo does, or ``--prior``) adapts through ``NasExperiment`` + NNI's
``Classification`` to datasets of novel classes of its family (:func:`nni_base.data.families.novel_classes`)
with 3 and 10 classes, once per ``head_init``, same seed, same data, same epochs. Reported per setting: the
validation accuracy NNI reports after adaptation (the derived cell with the adapted shared weights) and the test
accuracy of the exported cell retrained from fresh weights with the demo's recipe; mean ± 95% CI over datasets
and the paired difference against ``'class_means'``::

    python -m benchmarks.head_init --output-dir benchmarks/results/head_init [--prior runs/quickstart/prior.pt]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch.utils.data import ConcatDataset

from benchmarks.common import (
    add_size_arguments,
    classification_search,
    darts_space,
    quiet,
    retrain,
    settings_of,
    split_dataset,
    write_json_result,
    write_markdown_result,
)
from nni_base import AdaptationConfig, BaseStrategy
from nni_base.data.families import novel_classes
from nni_base.search.evaluation import mean_ci
from nni_base.search.head import HEAD_INITS


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--output-dir', type=Path, default=Path('benchmarks/results/head_init'))
    p.add_argument('--prior', type=Path, default=Path('runs/quickstart/prior.pt'), help="the demo's prior")
    p.add_argument('--family', default='texture')
    p.add_argument('--classes', type=int, nargs='+', default=[3, 10])
    p.add_argument('--datasets', type=int, default=3, help='datasets per class count')
    p.add_argument('--epochs', type=int, default=6)
    p.add_argument('--retrain-epochs', type=int, default=6)
    add_size_arguments(p)
    return p.parse_args(argv)


def adapt(args, head_init: str, classes: int, train, val) -> tuple[float, dict, float]:
    strategy = BaseStrategy(prior=args.prior, adaptation=AdaptationConfig(head_init=head_init))
    sample, seconds = classification_search(
        darts_space(args.width, args.num_cells, classes),
        strategy,
        classes,
        train,
        val,
        epochs=args.epochs,
        seed=0,
        val_batch_size=32,
    )
    return float(strategy.oneshot_module.trainer.callback_metrics['val_acc']), sample, seconds


def main(argv=None) -> dict:
    args = parse_args(argv)
    quiet()
    torch.set_num_threads(args.threads)
    rows: dict[str, dict[str, list[float]]] = {}
    for classes in args.classes:
        for index in range(args.datasets):
            data = novel_classes(args.family, classes, seed=100 + index)
            train, val, test = split_dataset(data, index)
            for how in HEAD_INITS:
                val_acc, sample, seconds = adapt(args, how, classes, train, val)
                retrained = retrain(
                    darts_space(args.width, args.num_cells, classes),
                    sample,
                    ConcatDataset([train, val]),
                    test,
                    epochs=args.retrain_epochs,
                )
                row = rows.setdefault(f'{classes} classes / {how}', {'val_acc': [], 'retrained': [], 'seconds': []})
                row['val_acc'].append(val_acc)
                row['retrained'].append(retrained)
                row['seconds'].append(seconds)
                print(
                    f'{classes} classes, dataset {index}, {how}: val {val_acc:.3f}, retrained {retrained:.3f}',
                    flush=True,
                )
    lines = [
        '| setting | val acc after adaptation | paired vs class_means | retrained test acc | paired vs class_means |',
        '|---|---|---|---|---|',
    ]
    for name, row in rows.items():
        reference = rows[f'{name.split(" / ")[0]} / class_means']
        cells = []
        for key in ('val_acc', 'retrained'):
            m, h = mean_ci(row[key])
            d, dh = mean_ci([a - b for a, b in zip(row[key], reference[key])])
            cells += [f'{m:.3f} ± {h:.3f}', f'{d:+.3f} ± {dh:.3f}']
        lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
    table = '\n'.join(lines)
    out = args.output_dir
    write_json_result(out / 'head_init.json', {'settings': settings_of(args), 'rows': rows})
    write_markdown_result(out / 'head_init.md', table)
    print(table)
    return rows


if __name__ == '__main__':
    main()
