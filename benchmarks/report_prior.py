"""Write the prior-evidence report (Markdown + PNG) from known_answer.json and alpha_recovery results.

    python benchmarks/report_prior.py --known benchmarks/results/known_answer.json \
        --recovery benchmarks/results/alpha_recovery/results.json --output benchmarks/results/prior_evidence
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from nni_base.evaluation import DARTS_OPS, kendall_tau
from nni_base.io import write_text


def compare(cells: dict, known: dict) -> dict:
    acc = [known['ops'][op]['mean'] for op in DARTS_OPS]
    return {label: {'top_is_winner': c['top_op'] == known['winner'],
                    'kendall_tau': kendall_tau([c['per_op'][op] for op in DARTS_OPS], acc), **c}
            for label, c in cells.items()}


def markdown(known: dict, recovery: dict) -> str:
    lines = ['# Does the prior learn architectures? (CPU, 2 cores)', '',
             '## Known answers: every single-op cell trained from scratch on held-out tasks', '',
             f"Settings: {json.dumps(known['settings'])}", '',
             '| family | ' + ' | '.join(DARTS_OPS) + ' |', '|---' * (len(DARTS_OPS) + 1) + '|']
    for name, fam in known['families'].items():
        cells = [f"{fam['ops'][op]['mean']:.3f} ± {fam['ops'][op]['ci95']:.3f}" for op in DARTS_OPS]
        cells = [f'**{c}**' if op == fam['winner'] else c for op, c in zip(DARTS_OPS, cells)]
        lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
    lines += ['', 'Paired difference of the runner-up to the winner (mean ± 95% CI over tasks):', '']
    for name, fam in known['families'].items():
        second = fam['ranking'][1]
        d = fam['ops'][second]['diff_to_best']
        lines.append(f"- {name}: winner {fam['winner']}, runner-up {second}: {d['mean']:+.3f} ± {d['ci95']:.3f}")
    lines += ['', '## The meta-trained prior against the known answer', '',
              f"Settings: {json.dumps(recovery['settings'])}", '',
              '| family | seed | cell | α top op | winner? | Kendall τ | mean max p | meta-train s |',
              '|---|---|---|---|---|---|---|---|']
    for name, runs in recovery['families'].items():
        if name not in known['families']:
            continue
        for run in runs:
            for label, c in compare(run['cells'], known['families'][name]).items():
                lines.append(f"| {name} | {run['seed']} | {label} | {c['top_op']} | "
                             f"{'yes' if c['top_is_winner'] else 'no'} | {c['kendall_tau']:.2f} | "
                             f"{c['mean_max_prob']:.3f} | {run['meta_train_seconds']:.0f} |")
    lines += ['', '## Controls on held-out tasks (first seed)', '']
    for name, runs in recovery['families'].items():
        run = runs[0]
        if 'vs_random' in run:
            v = run['vs_random']
            lines.append(f"- {name}: derived cell {v['derived']['mean']:.3f} ± {v['derived']['ci95']:.3f} vs "
                         f"median random cell {v['random_median']:.3f} ± {v['random_median_cell_ci95']:.3f} "
                         f"(10 random cells: {', '.join(f'{m:.2f}' for m in v['random_means'])})")
        if 'adaptation' in run:
            a = run['adaptation']
            steps = a['adapted']['steps']
            lines.append(f"- {name}, query accuracy of the derived cell after {steps} adaptation steps:")
            for cond, curve in a.items():
                lines.append(f"  - {cond}: " + ', '.join(f'{m:.3f}±{c:.3f}' for m, c in zip(curve['mean'],
                                                                                            curve['ci95'])))
    return '\n'.join(lines) + '\n'


def plot(recovery: dict, path: Path) -> None:
    names = [n for n, runs in recovery['families'].items() if runs]
    fig = Figure(figsize=(6 * len(names), 8))
    axes = fig.subplots(2, len(names), squeeze=False)
    for col, name in enumerate(names):
        ax = axes[0][col]
        for run in recovery['families'][name]:
            for label, curve in run['concentration'].items():
                ax.plot(curve, label=f"{label} seed {run['seed']}")
        ax.axhline(0.125, color='gray', ls=':', label='uniform')
        ax.set_title(f'{name}: α mean max probability per edge')
        ax.set_xlabel('meta-step')
        ax.legend(fontsize=7)
        ax = axes[1][col]
        run = recovery['families'][name][0]
        for cond, curve in run.get('adaptation', {}).items():
            ax.errorbar(curve['steps'], curve['mean'], yerr=curve['ci95'], label=cond, capsize=3)
        ax.set_title(f'{name}: held-out query accuracy vs adaptation steps')
        ax.set_xlabel('adaptation step')
        ax.legend(fontsize=8)
    fig.tight_layout()
    FigureCanvasAgg(fig).print_png(str(path))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--known', type=Path, default=Path('benchmarks/results/known_answer.json'))
    p.add_argument('--recovery', type=Path, nargs='+',
                   default=[Path('benchmarks/results/alpha_recovery/results.json'),
                            *sorted(Path('benchmarks/results').glob('alpha_recovery_*/results.json'))],
                   help='alpha_recovery results; the first holds the controls, the others more seeds')
    p.add_argument('--output', type=Path, default=Path('benchmarks/results/prior_evidence'))
    args = p.parse_args(argv)
    known = json.loads(args.known.read_text())
    recovery: dict = {'settings': {}, 'families': {}}
    for path in args.recovery:
        if not path.is_file():
            continue
        part = json.loads(path.read_text())
        recovery['settings'] = part['settings']
        for name, runs in part['families'].items():  # seeds of one family may come from several runs
            recovery['families'][name] = recovery['families'].get(name, []) + runs
    write_text(args.output.with_suffix('.md'), markdown(known, recovery))
    plot(recovery, args.output.with_suffix('.png'))
    print(args.output.with_suffix('.md').read_text())


if __name__ == '__main__':
    main()
