"""Why does the meta performance predictor rank architectures no better than chance?

The predictor of a dataset-conditioned prior learns, during meta-training, the *weight-sharing* query accuracy of
sampled architectures: the supernet adapted to the task for a few inner steps, each architecture run with those
shared weights on 5-way x 10 query images. What a user needs it to predict is the accuracy an architecture reaches
when it is trained. This benchmark measures, on held-out tasks, each link of that chain against architectures
trained from scratch:

- ``trained``: the accuracy after training (``train_on_task``, as ``alpha_recovery.py`` / ``zero_shot_cells.py``
  train cells: 30 Adam steps, query accuracy), for >= 20 architectures per task: the 10 random cells of
  ``alpha_recovery.py`` and the candidates of ``zero_shot_cells.py`` (accuracies reused from their results), plus
  ``--extra-random`` new random cells trained here;
- ``ws`` / ``ws_repeat``: the weight-sharing label, measured as the predictor's records are (conditioned α,
  ``inner_steps`` inner steps, query accuracy of each architecture with the adapted weights), twice with other
  Gumbel draws: how reliable the label itself is;
- ``predictor``: the prior's prediction from the task's support set; ``alpha``: the architecture's log-probability
  under the conditioned α (the other ranking ``zero_shot`` offers).

- ``trained_repeat`` (``--repeat-trained``): every architecture trained a second time with other initial weights and
  batch order. Spearman ``trained vs trained_repeat`` is how well the measurement agrees with itself, a ceiling for
  any ranker scored against one training; rankers are also scored against ``trained_mean``, the mean of both.

Per task, Spearman's rho between each pair, and where each ranker's top-1 among the random cells lands in their
trained ranking (1 = best of the 20; 10.5 on average for a random pick).

    python -m benchmarks.predictor_quality --priors benchmarks/results/conditioning/seed1 \
        --output benchmarks/results/conditioning/seed1/predictor_quality.json
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from benchmarks.common import darts_space, family_data, write_json_result
from nni_base import DartsTaskSpace, TaskDistribution
from nni_base.api import build_supernet, load_strategy, sample_tasks, zero_shot
from nni_base.database.conditioned_zero_shot import conditioner_of
from nni_base.database.predictor import arch_features
from nni_base.prior import load_prior
from nni_base.search.evaluation import mean_ci, train_on_task
from nni_base.search.loop import adapt_each
from nni_base.search.top_k import darts_cell_shapes, random_architecture, top_k_architectures
from nni_base.space.gumbel_cell import fixed_architecture

DARTS_SHAPES = darts_cell_shapes()

RESULTS = Path(__file__).parent / 'results'
PAIRS = (('predictor', 'trained'), ('alpha', 'trained'), ('ws', 'trained'), ('ws', 'ws_repeat'), ('predictor', 'ws'))
# with --repeat-trained: how well does the measurement agree with itself (the ceiling of any ranker's Spearman)?
REPEAT_PAIRS = (
    ('trained', 'trained_repeat'),
    ('trained_mean', 'predictor'),
    ('trained_mean', 'alpha'),
    ('trained_mean', 'ws'),
)


def space(ways: int) -> DartsTaskSpace:
    return darts_space(num_classes=ways)  # the priors' size: width 8, 4 cells


def weight_sharing(
    prior_path: Path, alpha: dict, task, samples: list[dict], ways: int, inner_steps: int, seed: int
) -> list[float]:
    """Query accuracy of each sample with the supernet adapted to ``task`` from the conditioned α (one draw)."""
    torch.manual_seed(seed)
    supernet = build_supernet(space(ways), load_strategy(prior_path))
    measured: list[float] = []

    def condition(_: int, __) -> None:
        with torch.no_grad():
            for label, a in supernet.alphas().items():
                a.copy_(alpha[str(label)])

    def score(_state) -> None:
        for sample in samples:
            with torch.no_grad(), fixed_architecture(supernet.cells(), sample):
                measured.append(float(supernet.model_loss(task.query_x, task.query_y)[1]))

    adapt_each(
        supernet, [task], inner_steps, where='predictor quality', measure=False, prepare=condition, on_adapted=score
    )
    return measured


def train(cell: dict, task, t: int, ways: int, steps: int, seed_offset: int = 0) -> float:
    """Train ``cell`` from scratch on task ``t``; ``seed_offset`` 0 is how alpha_recovery / zero_shot_cells train
    every cell of task t (initial weights and mini-batch order), another offset a second, independent training."""
    torch.manual_seed(t + seed_offset)
    return train_on_task(space(ways).freeze(cell), task, steps, seed=t + seed_offset)


def random_accuracies(name: str, args) -> dict[str, list[float]]:
    """The stored random cells' trained accuracies per task: alpha_recovery's, or (runs written before it stored
    them) those zero_shot_cells.py trained on the same tasks the same way (they do not depend on the prior)."""
    for path in args.random_results:
        runs = json.loads(path.read_text())['families'].get(name)
        if runs and 'per_task' in runs[0]['vs_random']:
            return runs[0]['vs_random']['per_task']
    for path in (
        args.zero_shot_cells,
        args.priors / 'zero_shot_cells.json',
        RESULTS / 'conditioning' / 'seed1' / 'zero_shot_cells.json',
    ):
        if path is not None and path.is_file():
            return json.loads(path.read_text())['families'][name]['per_task']
    raise SystemExit(f'{name}: no stored accuracies of the random cells; run zero_shot_cells.py first')


def random_top1_ranks(columns: dict[str, list[float]], keys: list[str]) -> dict[str, float]:
    """Each ranker's top-1 among the random cells only, ranked among their trained accuracies: the zero-shot
    candidates are left out, as they were chosen by the predictor or α themselves."""
    idx = [i for i, key in enumerate(keys) if key.startswith(('random', 'extra'))]
    trained = [columns['trained'][i] for i in idx]
    return {k: top1_rank([columns[k][i] for i in idx], trained) for k in ('predictor', 'alpha', 'ws')}


def log_prob(alpha: dict, shapes, sample: dict) -> float:
    """Log-probability of ``sample`` under α, as top-k export scores it (sum over the chosen edges' ops)."""
    total = 0.0
    for s in shapes:
        logp = torch.log_softmax(alpha[s.label].float(), -1)
        for node in range(s.num_predecessors, s.num_predecessors + s.num_nodes):
            for k in range(s.num_inputs):
                pred = int(sample[f'{s.label}/input_{node}_{k}'][0])
                row = sum(range(s.num_predecessors, node)) + pred
                total += float(logp[row, s.op_names.index(sample[f'{s.label}/op_{node}_{k}'])])
    return total


def rho(a: list[float], b: list[float]) -> float:
    value = stats.spearmanr(a, b).statistic
    return float(value) if value == value else 0.0


def top1_rank(scores: list[float], trained: list[float]) -> float:
    """Rank (1 = best) of the highest-scored architecture among the trained accuracies, ties averaged."""
    best = int(np.argmax(scores))
    return float(stats.rankdata([-t for t in trained])[best])


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--families', nargs='+', default=['peaks', 'texture'])
    p.add_argument(
        '--priors',
        type=Path,
        default=RESULTS / 'conditioning' / 'seed1',
        help='folder with conditioned.pt (python -m benchmarks.conditioning)',
    )
    p.add_argument(
        '--conditioned', type=Path, default=None, help='the conditioned prior (default: conditioned.pt in --priors)'
    )
    p.add_argument(
        '--zero-shot-cells',
        type=Path,
        default=None,
        help='zero_shot_cells.json of the same priors (default: in --priors)',
    )
    p.add_argument(
        '--random-results',
        nargs='+',
        type=Path,
        default=[
            RESULTS / 'alpha_recovery_80steps' / 'results.json',
            RESULTS / 'alpha_recovery_80steps_texture' / 'results.json',
        ],
    )
    p.add_argument('--extra-random', type=int, default=10, help='new random cells trained per task')
    p.add_argument('--inner-steps', type=int, default=5, help='inner steps before the weight-sharing scores')
    p.add_argument('--tasks', type=int, default=10)
    p.add_argument(
        '--repeat-trained',
        action='store_true',
        help='train every architecture a second time (other initial weights and batch order): the '
        "trained accuracy's agreement with itself, and each ranker against the mean of both",
    )
    p.add_argument('--output', type=Path, default=None)
    args = p.parse_args(argv)
    warnings.filterwarnings('ignore')
    logging.getLogger('nni').setLevel(logging.ERROR)
    torch.set_num_threads(1)
    prior_path = args.conditioned or args.priors / 'conditioned.pt'
    prior = load_prior(prior_path)
    conditioner = conditioner_of(prior)
    conditioner.eval()
    # the zero-shot candidates' trained accuracies: reused from zero_shot_cells.py's run on the same prior, if any
    stored_path = args.zero_shot_cells or (args.priors / 'zero_shot_cells.json' if args.conditioned is None else None)
    stored = json.loads(stored_path.read_text()) if stored_path is not None and stored_path.is_file() else None
    randoms = {}
    for path in args.random_results:
        data = json.loads(path.read_text())
        for name in data['families']:
            randoms[name] = data['settings']
    output = args.output or args.priors / 'predictor_quality.json'
    results: dict = {'settings': json.loads(json.dumps(vars(args), default=str)), 'families': {}}
    for name in args.families:
        settings = randoms[name]
        ways = settings['ways']
        tasks = sample_tasks(
            TaskDistribution(
                family_data(name, settings['image_size'])['test'],
                ways,
                settings['shots'],
                settings['queries'],
                name=name,
            ),
            settings['heldout_tasks'],
            seed=10_000,
        )[: args.tasks]
        rng = random.Random(settings['seeds'][0])
        stored_random = [random_architecture(DARTS_SHAPES, rng) for _ in range(settings['random_cells'])]
        extra_rng = random.Random(10_000 + settings['seeds'][0])
        extra = [random_architecture(DARTS_SHAPES, extra_rng) for _ in range(args.extra_random)]
        random_stored = random_accuracies(name, args)
        per_task_stored = stored['families'][name]['per_task'] if stored is not None else None
        start = time.time()
        tasks_out = []
        for t, task in enumerate(tasks):
            alpha, encoding = conditioner.conditioned_alpha(prior['alpha'], task.support_x, task.support_y)
            candidates = {
                'zero_shot': zero_shot(prior, task.support_x, task.support_y, top_k=1).samples[0],
                'zero_shot_alpha': top_k_architectures(conditioner.shapes, alpha, 1)[0][0],
            }
            archs: list[tuple[str, dict, float | None]] = []
            for i, cell in enumerate(stored_random):
                archs.append((f'random{i}', cell, random_stored[f'random{i}'][t]))
            for key, cell in candidates.items():
                archs.append(
                    (
                        key,
                        cell,
                        per_task_stored[key][t]
                        if per_task_stored is not None
                        else train(cell, task, t, ways, settings['train_steps']),
                    )
                )
            for i, cell in enumerate(extra):
                archs.append((f'extra{i}', cell, train(cell, task, t, ways, settings['train_steps'])))
            seen, unique = set(), []
            for key, cell, acc in archs:  # the same architecture twice would count one measurement twice
                fingerprint = json.dumps(cell, sort_keys=True)
                if fingerprint not in seen:
                    seen.add(fingerprint)
                    unique.append((key, cell, acc))
            samples = [cell for _, cell, _ in unique]
            with torch.no_grad():
                predicted = conditioner.predictor(
                    encoding, torch.stack([arch_features(s, conditioner.shapes) for s in samples])
                ).tolist()
            columns = {
                'trained': [float(acc) for _, _, acc in unique],
                'predictor': predicted,
                'alpha': [log_prob(alpha, conditioner.shapes, s) for s in samples],
                'ws': weight_sharing(prior_path, alpha, task, samples, ways, args.inner_steps, seed=t),
                'ws_repeat': weight_sharing(prior_path, alpha, task, samples, ways, args.inner_steps, seed=1000 + t),
            }
            pairs = PAIRS
            if args.repeat_trained:
                columns['trained_repeat'] = [
                    train(cell, task, t, ways, settings['train_steps'], seed_offset=50_000) for cell in samples
                ]
                columns['trained_mean'] = [(a + b) / 2 for a, b in zip(columns['trained'], columns['trained_repeat'])]
                pairs = PAIRS + REPEAT_PAIRS
            tasks_out.append(
                {
                    'architectures': [key for key, _, _ in unique],
                    'samples': samples,
                    **columns,
                    'spearman': {f'{a} vs {b}': rho(columns[a], columns[b]) for a, b in pairs},
                    'top1_rank': {k: top1_rank(columns[k], columns['trained']) for k in ('predictor', 'alpha', 'ws')},
                    'top1_rank_random': random_top1_ranks(columns, [key for key, _, _ in unique]),
                }
            )
            print(
                f'{name} task {t}: {len(unique)} architectures; '
                + ', '.join(f'{k} {v:+.2f}' for k, v in tasks_out[-1]['spearman'].items()),
                flush=True,
            )
        summary = {
            pair: dict(zip(('mean', 'ci95'), mean_ci([x['spearman'][pair] for x in tasks_out])))
            for pair in tasks_out[0]['spearman']
        }
        top1 = {k: float(np.mean([x['top1_rank_random'][k] for x in tasks_out])) for k in ('predictor', 'alpha', 'ws')}
        results['families'][name] = {
            'tasks': tasks_out,
            'spearman': summary,
            'mean_top1_rank_random': top1,
            'random_cells_per_task': len(stored_random) + len(extra),
            'architectures_per_task': float(np.mean([len(x['trained']) for x in tasks_out])),
            'seconds': round(time.time() - start, 1),
        }
        print(
            f'{name}: '
            + ', '.join(f'{k} {v["mean"]:+.2f}±{v["ci95"]:.2f}' for k, v in summary.items())
            + '; mean rank of the top-1 among the random cells '
            + ', '.join(f'{k} {v:.1f}' for k, v in top1.items()),
            flush=True,
        )
        write_json_result(output, results)
    return results


if __name__ == '__main__':
    main()
