"""Does a predictor fitted on *trained* architectures rank a new dataset's architectures better?

``predictor_quality.py`` found the meta-training predictor capped by its weight-sharing labels. This builds
MetaD2A's kind of database instead (``nni_base.api.fit_trained_predictor``'s two parts): ``--architectures`` random
cells, each trained from scratch (30 Adam steps) on ``--tasks`` meta-training tasks of each family (the families'
*training* classes), and refits the conditioned prior's predictor on it. Then, on the held-out tasks of
``predictor_quality.py``'s run (``--quality``: its JSON, with ``--repeat-trained``), Spearman between each ranker and
the architectures' trained accuracies — one training (``trained``) and the mean of two (``trained_mean``), whose
agreement with each other bounds any ranker — for the refitted predictor, the meta-training predictor and α.
None of the evaluated cells is in the database.

The held-out side comes from ``predictor_quality.py`` (per family, e.g. ``--families peaks --conditioned
benchmarks/results/conditioning/seed1/conditioned_results_predictor20.pt --repeat-trained --output
benchmarks/results/conditioning/seed1/predictor_quality_repeat_peaks.json``). Stages, so that the two families'
databases train in two processes (each resumes from its JSON):

    python -m benchmarks.trained_predictor --stage train --families peaks &
    python -m benchmarks.trained_predictor --stage train --families texture &
    wait; python -m benchmarks.trained_predictor --stage evaluate
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

from benchmarks.common import family_data, write_json_result
from benchmarks.predictor_quality import random_top1_ranks, rho, space, top1_rank
from nni_base import TaskDistribution
from nni_base.api import sample_tasks
from nni_base.database.conditioned_zero_shot import conditioner_of
from nni_base.database.predictor import arch_features
from nni_base.database.trained_predictor import TrainedRecord, fit_predictor, train_database
from nni_base.io import write_json
from nni_base.prior import load_prior, save_prior
from nni_base.search.evaluation import mean_ci
from nni_base.search.top_k import random_architecture

RESULTS = Path(__file__).parent / 'results' / 'conditioning' / 'seed1'
RANKERS = ('trained_predictor', 'predictor', 'alpha')


def training_tasks(name: str, settings: dict, count: int, seed: int):
    """Meta-training tasks of family ``name`` (its training classes), as the held-out tasks are drawn."""
    return sample_tasks(
        TaskDistribution(
            family_data(name, settings['image_size'])['train'],
            settings['ways'],
            settings['shots'],
            settings['queries'],
            name=name,
        ),
        count,
        seed=seed,
    )


def database_architectures(prior: dict, count: int, seed: int) -> list[dict]:
    conditioner = conditioner_of(prior)
    rng = random.Random(seed)
    return [random_architecture(conditioner.shapes, rng, conditioner.choices) for _ in range(count)]


def train_stage(args, quality: dict, prior: dict) -> None:
    archs = database_architectures(prior, args.architectures, args.seed)
    for name in args.families:
        settings = quality['families'][name]['settings']
        tasks = training_tasks(name, settings, args.tasks, args.seed)
        path = args.output_dir / f'database_{name}.json'
        header = {
            'family': name,
            'seed': args.seed,
            'train_steps': args.train_steps,
            'architectures': archs,
            'tasks': args.tasks,
        }
        done: list[TrainedRecord] = []
        if path.is_file():
            stored = json.loads(path.read_text())
            if {k: stored[k] for k in header} != json.loads(json.dumps(header)):
                raise SystemExit(f'{path} was built with other settings; delete it or pass another --output-dir')
            done = [TrainedRecord(**r) for r in stored['records']]
        start = time.time()

        total = len(tasks) * len(archs)

        def save(
            record: TrainedRecord, name=name, path=path, header=header, done=done, start=start, total=total
        ) -> None:
            done.append(record)
            write_json(
                path,
                {**header, 'records': [r.as_dict() for r in done], 'seconds_this_run': round(time.time() - start, 1)},
            )
            if len(done) % 20 == 0:
                print(f'{name}: {len(done)} / {total} trained', flush=True)

        train_database(
            space(settings['ways']),
            tasks,
            archs,
            steps=args.train_steps,
            seed=args.seed,
            done=list(done),
            on_record=save,
        )


def evaluate_stage(args, quality: dict, prior: dict) -> dict:
    archs = database_architectures(prior, args.architectures, args.seed)
    tasks, records = [], []
    for name in args.families:
        stored = json.loads((args.output_dir / f'database_{name}.json').read_text())
        offset = len(tasks)
        tasks += training_tasks(name, quality['families'][name]['settings'], stored['tasks'], stored['seed'])
        records += [TrainedRecord(r['task'] + offset, r['architecture'], r['accuracy']) for r in stored['records']]
    start = time.time()
    fitted = fit_predictor(prior, tasks, archs, records, seed=args.seed)
    fit_seconds = time.time() - start
    save_prior(fitted, args.output_dir / 'conditioned_trained_predictor.pt')
    conditioner = conditioner_of(fitted)
    conditioner.eval()
    database_keys = {json.dumps(a, sort_keys=True) for a in archs}
    results: dict = {
        'settings': json.loads(json.dumps(vars(args), default=str)),
        'database_records': len(records),
        'fit_seconds': round(fit_seconds, 2),
        'families': {},
    }
    for name in [n for n in quality['families'] if 'tasks' in quality['families'][n]]:
        family = quality['families'][name]
        settings = family['settings']
        heldout = sample_tasks(
            TaskDistribution(
                family_data(name, settings['image_size'])['test'],
                settings['ways'],
                settings['shots'],
                settings['queries'],
                name=name,
            ),
            settings['heldout_tasks'],
            seed=10_000,
        )
        per_task = []
        for t, row in enumerate(family['tasks']):
            samples = row['samples']
            assert not database_keys & {json.dumps(s, sort_keys=True) for s in samples}, 'a database cell evaluated'
            encoding = conditioner.encode(heldout[t].support_x, heldout[t].support_y)
            with torch.no_grad():
                predicted = conditioner.predictor(
                    encoding, torch.stack([arch_features(s, conditioner.shapes, conditioner.choices) for s in samples])
                ).tolist()
            columns = {'trained_predictor': predicted, **{k: row[k] for k in ('predictor', 'alpha', 'trained')}}
            targets = ['trained'] + (['trained_mean'] if 'trained_mean' in row else [])
            if 'trained_mean' in row:
                columns['trained_mean'] = row['trained_mean']
            spearman = {f'{r} vs {t}': rho(columns[r], columns[t]) for t in targets for r in RANKERS}
            if 'trained_repeat' in row:
                spearman['trained vs trained_repeat'] = rho(row['trained'], row['trained_repeat'])
            rank_columns = {**columns, 'ws': row['ws']}
            idx = [i for i, key in enumerate(row['architectures']) if key.startswith(('random', 'extra'))]
            measured = [columns[targets[-1]][i] for i in idx]
            picked = {r: measured[int(np.argmax([rank_columns[r][i] for i in idx]))] for r in (*RANKERS, 'ws')}
            per_task.append(
                {
                    'spearman': spearman,
                    'top1_accuracy_random': {**picked, 'best': max(measured), 'median': float(np.median(measured))},
                    'top1_rank': {r: top1_rank(columns[r], columns[targets[-1]]) for r in RANKERS},
                    'top1_rank_random': random_top1_ranks(rank_columns, row['architectures'])
                    | {'trained_predictor': _random_top1(rank_columns, row['architectures'])},
                }
            )
        summary = {
            pair: dict(zip(('mean', 'ci95'), mean_ci([x['spearman'][pair] for x in per_task])))
            for pair in per_task[0]['spearman']
        }
        top1 = {
            k: float(np.mean([x['top1_rank_random'][k] for x in per_task])) for k in per_task[0]['top1_rank_random']
        }
        picks = {
            k: float(np.mean([x['top1_accuracy_random'][k] for x in per_task]))
            for k in per_task[0]['top1_accuracy_random']
        }
        results['families'][name] = {
            'spearman': summary,
            'mean_top1_rank_random': top1,
            'mean_top1_accuracy_random': picks,
            'tasks': per_task,
        }
        print(
            f'{name}: '
            + ', '.join(f'{k} {v["mean"]:+.2f}±{v["ci95"]:.2f}' for k, v in summary.items())
            + '; top-1 among random cells '
            + ', '.join(f'{k} {v:.1f}' for k, v in top1.items())
            + '; its accuracy '
            + ', '.join(f'{k} {v:.3f}' for k, v in picks.items()),
            flush=True,
        )
    write_json_result(args.output or args.output_dir / 'results.json', results)
    return results


def _random_top1(columns: dict, keys: list[str]) -> float:
    idx = [i for i, key in enumerate(keys) if key.startswith(('random', 'extra'))]
    return top1_rank([columns['trained_predictor'][i] for i in idx], [columns['trained'][i] for i in idx])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--stage', choices=('train', 'evaluate'), required=True)
    p.add_argument('--families', nargs='+', default=['peaks', 'texture'])
    p.add_argument('--conditioned', type=Path, default=RESULTS / 'conditioned_results_predictor20.pt')
    p.add_argument(
        '--quality',
        type=Path,
        nargs='+',
        default=[RESULTS / 'predictor_quality_repeat_peaks.json', RESULTS / 'predictor_quality_repeat_texture.json'],
        help="predictor_quality.py's JSON(s) for the same prior (with --repeat-trained); the evaluate "
        'stage scores the held-out tasks of every family they hold',
    )
    p.add_argument('--output', type=Path, default=None, help='results JSON (default: results.json in --output-dir)')
    p.add_argument('--architectures', type=int, default=60, help='random cells in the database')
    p.add_argument('--tasks', type=int, default=4, help='meta-training tasks per family in the database')
    p.add_argument('--train-steps', type=int, default=30)
    p.add_argument('--seed', type=int, default=7)
    p.add_argument('--output-dir', type=Path, default=RESULTS / 'trained_predictor')
    args = p.parse_args(argv)
    warnings.filterwarnings('ignore')
    logging.getLogger('nni').setLevel(logging.ERROR)
    torch.set_num_threads(1)
    quality = json.loads(args.quality[0].read_text())
    for path in args.quality[1:]:
        quality['families'].update(json.loads(path.read_text())['families'])
    for name in set(args.families) | set(quality['families']):  # the held-out task settings predictor_quality.py used
        quality['families'].setdefault(name, {})['settings'] = _settings(quality, name)
    prior = load_prior(args.conditioned)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    return train_stage(args, quality, prior) if args.stage == 'train' else evaluate_stage(args, quality, prior)


def _settings(quality: dict, name: str) -> dict:
    for path in quality['settings']['random_results']:
        data = json.loads(Path(path).read_text())
        if name in data['families']:
            return {k: data['settings'][k] for k in ('ways', 'shots', 'queries', 'image_size', 'heldout_tasks')}
    raise SystemExit(f'{name}: no settings in {quality["settings"]["random_results"]}')


if __name__ == '__main__':
    main()
