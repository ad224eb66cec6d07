"""Does the prior's α learn the known answer? Meta-train on each task family and compare α with its ranking.

For each family, meta-train a prior on the family's meta-train classes through ``NasExperiment`` with
:class:`~nni_base.BaseStrategy`, then read α: per cell type, the mean probability of every operation
over the edges. Compared with the family's exhaustive ranking (``benchmarks/known_answer.py``):
whether α's top operation is the family's winner, Kendall τ between α's per-op probability and the
measured accuracies, and α's concentration (mean max probability per edge; uniform is 1/8).

    python benchmarks/alpha_recovery.py --known benchmarks/results/known_answer.json
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import warnings
from pathlib import Path

import torch
from nni.nas.experiment import NasExperiment

from nni_base import BaseStrategy, DartsTaskSpace, EpisodicClassification, TaskDistribution
from nni_base.data import digits_splits
from nni_base.data.families import family_splits
from nni_base.evaluation import DARTS_OPS, kendall_tau
from nni_base.io import write_json


def family_data(name: str, image_size: int):
    return digits_splits(image_size=image_size) if name == 'digits' else family_splits(name, image_size=image_size)


def alpha_summary(alphas: dict[str, torch.Tensor]) -> dict:
    out = {}
    for label, alpha in alphas.items():
        probs = torch.softmax(alpha.detach().float(), -1)
        per_op = probs[:, :len(DARTS_OPS)].mean(0).tolist()
        out[label] = {'per_op': dict(zip(DARTS_OPS, per_op)), 'top_op': DARTS_OPS[int(torch.tensor(per_op).argmax())],
                      'mean_max_prob': float(probs.max(-1).values.mean())}
    return out


def meta_train(name: str, args, seed: int, **strategy_kwargs) -> tuple[dict, float]:
    split = family_data(name, args.image_size)['train']
    tasks = TaskDistribution(split, args.ways, args.shots, args.queries, name=name)
    evaluator = EpisodicClassification(tasks, None, tasks_per_step=args.tasks_per_step,
                                       steps_per_epoch=args.meta_steps, seed=seed, max_epochs=1,
                                       enable_checkpointing=False, logger=False, enable_progress_bar=False,
                                       enable_model_summary=False)
    strategy = BaseStrategy(inner_steps=args.inner_steps, inner_batch_size=args.inner_batch_size, seed=seed,
                            **strategy_kwargs)
    space = DartsTaskSpace(width=args.width, num_cells=args.num_cells, num_classes=args.ways)
    start = time.time()
    exp = NasExperiment(space, evaluator, strategy)
    exp.run()
    seconds = time.time() - start
    exp.stop()
    return alpha_summary(strategy.oneshot_module.alphas()), seconds


def compare(summary: dict, known: dict) -> dict:
    acc = [known['ops'][op]['mean'] for op in DARTS_OPS]
    return {label: {'top_is_winner': s['top_op'] == known['winner'],
                    'kendall_tau': kendall_tau([s['per_op'][op] for op in DARTS_OPS], acc), **s}
            for label, s in summary.items()}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--known', type=Path, default=Path('benchmarks/results/known_answer.json'))
    p.add_argument('--families', nargs='+', default=None)
    p.add_argument('--seeds', type=int, nargs='+', default=[0])
    p.add_argument('--image-size', type=int, default=16)
    p.add_argument('--width', type=int, default=8)
    p.add_argument('--num-cells', type=int, default=4)
    p.add_argument('--ways', type=int, default=5)
    p.add_argument('--shots', type=int, default=20)
    p.add_argument('--queries', type=int, default=10)
    p.add_argument('--tasks-per-step', type=int, default=2)
    p.add_argument('--meta-steps', type=int, default=30)
    p.add_argument('--inner-steps', type=int, default=10)
    p.add_argument('--inner-batch-size', type=int, default=32)
    p.add_argument('--strategy', type=json.loads, default={}, help='extra BaseStrategy kwargs as JSON')
    p.add_argument('--output', type=Path, default=None)
    args = p.parse_args(argv)
    warnings.filterwarnings('ignore')
    logging.getLogger('nni').setLevel(logging.WARNING)
    known = json.loads(args.known.read_text())['families']
    results = {'settings': {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}, 'families': {}}
    for name in args.families or list(known):
        runs = []
        for seed in args.seeds:
            summary, seconds = meta_train(name, args, seed, **args.strategy)
            runs.append({'seed': seed, 'seconds': seconds, 'cells': compare(summary, known[name])})
            for label, c in runs[-1]['cells'].items():
                print(f"{name} seed {seed} {label}: top {c['top_op']} (winner {known[name]['winner']}) "
                      f"tau {c['kendall_tau']:.2f} max-p {c['mean_max_prob']:.3f}  ({seconds:.0f} s)", flush=True)
        results['families'][name] = runs
    if args.output is not None:
        write_json(args.output, results)
    return results


if __name__ == '__main__':
    main()
