"""Does a dataset-conditioned prior pick each family's own winner where one shared α can pick only a compromise?

Meta-trains two priors on an equal mixture of two task families (default ``peaks`` and ``texture``: every meta-step
one task of each) with the same budget and seed: an ordinary BASE prior, and a dataset-conditioned one
(``BaseStrategy(dataset_conditioning=True)``: set encoder → α offset, meta performance predictor). Then, on held-out
tasks of each family (5-way 5-shot, the families' held-out classes):

1. per cell type, the mean probability of each operation over the edges of α — the unconditioned prior's one α,
   and the conditioned α of every held-out task (``nni_base.api.zero_shot``) — and whether the top operation is the
   family's known winner (``benchmarks/results/known_answer.json``, per cell type);
2. the wall time from a new support set to the top-k architectures (``zero_shot``, prior already in memory, and
   including reading the prior file);
3. the predictor's Spearman correlation with the query accuracy of random architectures, measured with the
   supernet adapted to each held-out task (weight-sharing accuracies, as in the predictor's training records).

    python -m benchmarks.conditioning --meta-steps 40 --output-dir benchmarks/results/conditioning
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import statistics
import time
from pathlib import Path

import torch
from scipy import stats

from benchmarks.common import RESULTS, meta_train, quiet, settings_of, space_of, write_json_result
from nni_base import ResolutionMixture, TaskDistribution
from nni_base.api import build_supernet, load_strategy, sample_tasks, zero_shot
from nni_base.data.families import family_splits
from nni_base.database.conditioned_zero_shot import conditioner_of
from nni_base.database.predictor import arch_features
from nni_base.prior import load_prior
from nni_base.search.evaluation import DARTS_OPS
from nni_base.search.loop import adapt_each
from nni_base.search.top_k import random_architecture
from nni_base.space.gumbel_cell import fixed_architecture


def conditioned_file(results_name: str) -> str:
    """The conditioned prior's file name: one per ``--results-name``, so that ablations do not overwrite the
    default prior (``results.json`` → ``conditioned.pt``, ``results_x.json`` → ``conditioned_results_x.pt``)."""
    return 'conditioned.pt' if results_name == 'results.json' else f'conditioned_{Path(results_name).stem}.pt'


def meta_train_mixture(args, conditioned: bool, out: Path) -> tuple[Path, float]:
    mixture = ResolutionMixture(
        [
            TaskDistribution(
                family_splits(f, image_size=args.image_size)['train'], args.ways, args.shots, args.queries, name=f
            )
            for f in args.families
        ]
    )
    path = out / (conditioned_file(args.results_name) if conditioned else 'unconditioned.pt')
    _, seconds = meta_train(
        space_of(args),
        mixture,
        path,
        tasks_per_step=len(args.families),
        steps_per_epoch=args.meta_steps,
        seed=args.seed,
        inner_steps=args.inner_steps,
        dataset_conditioning=conditioned,
        conditioning_lr=args.conditioning_lr,
        conditioning_alpha_lr=args.conditioning_alpha_lr,
        conditioning_teacher=args.teacher,
        conditioning_centred=not args.uncentred,
        conditioning_standardise=not args.raw_encoding,
        conditioning_per_op=not args.per_edge,
        conditioning_features=args.features,
        predictor_steps=args.predictor_steps,
        predictor_centred=not args.uncentred_predictor,
    )
    return path, seconds


def per_op(alpha: torch.Tensor) -> dict[str, float]:
    probs = torch.softmax(alpha.detach().float(), -1)[:, : len(DARTS_OPS)].mean(0)
    return dict(zip(DARTS_OPS, probs.tolist()))


def summary(alphas: dict[str, torch.Tensor], winners: dict[str, str]) -> dict:
    out = {}
    for label, alpha in alphas.items():
        ops = per_op(alpha)
        top = max(ops, key=ops.get)
        winner = winners[str(label)]
        out[str(label)] = {
            'per_op': ops,
            'top_op': top,
            'winner': winner,
            'top_is_winner': top == winner,
            'winner_rank': sorted(ops, key=lambda o: -ops[o]).index(winner) + 1,
        }
    return out


def mean_alphas(alphas: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Log of the task-mean probabilities (what the per-op summary of 'the family's α' reads)."""
    return {k: torch.stack([torch.softmax(a[k], -1) for a in alphas]).mean(0).log() for k in alphas[0]}


def predictor_spearman(prior_path: Path, tasks, args) -> list[float]:
    prior = load_prior(prior_path)
    conditioner = conditioner_of(prior)
    rng = random.Random(args.seed)
    rhos = []
    for t, task in enumerate(tasks[: args.spearman_tasks]):
        torch.manual_seed(t)
        supernet = build_supernet(space_of(args), load_strategy(prior_path))
        alpha, encoding = conditioner.conditioned_alpha(prior['alpha'], task.support_x, task.support_y)

        def condition(_: int, __, alpha=alpha, supernet=supernet) -> None:
            with torch.no_grad():
                for label, a in supernet.alphas().items():
                    a.copy_(alpha[str(label)])

        samples = [random_architecture(conditioner.shapes, rng) for _ in range(args.spearman_archs)]
        measured: list[float] = []

        def score(_state, samples=samples, measured=measured, task=task, supernet=supernet) -> None:
            for sample in samples:
                with torch.no_grad(), fixed_architecture(supernet.cells(), sample):
                    measured.append(float(supernet.model_loss(task.query_x, task.query_y)[1]))

        config = supernet.config  # adapt as the records were collected
        adapt_each(
            supernet,
            [task],
            args.inner_steps,
            where='spearman',
            measure=False,
            prepare=condition,
            on_adapted=score,
            alpha_adam_lr=config.conditioning_alpha_lr if config.conditioning_teacher == 'inner' else None,
        )
        with torch.no_grad():
            predicted = conditioner.predictor(
                encoding, torch.stack([arch_features(s, conditioner.shapes, conditioner.choices) for s in samples])
            ).tolist()
        rho = stats.spearmanr(predicted, measured).statistic
        rhos.append(float(rho) if rho == rho else 0.0)
    return rhos


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--families', nargs='+', default=['peaks', 'texture'])
    p.add_argument('--image-size', type=int, default=16)
    p.add_argument('--width', type=int, default=8)
    p.add_argument('--num-cells', type=int, default=4)
    p.add_argument('--ways', type=int, default=5)
    p.add_argument('--shots', type=int, default=10)
    p.add_argument('--queries', type=int, default=10)
    p.add_argument('--meta-steps', type=int, default=40)
    p.add_argument('--inner-steps', type=int, default=5)
    p.add_argument('--conditioning-lr', type=float, default=0.01)
    p.add_argument(
        '--conditioning-alpha-lr',
        type=lambda v: None if v.lower() == 'none' else float(v),
        default=0.3,
        help="inner Adam step on alpha of conditioned meta-training ('none': SGD)",
    )
    p.add_argument('--teacher', choices=('shadow', 'inner'), default='shadow')
    p.add_argument('--uncentred', action='store_true', help="don't centre the generator's targets over a meta-step")
    p.add_argument('--raw-encoding', action='store_true', help='the generator reads the unstandardised encoding')
    p.add_argument('--per-edge', action='store_true', help='one generated offset per (edge, operation)')
    p.add_argument(
        '--features',
        choices=('pixels', 'stem'),
        default='pixels',
        help="what the set encoder reads: pixel statistics or the prior's stem output",
    )
    p.add_argument('--predictor-steps', type=int, default=20, help="the predictor's Adam steps per meta-step")
    p.add_argument('--uncentred-predictor', action='store_true', help='the predictor learns raw accuracies')
    p.add_argument('--results-name', default='results.json')
    p.add_argument(
        '--reuse-unconditioned',
        action='store_true',
        help='keep the unconditioned prior of an earlier run with the same settings (output-dir)',
    )
    p.add_argument('--heldout-tasks', type=int, default=10)
    p.add_argument('--spearman-tasks', type=int, default=4)
    p.add_argument('--spearman-archs', type=int, default=12)
    p.add_argument('--top-k', type=int, default=5)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--known', type=Path, default=RESULTS / 'known_answer.json')
    p.add_argument('--output-dir', type=Path, default=Path('benchmarks/results/conditioning'))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    quiet(logging.WARNING)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    known = json.loads(args.known.read_text())['families']
    results: dict = {'settings': settings_of(args), 'families': {}}

    paths, seconds = {}, {}
    for conditioned in (False, True):
        if not conditioned and args.reuse_unconditioned:
            paths[False] = args.output_dir / 'unconditioned.pt'
            if not paths[False].is_file():
                raise FileNotFoundError(f'--reuse-unconditioned: {paths[False]} is missing; run once without it.')
            seconds[False] = json.loads((args.output_dir / 'unconditioned.json').read_text())['seconds']
            continue
        paths[conditioned], seconds[conditioned] = meta_train_mixture(args, conditioned, args.output_dir)
        if not conditioned:  # what --reuse-unconditioned reads
            write_json_result(
                args.output_dir / 'unconditioned.json', {'seconds': seconds[False], 'settings': results['settings']}
            )
        print(
            f'meta-trained {"conditioned" if conditioned else "unconditioned"} prior in {seconds[conditioned]:.0f} s',
            flush=True,
        )
    results['meta_train_seconds'] = {'unconditioned': seconds[False], 'conditioned': seconds[True]}
    plain, conditioned_prior = load_prior(paths[False]), load_prior(paths[True])

    for f in args.families:
        winners = {ct: known[f]['cell_types'][ct]['winner'] for ct in ('normal', 'reduce')}
        tasks = sample_tasks(
            TaskDistribution(family_splits(f, image_size=args.image_size)['test'], args.ways, 5, 5, name=f),
            args.heldout_tasks,
            seed=args.seed + 1000,
        )
        zs = [zero_shot(conditioned_prior, t.support_x, t.support_y, args.top_k) for t in tasks]
        per_task = [summary(r.alpha, winners) for r in zs]
        family = {
            'winners': winners,
            'unconditioned': summary(plain['alpha'], winners),
            'conditioned_shared_alpha': summary(conditioned_prior['alpha'], winners),
            'conditioned_task_mean': summary(mean_alphas([r.alpha for r in zs]), winners),
            'conditioned_top_is_winner_fraction': {
                ct: sum(s[ct]['top_is_winner'] for s in per_task) / len(per_task) for ct in ('normal', 'reduce')
            },
            'top_k_first_task': [{'sample': s, 'score': sc} for s, sc in zip(zs[0].samples, zs[0].scores)],
            'ranked_by': zs[0].ranked_by,
        }
        warm = []
        for t in tasks:
            start = time.perf_counter()
            zero_shot(conditioned_prior, t.support_x, t.support_y, args.top_k)
            warm.append(time.perf_counter() - start)
        cold = []
        for t in tasks[:3]:
            start = time.perf_counter()
            zero_shot(paths[True], t.support_x, t.support_y, args.top_k)
            cold.append(time.perf_counter() - start)
        family['zero_shot_seconds'] = {
            'median_in_memory': statistics.median(warm),
            'median_from_file': statistics.median(cold),
        }
        rhos = predictor_spearman(paths[True], tasks, args)
        family['predictor_spearman'] = {'per_task': rhos, 'mean': sum(rhos) / len(rhos)}
        results['families'][f] = family
        line = '; '.join(
            f'{ct}: uncond {family["unconditioned"][ct]["top_op"]}, cond '
            f'{family["conditioned_task_mean"][ct]["top_op"]} (winner {winners[ct]}, rank '
            f'{family["unconditioned"][ct]["winner_rank"]}→{family["conditioned_task_mean"][ct]["winner_rank"]})'
            for ct in ('normal', 'reduce')
        )
        print(
            f'{f}: {line}; zero-shot {family["zero_shot_seconds"]["median_in_memory"] * 1000:.0f} ms '
            f'({family["zero_shot_seconds"]["median_from_file"] * 1000:.0f} ms from file); predictor Spearman '
            f'{family["predictor_spearman"]["mean"]:.2f}',
            flush=True,
        )
        write_json_result(args.output_dir / args.results_name, results)
    return results


if __name__ == '__main__':
    main()
