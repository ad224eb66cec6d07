"""Few-shot BASE (paper section 6.3): search cells for few-shot learning, train them with MAML, test them.

Compares, on the same meta-train episodes and the same test episodes:

* ``base-gumbel``   few-shot BASE: second-order MAML over weights and Gumbel-softmax alpha (the paper's method)
* ``base-softmax``  the ablation: alpha relaxed with a plain softmax (DARTS-style mixture) instead of Gumbel
* ``darts``         NNI's DARTS search on all meta-train classes pooled into one problem (no meta-learning)
* ``conv4``         the standard 4-layer conv learner of MAML (no search)

Every found architecture is frozen into NNI's DARTS space (the "full network") and trained with second-order MAML
on the search's episodes; each method is scored by mean query accuracy after adaptation over ``--test-episodes``
held-out episodes (classes never seen in meta-training), with a 95% confidence interval.

Default data: the embedded digits (no download), classes = digit x rotation, meta-train digits 0-5, meta-val 6-7,
meta-test 8-9::

    python examples/fewshot.py --output-dir runs/fewshot

Mini-ImageNet (learn2learn's cache pickles) or Omniglot (torchvision layout) from a root you provide::

    python examples/fewshot.py --data mini-imagenet --data-root /data/mini-imagenet --image-size 84 --width 16

The accuracies depend on the number of torch threads (a parallel sum rounds differently), so ``--threads`` is fixed
(default 1) instead of following the machine's core count: the same seed and thread count give the same table.

Writes ``results.json``, ``results.md`` (the table), ``arch_<method>.json`` (NNI samples), ``cells_<method>.png``
and Lightning CSV logs under ``logs/``.
"""

from __future__ import annotations

import argparse
import logging
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import CSVLogger

# NNI 3.0 warns once per unknown torch class at import; irrelevant here, and it would bury the results.
warnings.filterwarnings('ignore', message='.*(not a nn.Module|does not have many workers|LeafSpec).*')

from nni_base import TaskDistribution  # noqa: E402
from nni_base.data import digits_splits, load_mini_imagenet, omniglot_splits  # noqa: E402
from nni_base.fewshot import (  # noqa: E402
    Conv4,
    count_parameters,
    darts_cells_without_meta,
    evaluate_fewshot,
    full_network,
    search_cells,
    train_maml,
)
from nni_base.io import write_json, write_text  # noqa: E402
from nni_base.viz.plotting import plot_cells  # noqa: E402

METHODS = ('base-gumbel', 'base-softmax', 'darts', 'conv4')
TITLES = {'base-gumbel': 'BASE (Gumbel)', 'base-softmax': 'BASE (Softmax)',
          'darts': 'DARTS search, no meta-learning', 'conv4': 'MAML 4-layer conv'}


def timed(fn, *args, **kwargs) -> tuple[Any, float]:
    """``fn(*args, **kwargs)`` and its wall time in seconds."""
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--output-dir', type=Path, default=Path('runs/fewshot'))
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--data', choices=['digits', 'mini-imagenet', 'omniglot'], default='digits')
    p.add_argument('--data-root', type=Path, help='folder of the Mini-ImageNet pickles / Omniglot images')
    p.add_argument('--image-size', type=int, default=None, help='resize images (default: native size)')
    p.add_argument('--methods', nargs='+', choices=METHODS, default=list(METHODS))
    p.add_argument('--ways', type=int, default=5)
    p.add_argument('--shots', type=int, default=5)
    p.add_argument('--queries', type=int, default=5)
    p.add_argument('--width', type=int, default=8, help='channels of the search network and the full network')
    p.add_argument('--num-cells', type=int, default=3, help='cells of the search network')
    p.add_argument('--full-cells', type=int, default=3, help='cells of the full network trained with MAML')
    p.add_argument('--tasks-per-step', type=int, default=4)
    p.add_argument('--search-steps', type=int, default=20, help='meta-steps of the BASE searches')
    p.add_argument('--darts-steps', type=int, default=20, help='weight+alpha steps of the DARTS search')
    p.add_argument('--search-inner-steps', type=int, default=1,
                   help='unrolled inner steps per task during search (second order through all of them)')
    p.add_argument('--train-steps', type=int, default=60, help='MAML meta-steps of the final training')
    p.add_argument('--inner-steps', type=int, default=3, help='MAML inner steps in final training and test')
    p.add_argument('--inner-lr', type=float, default=0.1)
    p.add_argument('--meta-lr', type=float, default=3e-3)
    p.add_argument('--test-episodes', type=int, default=600)
    p.add_argument('--threads', type=int, default=1,
                   help='torch CPU threads; the results depend on it (parallel sums round differently), so the '
                        'default is fixed rather than the machine\'s core count: same seed + same threads = same table')
    p.add_argument('--progress', action='store_true', help='show Lightning progress bars')
    return p.parse_args(argv)


def load_splits(args: argparse.Namespace) -> dict[str, Any]:
    if args.data == 'digits':
        return digits_splits(image_size=args.image_size or 8, val_digits=(6, 7))
    if args.data_root is None:
        sys.exit(f'--data {args.data} needs --data-root (nothing is downloaded)')
    if args.data == 'mini-imagenet':
        return {'train': load_mini_imagenet(args.data_root, 'train', args.image_size),
                'val': load_mini_imagenet(args.data_root, 'validation', args.image_size),
                'test': load_mini_imagenet(args.data_root, 'test', args.image_size)}
    return omniglot_splits(args.data_root, image_size=args.image_size or 28)


def markdown_table(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [f'{args.ways}-way {args.shots}-shot on {args.data}, {args.test_episodes} test episodes '
             f'(mean query accuracy after {args.inner_steps} MAML steps, 95% CI), seed {args.seed}', '',
             '| architecture | test accuracy | params | search (s) | MAML training (s) | few-shot training |',
             '|---|---|---|---|---|---|']
    for r in rows:
        search = '-' if r['search_s'] is None else f"{r['search_s']:.0f}"
        lines.append(f"| {r['title']} | {100 * r['test_acc']:.2f} ± {100 * r['test_ci95']:.2f}% | "
                     f"{r['params'] / 1e3:.1f} K | {search} | {r['train_s']:.0f} | MAML (2nd order) |")
    return '\n'.join(lines) + '\n'


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.threads < 1:
        sys.exit(f'--threads must be at least 1, got {args.threads}')
    threads_before = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return run(args, argv)
    finally:
        torch.set_num_threads(threads_before)  # main() called from Python leaves the caller's setting as it was


def run(args: argparse.Namespace, argv: list[str] | None) -> dict[str, Any]:
    out = args.output_dir
    out.mkdir(parents=True, exist_ok=True)
    logging.getLogger('nni').setLevel(logging.WARNING)

    splits = load_splits(args)
    tasks = {name: TaskDistribution(data, args.ways, args.shots, args.queries, name=f'{args.data}-{name}')
             for name, data in splits.items()}
    channels, size = tasks['train'].image_shape[0], tasks['train'].image_shape[-1]
    print(f'meta-train {tasks["train"].num_classes} classes, meta-val {tasks["val"].num_classes}, '
          f'meta-test {tasks["test"].num_classes}; images {tasks["train"].image_shape}')

    def trainer_kwargs(name: str) -> dict[str, Any]:
        return dict(logger=CSVLogger(out / 'logs', name=name), enable_progress_bar=args.progress,
                    enable_checkpointing=False, enable_model_summary=False, log_every_n_steps=5)

    common = dict(tasks_per_step=args.tasks_per_step, seed=args.seed)
    rows = []
    for method in args.methods:
        print(f'== {TITLES[method]}')
        pl.seed_everything(args.seed, verbose=False)
        sample, search_s = None, None
        if method.startswith('base'):
            relaxation = method.split('-')[1]
            sample, search_s = timed(search_cells, tasks['train'], tasks['val'], width=args.width,
                                     num_cells=args.num_cells, steps_per_epoch=args.search_steps,
                                     inner_steps=args.search_inner_steps, inner_lr=args.inner_lr,
                                     relaxation=relaxation, trainer_kwargs=trainer_kwargs(f'search-{method}'),
                                     **common)
        elif method == 'darts':
            sample, search_s = timed(darts_cells_without_meta, splits['train'], splits['train'].num_classes,
                                     width=args.width, num_cells=args.num_cells, steps=args.darts_steps,
                                     seed=args.seed, trainer_kwargs=dict(enable_progress_bar=args.progress,
                                                                         enable_model_summary=False))
        if sample is not None:
            write_json(out / f'arch_{method}.json', sample)
            plot_cells(sample, out / f'cells_{method}.png')
            model = full_network(sample, args.ways, width=args.width, num_cells=args.full_cells)
        else:
            model = Conv4(args.ways, channels=channels, hidden=32, image_size=size)
        module, train_s = timed(train_maml, model, tasks['train'], tasks['val'], steps_per_epoch=args.train_steps,
                                inner_steps=args.inner_steps, inner_lr=args.inner_lr, meta_lr=args.meta_lr,
                                **common, **trainer_kwargs(f'maml-{method}'))
        score, test_s = timed(evaluate_fewshot, module, tasks['test'], episodes=args.test_episodes,
                              seed=args.seed + 1000, enable_progress_bar=args.progress)
        row = {'method': method, 'title': TITLES[method], 'test_acc': score.mean, 'test_ci95': score.ci95,
               'episodes': score.episodes, 'params': count_parameters(model), 'search_s': search_s,
               'train_s': train_s, 'test_s': test_s}
        print(f'   test accuracy {score}  params {row["params"]}  search {search_s or 0:.0f}s  '
              f'MAML {train_s:.0f}s  test {test_s:.0f}s')
        rows.append(row)

    table = markdown_table(rows, args)
    results = {'args': {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
               'command': 'python examples/fewshot.py ' + ' '.join(sys.argv[1:] if argv is None else argv),
               'machine': {'platform': platform.platform(), 'torch_threads': torch.get_num_threads(),
                           'torch': torch.__version__},
               'rows': rows, 'finished': time.strftime('%Y-%m-%d %H:%M:%S')}
    write_json(out / 'results.json', results)
    write_text(out / 'results.md', table)
    print('\n' + table)
    print(f'results in {out}/ (results.json, results.md, arch_*.json, cells_*.png, logs/)')
    return results


if __name__ == '__main__':
    main()
