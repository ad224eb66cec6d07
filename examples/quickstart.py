"""Quickstart: meta-train a BASE prior on a task family, then search held-out classes three ways and retrain.

Runs on the package's procedural ``texture`` family (16x16 images whose class is the orientation and period
of a faint grating under strong noise; no download) on 2 CPU cores (how long it took: the README)::

    python examples/quickstart.py --output-dir runs/quickstart

1. Meta-train a prior on the family's meta-training classes (``NasExperiment`` + ``EpisodicClassification``).
2. On a dataset of the held-out classes, search for the same epochs through ``NasExperiment`` + NNI's
   ``Classification`` — BASE from that prior, BASE from the prior nni-base ships (``prior='default'``, meta-trained
   on the ground-truth database's seven families; not on these classes), ``BaseStrategy()`` without a prior, NNI's
   ``GumbelDARTS`` — and retrain every exported cell from fresh weights with one recipe, scored on test images no
   search saw.

Writes to the output directory (each result file atomically):

* ``prior.pt``            the meta-trained prior (weights + architecture distribution)
* ``arch.json``           the architecture adapted from the prior, an NNI sample (freezes into DartsTaskSpace)
* ``probs.json``          the probability of every operation on every edge after adaptation
* ``genotype.txt``        the same cells in the DARTS genotype notation
* ``cells.png``           picture of the normal and reduction cells
* ``prior.png``           the prior's per-edge operation probabilities beside the cell it exports
* ``meta_curves.png``     meta-training curves (query accuracy before/after adaptation, outer loss)
* ``summary.json``        the table printed at the end, with timings
* ``logs/``               Lightning CSV logs of meta-training and of each search
"""

from __future__ import annotations

# first: importing nni_base filters NNI's "PyTorch version might not be supported" warnings, which NNI prints
# when nni.nas is imported before it
import nni_base  # noqa: F401

# isort: split
import argparse
import logging
import os
import random
import statistics
import time
import warnings
from pathlib import Path

import nni
import torch
from nni.nas.evaluator.pytorch import Classification
from nni.nas.experiment import NasExperiment
from nni.nas.oneshot.pytorch.strategy import GumbelDARTS
from pytorch_lightning.loggers import CSVLogger
from torch.utils.data import ConcatDataset, DataLoader, random_split

from nni_base import (
    BaseStrategy,
    DartsTaskSpace,
    EpisodicClassification,
    MetaTrainingConfig,
    TaskDistribution,
    prior_space,
)
from nni_base.cli.retrain.small import retrain_and_test
from nni_base.data.families import FAMILIES, family_splits
from nni_base.io import UnusablePathError, check_output_dir, write_json, write_text
from nni_base.search.top_k import darts_cell_shapes, random_architecture
from nni_base.space.genotype import format_genotype, sample_to_genotype
from nni_base.viz.plotting import plot_cells, plot_curves, plot_prior

DARTS_SHAPES = darts_cell_shapes()
#: What the demo writes into --output-dir (besides logs/).
OUTPUT_FILES = (
    'prior.pt',
    'arch.json',
    'probs.json',
    'genotype.txt',
    'cells.png',
    'prior.png',
    'meta_curves.png',
    'summary.json',
)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog='quickstart.py', description=__doc__.split('\n')[0])
    p.add_argument('--output-dir', type=Path, default=Path('runs/quickstart'))
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--family', default='texture', choices=FAMILIES)
    p.add_argument('--ways', type=int, default=5)
    p.add_argument('--shots', type=int, default=20)
    p.add_argument('--queries', type=int, default=10)
    p.add_argument('--width', type=int, default=8)
    p.add_argument('--num-cells', type=int, default=3)  # the shipped prior's space: every row searches the same one
    p.add_argument(
        '--shipped-prior', default='default',
        help="also search from this shipped prior, in its own space ('none': leave the row out)",
    )  # fmt: skip
    p.add_argument('--meta-epochs', type=int, default=3)
    p.add_argument('--steps-per-epoch', type=int, default=10)
    p.add_argument('--tasks-per-step', type=int, default=2)
    p.add_argument('--inner-steps', type=int, default=10)
    p.add_argument('--inner-batch-size', type=int, default=32)
    # held-out dataset: images per class, split 60/20/20 into search-train / search-validation / test
    p.add_argument('--images-per-class', type=int, default=60)
    # every search runs this many epochs (6 x 6 steps of 32 images): alpha (Adam 0.3) concentrates and, from a
    # prior, the derived cell gets trained
    p.add_argument('--search-epochs', type=int, default=6)
    # a short retraining budget (6 epochs of 240 images): the cells differ in how fast they learn; at 15 epochs most
    # cells of this space approach the same accuracy on this family
    p.add_argument('--retrain-epochs', type=int, default=6)
    p.add_argument('--random-cells', type=int, default=4)
    p.add_argument(
        '--threads', type=int, default=None,
        help="torch threads of every fit (default: nni-base's rule, one thread for its searches on a CPU)",
    )  # fmt: skip
    args = p.parse_args(argv)
    try:  # now, not after minutes of meta-training: one line that says what the path is
        check_output_dir(args.output_dir, '--output-dir', files=OUTPUT_FILES, folders=('logs',))
    except UnusablePathError as e:
        raise SystemExit(f'{p.prog}: error: {e}') from None
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    warnings.filterwarnings('ignore', category=UserWarning)
    logging.getLogger('nni').setLevel(logging.WARNING)
    if args.threads is not None:  # nni-base's fits read NNI_BASE_THREADS; the retraining runs on torch's count
        os.environ['NNI_BASE_THREADS'] = str(args.threads)
        torch.set_num_threads(args.threads)
    out = args.output_dir
    out.mkdir(parents=True, exist_ok=True)

    def space() -> DartsTaskSpace:
        return DartsTaskSpace(width=args.width, num_cells=args.num_cells, num_classes=args.ways)

    splits = family_splits(args.family, image_size=16, images_per_class=args.images_per_class, seed=args.seed)
    train_tasks = TaskDistribution(splits['train'], args.ways, args.shots, args.queries, name=f'{args.family}-train')
    heldout_tasks = TaskDistribution(splits['test'], args.ways, args.shots, args.queries, name=f'{args.family}-heldout')
    print(
        f'Meta-training on {train_tasks.num_classes} {args.family} classes, held-out: '
        f'{heldout_tasks.num_classes} classes'
    )

    # 1. Meta-train the prior.
    evaluator = EpisodicClassification(
        train_tasks,
        heldout_tasks,
        tasks_per_step=args.tasks_per_step,
        steps_per_epoch=args.steps_per_epoch,
        val_episodes=2,
        seed=args.seed,
        max_epochs=args.meta_epochs,
        enable_checkpointing=False,
        logger=CSVLogger(out / 'logs', name='meta'),
        log_every_n_steps=1,
    )
    strategy = BaseStrategy(
        inner_steps=args.inner_steps,
        save_prior_to=out / 'prior.pt',
        seed=args.seed,
        meta_training=MetaTrainingConfig(inner_batch_size=args.inner_batch_size),
    )
    start = time.time()
    meta_exp = NasExperiment(space(), evaluator, strategy)
    meta_exp.run()
    meta_exp.stop()
    meta_seconds = time.time() - start

    prior_alpha = {label: torch.softmax(a.detach(), -1) for label, a in strategy.oneshot_module.alphas().items()}
    concentration = {label: float(p.max(-1).values.mean()) for label, p in prior_alpha.items()}
    plot_prior(strategy.export_sample(), strategy.export_probs(), out / 'prior.png')

    # 2. One held-out dataset, three searches through NNI for the same epochs, every cell retrained alike.
    data = splits['test'].subset_classes(list(range(args.ways)))
    search_train, search_val, test = random_split(
        data, [0.6, 0.2, 0.2], generator=torch.Generator().manual_seed(args.seed)
    )
    methods = {'BASE from the prior': (space, lambda: BaseStrategy(prior=out / 'prior.pt', seed=args.seed))}
    if args.shipped_prior != 'none':  # meta-trained on the database's seven families, texture's held-out classes unseen
        methods['BASE from the shipped prior'] = (
            lambda: prior_space(args.shipped_prior, num_classes=args.ways),
            lambda: BaseStrategy(prior=args.shipped_prior, seed=args.seed),
        )
    methods['BASE without a prior'] = (space, lambda: BaseStrategy(seed=args.seed))
    methods["NNI's GumbelDARTS"] = (space, GumbelDARTS)
    rows, adapt_strategy = {}, None

    def retrain(sample: dict, make_space=space) -> float:
        torch.manual_seed(args.seed)  # the same fresh weights' stream for every cell
        return retrain_and_test(
            make_space().freeze(sample),
            ConcatDataset([search_train, search_val]),
            test,
            epochs=args.retrain_epochs,
            seed=args.seed,
        )

    for name, (make_space, make_strategy) in methods.items():
        torch.manual_seed(args.seed)
        search_eval = Classification(
            learning_rate=0.02,
            optimizer=torch.optim.SGD,
            num_classes=args.ways,
            train_dataloaders=nni.trace(DataLoader)(search_train, batch_size=32, shuffle=True),
            val_dataloaders=nni.trace(DataLoader)(search_val, batch_size=32),
            max_epochs=args.search_epochs,
            enable_checkpointing=False,
            enable_progress_bar=False,
            logger=CSVLogger(out / 'logs', name=name.lower().replace(' ', '_').replace("'", '')),
        )
        search_strategy = make_strategy()
        start = time.time()
        exp = NasExperiment(make_space(), search_eval, search_strategy)
        exp.run()
        seconds = time.time() - start
        sample = exp.export_top_models(formatter='dict')[0]
        exp.stop()
        accuracy = retrain(sample, make_space)
        rows[name] = {
            'search_seconds': round(seconds, 1),
            'retrained_test_accuracy': round(accuracy, 4),
            'genotype': format_genotype(sample_to_genotype(sample)),
        }
        print(f'  {name}: searched in {seconds:.0f} s, retrained test accuracy {accuracy:.3f}')
        if adapt_strategy is None:
            adapt_strategy, adapted_sample = search_strategy, sample
    rng = random.Random(args.seed)
    random_accuracies = [retrain(random_architecture(DARTS_SHAPES, rng)) for _ in range(args.random_cells)]
    rows[f'random cells (median of {args.random_cells})'] = {
        'search_seconds': 0.0,
        'retrained_test_accuracy': round(float(statistics.median(random_accuracies)), 4),
        'all': [round(a, 4) for a in random_accuracies],
    }
    adapted_concentration = {
        label: float(torch.softmax(a.detach(), -1).max(-1).values.mean())
        for label, a in adapt_strategy.oneshot_module.alphas().items()
    }

    write_json(out / 'arch.json', adapted_sample)
    write_json(out / 'probs.json', adapt_strategy.export_probs())
    write_text(out / 'genotype.txt', format_genotype(sample_to_genotype(adapted_sample)) + '\n')
    plot_cells(adapted_sample, out / 'cells.png')
    meta_csv = Path(evaluator.trainer.logger.log_dir) / 'metrics.csv'
    plot_curves(
        meta_csv,
        out / 'meta_curves.png',
        [
            'query_acc_before_step',
            'query_acc_after_step',
            'outer_loss_step',
            'alpha_max_prob/normal',
            'alpha_max_prob/reduce',
        ],
    )

    summary = {
        'dataset': {
            'family': args.family,
            'classes': args.ways,
            'search_train': len(search_train),
            'search_val': len(search_val),
            'test': len(test),
        },
        'search_epochs': args.search_epochs,
        'retrain_epochs': args.retrain_epochs,
        'methods': rows,
        'prior_alpha_mean_max_prob': concentration,
        'adapted_alpha_mean_max_prob': adapted_concentration,
        'meta_train_seconds': round(meta_seconds, 1),
    }
    write_json(out / 'summary.json', summary)
    print(
        f'\nHeld-out {args.family} classes ({args.ways} classes: {len(search_train)} search-train, '
        f'{len(search_val)} search-validation, {len(test)} test images), {args.search_epochs} search epochs '
        f'through NasExperiment + Classification, every exported cell retrained from fresh weights '
        f'({args.retrain_epochs} epochs, one recipe):'
    )
    print(f'  {"method":<28} {"search s":>8} {"retrained test acc":>19}')
    for name, row in rows.items():
        print(f'  {name:<28} {row["search_seconds"]:>8.0f} {row["retrained_test_accuracy"]:>19.3f}')
    print(
        f'Meta-training took {meta_seconds:.0f} s; alpha concentration (mean max probability per edge, uniform '
        '0.125): prior '
        + ', '.join(f'{label} {value:.2f}' for label, value in concentration.items())
        + '; adapted '
        + ', '.join(f'{label} {value:.2f}' for label, value in adapted_concentration.items())
    )
    print(
        f'Architecture: {out / "arch.json"}  pictures: {out / "cells.png"}, {out / "prior.png"}  '
        f'prior: {out / "prior.pt"}'
    )
    return summary


if __name__ == '__main__':
    main()
