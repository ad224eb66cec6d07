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

Several search seeds and matched parameter counts (the README's table)::

    python examples/fewshot.py --search-seeds 0 1 2 --match-params --output-dir runs/fewshot-seeds

``--search-seeds`` runs every method once per seed (search and final MAML training with that seed; Conv4, which has
no search, is trained once per seed too) and tests every network on the same test episodes (seed ``--seed`` + 1000,
whatever the search seed); the table gives per method the mean over seeds, the per-seed accuracies, the 95% CI over
the pooled per-episode accuracies of all seeds and the standard deviation across seeds, then paired differences
against the first method on the shared episodes. ``--match-params`` picks each full network's width (and Conv4's
filters) so its parameter count is nearest a common budget: ``--param-budget N``, by default the count of Conv4 with
32 filters.

The accuracies depend on the number of torch threads (a parallel sum rounds differently), so ``--threads`` is fixed
(default 1) instead of following the machine's core count: the same seed and thread count give the same table.

Writes ``results.json``, ``results.md`` (the table), ``episodes.json`` (per-episode test accuracies),
``arch_<method>.json`` (NNI samples), ``cells_<method>.png`` (with several seeds: ``arch_<method>-seed<s>.json``,
``cells_<method>-seed<s>.png``) and Lightning CSV logs under ``logs/``.
"""

from __future__ import annotations

import argparse
import logging
import math
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
    FewShotScore,
    count_parameters,
    darts_cells_without_meta,
    evaluate_fewshot,
    full_network,
    mean_ci,
    search_cells,
    summarize_seeds,
    train_maml,
    width_for_budget,
)
from nni_base.io import write_json, write_text  # noqa: E402
from nni_base.viz.plotting import plot_cells  # noqa: E402

METHODS = ('base-gumbel', 'base-softmax', 'darts', 'conv4')
TITLES = {
    'base-gumbel': 'BASE (Gumbel)',
    'base-softmax': 'BASE (Softmax)',
    'darts': 'DARTS search, no meta-learning',
    'conv4': 'MAML 4-layer conv',
}
CONV4_HIDDEN = 32  # MAML's Conv4 filters (Mini-ImageNet setting); the default parameter budget of --match-params


def timed(fn, *args, **kwargs) -> tuple[Any, float]:
    """``fn(*args, **kwargs)`` and its wall time in seconds."""
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split('\n')[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument('--output-dir', type=Path, default=Path('runs/fewshot'))
    p.add_argument(
        '--seed',
        type=int,
        default=0,
        help='seed of the run; the test episodes use seed + 1000. Without --search-seeds it is also the '
        'search and training seed',
    )
    p.add_argument(
        '--search-seeds',
        type=int,
        nargs='+',
        default=None,
        metavar='S',
        help='run each method once per seed (search and final MAML training with that seed; Conv4 is '
        'trained once per seed) and test every network on the same episodes (seed --seed + 1000); '
        'the table reports the mean over seeds, per-seed accuracies, the pooled 95%% CI and the '
        'across-seed spread (default: the single seed --seed)',
    )
    p.add_argument(
        '--match-params',
        action='store_true',
        help="pick each full network's width (Conv4: its filters) so that its parameter count is nearest "
        '--param-budget, instead of --width / 32 filters',
    )
    p.add_argument(
        '--param-budget',
        type=int,
        default=None,
        metavar='N',
        help='parameter budget of --match-params (implies it); default: Conv4 with 32 filters',
    )
    p.add_argument('--data', choices=['digits', 'mini-imagenet', 'omniglot'], default='digits')
    p.add_argument('--data-root', type=Path, help='folder of the Mini-ImageNet pickles / Omniglot images')
    p.add_argument('--image-size', type=int, default=None, help='resize images (default: native size)')
    p.add_argument('--methods', nargs='+', choices=METHODS, default=list(METHODS))
    p.add_argument('--ways', type=int, default=5)
    p.add_argument('--shots', type=int, default=5)
    p.add_argument('--queries', type=int, default=5)
    p.add_argument(
        '--width',
        type=int,
        default=8,
        help='channels of the search network and (without --match-params) of the full network',
    )
    p.add_argument('--num-cells', type=int, default=3, help='cells of the search network')
    p.add_argument('--full-cells', type=int, default=3, help='cells of the full network trained with MAML')
    p.add_argument('--tasks-per-step', type=int, default=4)
    p.add_argument('--search-steps', type=int, default=20, help='meta-steps of the BASE searches')
    p.add_argument('--darts-steps', type=int, default=20, help='weight+alpha steps of the DARTS search')
    p.add_argument(
        '--search-inner-steps',
        type=int,
        default=1,
        help='unrolled inner steps per task during search (second order through all of them)',
    )
    p.add_argument('--train-steps', type=int, default=60, help='MAML meta-steps of the final training')
    p.add_argument('--inner-steps', type=int, default=3, help='MAML inner steps in final training and test')
    p.add_argument('--inner-lr', type=float, default=0.1)
    p.add_argument('--meta-lr', type=float, default=3e-3)
    p.add_argument('--test-episodes', type=int, default=600)
    p.add_argument(
        '--threads',
        type=int,
        default=1,
        help='torch CPU threads; the results depend on it (parallel sums round differently), so the '
        "default is fixed rather than the machine's core count: same seed + same threads = same table",
    )
    p.add_argument('--progress', action='store_true', help='show Lightning progress bars')
    return p.parse_args(argv)


def load_splits(args: argparse.Namespace) -> dict[str, Any]:
    if args.data == 'digits':
        return digits_splits(image_size=args.image_size or 8, val_digits=(6, 7))
    if args.data_root is None:
        sys.exit(f'--data {args.data} needs --data-root (nothing is downloaded)')
    if args.data == 'mini-imagenet':
        return {
            'train': load_mini_imagenet(args.data_root, 'train', args.image_size),
            'val': load_mini_imagenet(args.data_root, 'validation', args.image_size),
            'test': load_mini_imagenet(args.data_root, 'test', args.image_size),
        }
    return omniglot_splits(args.data_root, image_size=args.image_size or 28)


def markdown_table(rows: list[dict[str, Any]], args: argparse.Namespace, budget: int | None = None) -> str:
    """The single-seed table: one row per method."""
    matched = '' if budget is None else f'; widths matched to {budget} parameters'
    lines = [
        f'{args.ways}-way {args.shots}-shot on {args.data}, {args.test_episodes} test episodes '
        f'(mean query accuracy after {args.inner_steps} MAML steps, 95% CI), seed {rows[0]["seed"]}{matched}',
        '',
        '| architecture | test accuracy | params | search (s) | MAML training (s) | few-shot training |',
        '|---|---|---|---|---|---|',
    ]
    for r in rows:
        search = '-' if r['search_s'] is None else f'{r["search_s"]:.0f}'
        lines.append(
            f'| {r["title"]} | {100 * r["test_acc"]:.2f} ± {100 * r["test_ci95"]:.2f}% | '
            f'{r["params"] / 1e3:.1f} K | {search} | {r["train_s"]:.0f} | MAML (2nd order) |'
        )
    return '\n'.join(lines) + '\n'


def _pct(value: float | None) -> str:
    return '-' if value is None else f'{100 * value:.2f}'


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None  # JSON has no NaN


def seeds_table(
    summary: list[dict[str, Any]],
    paired: list[dict[str, Any]],
    args: argparse.Namespace,
    seeds: list[int],
    budget: int | None,
) -> str:
    """The several-seeds table: per method the mean over seeds, pooled CI, seed spread, then paired differences."""
    widths = (
        f'widths chosen so each network has the parameter count nearest {budget} (integer widths)'
        if budget is not None
        else f'full-network width {args.width}, Conv4 {CONV4_HIDDEN} filters (not matched)'
    )
    lines = [
        f'{args.ways}-way {args.shots}-shot on {args.data}; search seeds {", ".join(map(str, seeds))}: each '
        f"seed searches, trains the found cell with MAML on that seed's episodes (Conv4: no search, trained "
        f'once per seed) and tests it on the same {args.test_episodes} test episodes (test seed '
        f'{args.seed + 1000}, shared by all methods and seeds); mean query accuracy after {args.inner_steps} '
        f'MAML steps; {widths}.',
        '',
        f'mean = mean over the {len(seeds)} seeds; pooled CI = 95% CI over the {len(seeds)} x '
        f'{args.test_episodes} pooled per-episode accuracies; seed sd = standard deviation of the per-seed '
        f'means (seed CI = Student-t 95% CI over them).',
        '',
        '| architecture | mean | pooled 95% CI | seed sd (seed CI) | per seed | params (width) | '
        'search (s/seed) | MAML training (s/seed) |',
        '|---|---|---|---|---|---|---|---|',
    ]
    for r in summary:
        search = '-' if r['search_s'] is None else f'{r["search_s"]:.0f}'
        params = ' / '.join(f'{p / 1e3:.1f}' for p in r['params'])
        width = '/'.join(map(str, r['widths']))
        lines.append(
            f'| {r["title"]} | {_pct(r["test_acc"])}% | ± {_pct(r["pooled_ci95"])} | '
            f'{_pct(r["seed_sd"])} (± {_pct(r["seed_ci95"])}) | '
            f'{" / ".join(_pct(a) for a in r["per_seed_acc"])} | {params} K ({width}) | {search} | '
            f'{r["train_s"]:.0f} |'
        )
    if paired:
        lines += [
            '',
            'Paired differences on the shared test episodes (per episode: accuracy averaged over seeds; '
            '95% CI over episodes), and per seed:',
            '',
            '| comparison | difference | 95% CI | per seed |',
            '|---|---|---|---|',
        ]
        for d in paired:
            lines.append(
                f'| {d["title"]} | {100 * d["diff"]:+.2f} | ± {_pct(d["ci95"])} | '
                f'{" / ".join(f"{100 * x:+.2f}" for x in d["per_seed"])} |'
            )
    return '\n'.join(lines) + '\n'


def summarize(
    rows: list[dict[str, Any]], scores: dict[str, list[FewShotScore]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Per-method summary over seeds and paired differences of every method against the first one."""
    summary, by_method = [], {}
    for method, method_scores in scores.items():
        combined = summarize_seeds(method_scores)
        by_method[method] = combined
        own = [r for r in rows if r['method'] == method]
        search = [r['search_s'] for r in own if r['search_s'] is not None]
        summary.append(
            {
                'method': method,
                'title': TITLES[method],
                'seeds': [r['seed'] for r in own],
                'test_acc': combined.mean,
                'per_seed_acc': combined.per_seed,
                'pooled_ci95': combined.pooled_ci95,
                'seed_sd': _finite(combined.seed_sd),
                'seed_ci95': _finite(combined.seed_ci95),
                'episodes': combined.episodes,
                'params': [r['params'] for r in own],
                'widths': [r['width'] for r in own],
                'search_s': sum(search) / len(search) if search else None,
                'train_s': sum(r['train_s'] for r in own) / len(own),
            }
        )
    paired = []
    methods = list(scores)
    for other in methods[1:]:
        first = methods[0]
        diffs = [a - b for a, b in zip(by_method[first].episode_means, by_method[other].episode_means)]
        diff, ci95 = mean_ci(diffs)
        paired.append(
            {
                'first': first,
                'second': other,
                'title': f'{TITLES[first]} - {TITLES[other]}',
                'diff': diff,
                'ci95': ci95,
                'per_seed': [a - b for a, b in zip(by_method[first].per_seed, by_method[other].per_seed)],
            }
        )
    return summary, paired


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.threads < 1:
        sys.exit(f'--threads must be at least 1, got {args.threads}')
    if args.param_budget is not None and args.param_budget < 1:
        sys.exit(f'--param-budget must be a positive number of parameters, got {args.param_budget}')
    if args.search_seeds is not None and len(set(args.search_seeds)) != len(args.search_seeds):
        sys.exit(f'--search-seeds must be distinct, got {args.search_seeds}')
    threads_before = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return run(args, argv)
    finally:
        torch.set_num_threads(threads_before)  # main() called from Python leaves the caller's setting as it was


def run(args: argparse.Namespace, argv: list[str] | None) -> dict[str, Any]:
    started = time.perf_counter()
    out = args.output_dir
    out.mkdir(parents=True, exist_ok=True)
    logging.getLogger('nni').setLevel(logging.WARNING)

    splits = load_splits(args)
    tasks = {
        name: TaskDistribution(data, args.ways, args.shots, args.queries, name=f'{args.data}-{name}')
        for name, data in splits.items()
    }
    channels, size = tasks['train'].image_shape[0], tasks['train'].image_shape[-1]
    print(
        f'meta-train {tasks["train"].num_classes} classes, meta-val {tasks["val"].num_classes}, '
        f'meta-test {tasks["test"].num_classes}; images {tasks["train"].image_shape}'
    )

    def trainer_kwargs(name: str) -> dict[str, Any]:
        return dict(
            logger=CSVLogger(out / 'logs', name=name),
            enable_progress_bar=args.progress,
            enable_checkpointing=False,
            enable_model_summary=False,
            log_every_n_steps=5,
        )

    seeds = args.search_seeds if args.search_seeds else [args.seed]
    several = len(seeds) > 1
    budget = None
    if args.match_params or args.param_budget is not None:
        budget = args.param_budget or count_parameters(Conv4(args.ways, channels, CONV4_HIDDEN, size))
        print(f'matching parameter counts to {budget}')
    rows: list[dict[str, Any]] = []
    scores: dict[str, list[FewShotScore]] = {}
    for method in args.methods:
        for seed in seeds:
            tag = f'{method}-seed{seed}' if several else method
            print(f'== {TITLES[method]}' + (f', seed {seed}' if several else ''))
            row, score = run_one(method, seed, tag, args, tasks, splits, channels, size, budget, trainer_kwargs)
            rows.append(row)
            scores.setdefault(method, []).append(score)

    summary, paired = summarize(rows, scores)
    table = seeds_table(summary, paired, args, seeds, budget) if several else markdown_table(rows, args, budget)
    results = {
        'args': {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        'command': 'python examples/fewshot.py ' + ' '.join(sys.argv[1:] if argv is None else argv),
        'machine': {
            'platform': platform.platform(),
            'torch_threads': torch.get_num_threads(),
            'torch': torch.__version__,
        },
        'search_seeds': seeds,
        'test_seed': args.seed + 1000,
        'param_budget': budget,
        'rows': rows,
        'summary': summary,
        'paired': paired,
        'wall_s': time.perf_counter() - started,
        'finished': time.strftime('%Y-%m-%d %H:%M:%S'),
    }
    write_json(out / 'results.json', results)
    write_json(
        out / 'episodes.json',
        {
            method: {
                str(row['seed']): [round(a, 6) for a in score.accuracies]
                for row, score in zip([r for r in rows if r['method'] == method], method_scores)
            }
            for method, method_scores in scores.items()
        },
    )
    write_text(out / 'results.md', table)
    print('\n' + table)
    print(
        f'wall time {results["wall_s"]:.0f} s; results in {out}/ (results.json, results.md, episodes.json, '
        'arch_*.json, cells_*.png, logs/)'
    )
    return results


def run_one(
    method: str,
    seed: int,
    tag: str,
    args: argparse.Namespace,
    tasks: dict[str, TaskDistribution],
    splits: dict[str, Any],
    channels: int,
    size: int,
    budget: int | None,
    trainer_kwargs: Any,
) -> tuple[dict[str, Any], FewShotScore]:
    """Search (unless Conv4), build, MAML-train and test one method with one seed; its row and its score."""
    pl.seed_everything(seed, verbose=False)
    common = dict(tasks_per_step=args.tasks_per_step, seed=seed)
    sample, search_s = None, None
    if method.startswith('base'):
        relaxation = method.split('-')[1]
        sample, search_s = timed(
            search_cells,
            tasks['train'],
            tasks['val'],
            width=args.width,
            num_cells=args.num_cells,
            steps_per_epoch=args.search_steps,
            inner_steps=args.search_inner_steps,
            inner_lr=args.inner_lr,
            relaxation=relaxation,
            trainer_kwargs=trainer_kwargs(f'search-{tag}'),
            **common,
        )
    elif method == 'darts':
        sample, search_s = timed(
            darts_cells_without_meta,
            splits['train'],
            splits['train'].num_classes,
            width=args.width,
            num_cells=args.num_cells,
            steps=args.darts_steps,
            seed=seed,
            trainer_kwargs=dict(enable_progress_bar=args.progress, enable_model_summary=False),
        )
    if sample is not None:
        write_json(args.output_dir / f'arch_{tag}.json', sample)
        plot_cells(sample, args.output_dir / f'cells_{tag}.png')

        def build(width: int) -> torch.nn.Module:
            return full_network(sample, args.ways, width=width, num_cells=args.full_cells)

        width = args.width
    else:

        def build(width: int) -> torch.nn.Module:
            return Conv4(args.ways, channels=channels, hidden=width, image_size=size)

        width = CONV4_HIDDEN
    if budget is not None:
        width, _ = width_for_budget(build, budget)  # forks the RNG: the network below starts as it would unmatched
    model = build(width)
    module, train_s = timed(
        train_maml,
        model,
        tasks['train'],
        tasks['val'],
        steps_per_epoch=args.train_steps,
        inner_steps=args.inner_steps,
        inner_lr=args.inner_lr,
        meta_lr=args.meta_lr,
        **common,
        **trainer_kwargs(f'maml-{tag}'),
    )
    # The test episodes depend on --seed only, never on the search seed: every network sees the same ones.
    score, test_s = timed(
        evaluate_fewshot,
        module,
        tasks['test'],
        episodes=args.test_episodes,
        seed=args.seed + 1000,
        enable_progress_bar=args.progress,
    )
    row = {
        'method': method,
        'title': TITLES[method],
        'seed': seed,
        'test_acc': score.mean,
        'test_ci95': score.ci95,
        'episodes': score.episodes,
        'episodes_digest': score.episodes_digest,
        'params': count_parameters(model),
        'width': width,
        'search_s': search_s,
        'train_s': train_s,
        'test_s': test_s,
    }
    print(
        f'   test accuracy {score}  params {row["params"]} (width {width})  search {search_s or 0:.0f}s  '
        f'MAML {train_s:.0f}s  test {test_s:.0f}s'
    )
    return row, score


if __name__ == '__main__':
    main()
