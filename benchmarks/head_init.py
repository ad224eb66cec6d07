"""How to start a prior's rebuilt classifier on a dataset with another class count: class means, zero or random.

A 5-way prior (meta-trained as the demo does, or ``--prior``) adapts through ``NasExperiment`` + NNI's
``Classification`` to datasets of novel classes of its family (:func:`nni_base.data.families.novel_classes`)
with 3 and 10 classes, once per ``head_init``, same seed, same data, same epochs. Reported per setting: the
validation accuracy NNI reports after adaptation (the derived cell with the adapted shared weights) and the test
accuracy of the exported cell retrained from fresh weights with the demo's recipe; mean ± 95% CI over datasets
and the paired difference against ``'class_means'``::

    python benchmarks/head_init.py --output-dir benchmarks/results/head_init [--prior runs/quickstart/prior.pt]
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import time
import warnings
from pathlib import Path

import nni
import torch
from nni.nas.evaluator.pytorch import Classification
from nni.nas.experiment import NasExperiment
from torch.utils.data import ConcatDataset, DataLoader, random_split

from nni_base import BaseStrategy, DartsTaskSpace
from nni_base.cli.retrain.small import retrain_and_test
from nni_base.data.families import novel_classes
from nni_base.io import write_json, write_text
from nni_base.search.evaluation import mean_ci
from nni_base.search.head import HEAD_INITS

ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--output-dir', type=Path, default=Path('benchmarks/results/head_init'))
    p.add_argument('--prior', type=Path, default=Path('runs/quickstart/prior.pt'), help="the demo's prior")
    p.add_argument('--family', default='texture')
    p.add_argument('--classes', type=int, nargs='+', default=[3, 10])
    p.add_argument('--datasets', type=int, default=3, help='datasets per class count')
    p.add_argument('--epochs', type=int, default=6)
    p.add_argument('--retrain-epochs', type=int, default=6)
    p.add_argument('--width', type=int, default=8)
    p.add_argument('--num-cells', type=int, default=4)
    p.add_argument('--threads', type=int, default=2)
    return p.parse_args(argv)


def adapt(args, head_init: str, classes: int, train, val) -> tuple[float, dict, float]:
    torch.manual_seed(0)
    evaluator = Classification(
        learning_rate=0.02, optimizer=torch.optim.SGD, num_classes=classes,
        train_dataloaders=nni.trace(DataLoader)(train, batch_size=32, shuffle=True),
        val_dataloaders=nni.trace(DataLoader)(val, batch_size=32), max_epochs=args.epochs,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, logger=False)
    strategy = BaseStrategy(prior=args.prior, head_init=head_init)
    start = time.time()
    exp = NasExperiment(DartsTaskSpace(args.width, args.num_cells, classes), evaluator, strategy)
    exp.run()
    seconds = time.time() - start
    sample = exp.export_top_models(formatter='dict')[0]
    exp.stop()
    return float(strategy.oneshot_module.trainer.callback_metrics['val_acc']), sample, seconds


def main(argv=None) -> dict:
    args = parse_args(argv)
    warnings.filterwarnings('ignore')
    logging.getLogger('nni').setLevel(logging.ERROR)
    logging.getLogger('pytorch_lightning').setLevel(logging.ERROR)
    torch.set_num_threads(args.threads)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    rows: dict[str, dict[str, list[float]]] = {}
    for classes in args.classes:
        for index in range(args.datasets):
            data = novel_classes(args.family, classes, seed=100 + index)
            train, val, test = random_split(data, [0.6, 0.2, 0.2], generator=torch.Generator().manual_seed(index))
            for how in HEAD_INITS:
                val_acc, sample, seconds = adapt(args, how, classes, train, val)
                torch.manual_seed(0)
                net = DartsTaskSpace(args.width, args.num_cells, classes).freeze(sample)
                retrained = retrain_and_test(net, ConcatDataset([train, val]), test, epochs=args.retrain_epochs)
                row = rows.setdefault(f'{classes} classes / {how}', {'val_acc': [], 'retrained': [], 'seconds': []})
                row['val_acc'].append(val_acc)
                row['retrained'].append(retrained)
                row['seconds'].append(seconds)
                print(f'{classes} classes, dataset {index}, {how}: val {val_acc:.3f}, retrained {retrained:.3f}',
                      flush=True)
    lines = ['| setting | val acc after adaptation | paired vs class_means | retrained test acc | paired vs '
             'class_means |', '|---|---|---|---|---|']
    for name, row in rows.items():
        reference = rows[f'{name.split(" / ")[0]} / class_means']
        cells = []
        for key in ('val_acc', 'retrained'):
            m, h = mean_ci(row[key])
            d, dh = mean_ci([a - b for a, b in zip(row[key], reference[key])])
            cells += [f'{m:.3f} ± {h:.3f}', f'{d:+.3f} ± {dh:.3f}']
        lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
    table = '\n'.join(lines)
    commit = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    out = args.output_dir
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    write_json(out / 'head_init.json', {'commit': commit, 'settings': settings, 'rows': rows})
    write_text(out / 'head_init.md', f'Commit {commit}, {args.threads} threads.\n\n{table}\n')
    print(table)
    return rows


if __name__ == '__main__':
    main()
