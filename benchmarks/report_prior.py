"""Write the prior-evidence report (Markdown + PNG) from known_answer.json and alpha_recovery results.

    python -m benchmarks.report_prior --known benchmarks/results/known_answer.json \
        --recovery benchmarks/results/alpha_recovery/results.json --output benchmarks/results/prior_evidence
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from benchmarks.common import save_figure, write_markdown_result
from nni_base.search.evaluation import DARTS_OPS, kendall_tau


def _against(c: dict, known: dict) -> tuple[bool, float]:
    acc = [known['ops'][op]['mean'] for op in DARTS_OPS]
    return c['top_op'] == known['winner'], kendall_tau([c['per_op'][op] for op in DARTS_OPS], acc)


def compare(cells: dict, known: dict) -> dict:
    """Each cell type's α against the single-op answer and, where measured, its own cell type's answer."""
    out = {}
    for label, c in cells.items():
        out[label] = dict(c)
        out[label]['top_is_winner'], out[label]['kendall_tau'] = _against(c, known)
        own = known.get('cell_types', {}).get(label)
        if own is not None:
            out[label]['cell_winner'] = own['winner']
            out[label]['top_is_cell_winner'], out[label]['cell_kendall_tau'] = _against(c, own)
    return out


# Settings that do not change what a meta-training run measures (runs differing only in these are merged).
_BOOKKEEPING = (
    'seeds',
    'families',
    'output_dir',
    'skip_controls',
    'adaptation_only',
    'controls_only',
    'threads',
    'known',
    'gumbel_steps',
    'gumbel_tasks',
)


def config_key(settings: dict) -> str:
    return json.dumps({k: v for k, v in settings.items() if k not in _BOOKKEEPING}, sort_keys=True)


def markdown(known: dict, recovery: list[tuple[dict, dict]]) -> str:
    lines = [
        '# Does the prior learn architectures? (CPU, 2 cores)',
        '',
        '## Known answers: every single-op cell trained from scratch on held-out tasks',
        '',
        f'Settings: {json.dumps(known["settings"])}',
        '',
        '| family | ' + ' | '.join(DARTS_OPS) + ' |',
        '|---' * (len(DARTS_OPS) + 1) + '|',
    ]
    for name, fam in known['families'].items():
        cells = [f'{fam["ops"][op]["mean"]:.3f} ± {fam["ops"][op]["ci95"]:.3f}' for op in DARTS_OPS]
        cells = [f'**{c}**' if op == fam['winner'] else c for op, c in zip(DARTS_OPS, cells)]
        lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
    lines += ['', 'Paired difference of the runner-up to the winner (mean ± 95% CI over tasks):', '']
    for name, fam in known['families'].items():
        second = fam['ranking'][1]
        d = fam['ops'][second]['diff_to_best']
        lines.append(f'- {name}: winner {fam["winner"]}, runner-up {second}: {d["mean"]:+.3f} ± {d["ci95"]:.3f}')
    per_cell = [(n, f) for n, f in known['families'].items() if 'cell_types' in f]
    if per_cell:
        lines += [
            '',
            "### Per cell type: one cell type's edges all `o`, the other cell type at the single-op winner",
            '',
            '| family | cell | ' + ' | '.join(DARTS_OPS) + ' |',
            '|---' * (len(DARTS_OPS) + 2) + '|',
        ]
        for name, fam in per_cell:
            for label, res in fam['cell_types'].items():
                cells = [f'{res["ops"][op]["mean"]:.3f} ± {res["ops"][op]["ci95"]:.3f}' for op in DARTS_OPS]
                cells = [f'**{c}**' if op == res['winner'] else c for op, c in zip(DARTS_OPS, cells)]
                lines.append(f'| {name} | {label} (other: {res["other_cell_op"]}) | ' + ' | '.join(cells) + ' |')
        lines += ['']
        for name, fam in per_cell:
            for label, res in fam['cell_types'].items():
                second = res['ranking'][1]
                d = res['ops'][second]['diff_to_best']
                lines.append(
                    f'- {name} {label}: winner {res["winner"]}, runner-up {second}: {d["mean"]:+.3f} ± {d["ci95"]:.3f}'
                )
    for settings, families in recovery:
        lines += markdown_recovery(known, settings, families)
    return '\n'.join(lines) + '\n'


def markdown_recovery(known: dict, settings: dict, families: dict) -> list[str]:
    lines = [
        '',
        f'## The meta-trained prior against the known answer ({settings.get("meta_steps")} meta-steps)',
        '',
        f'Settings: {json.dumps(settings)}',
        '',
        "Winner / τ: against the single-op ranking; cell winner / cell τ: against that cell type's own "
        'ranking (where measured).',
        '',
        '| family | seed | cell | α top op | winner? | Kendall τ | cell winner? | cell τ | mean max p | meta-train s |',
        '|---|---|---|---|---|---|---|---|---|---|',
    ]
    for name, runs in families.items():
        if name not in known['families']:
            continue
        for run in runs:
            for label, c in compare(run['cells'], known['families'][name]).items():
                own = (
                    (f'{"yes" if c["top_is_cell_winner"] else "no"} ({c["cell_winner"]}) | {c["cell_kendall_tau"]:.2f}')
                    if 'cell_winner' in c
                    else '– | –'
                )
                lines.append(
                    f'| {name} | {run["seed"]} | {label} | {c["top_op"]} | '
                    f'{"yes" if c["top_is_winner"] else "no"} | {c["kendall_tau"]:.2f} | {own} | '
                    f'{c["mean_max_prob"]:.3f} | {run["meta_train_seconds"]:.0f} |'
                )
    lines += ['', '### Controls on held-out tasks (first seed)', '']
    for name, runs in families.items():
        run = runs[0]
        if 'vs_random' in run:
            v = run['vs_random']
            lines.append(
                f'- {name}: derived cell {v["derived"]["mean"]:.3f} ± {v["derived"]["ci95"]:.3f} vs '
                f'median random cell {v["random_median"]:.3f} ± {v["random_median_cell_ci95"]:.3f} '
                f'(10 random cells: {", ".join(f"{m:.2f}" for m in v["random_means"])})'
                + (
                    f'; paired per task, derived minus the median random cell '
                    f'{v["paired_diff_to_median_cell"]["mean"]:+.3f} ± '
                    f'{v["paired_diff_to_median_cell"]["ci95"]:.3f}'
                    if 'paired_diff_to_median_cell' in v
                    else ''
                )
            )
        if 'adaptation' in run:
            a = run['adaptation']
            steps = a['adapted']['steps']
            lines.append(f'- {name}, query accuracy of the derived cell after {steps} adaptation steps:')
            for cond, curve in a.items():
                lines.append(
                    f'  - {cond}: ' + ', '.join(f'{m:.3f}±{c:.3f}' for m, c in zip(curve['mean'], curve['ci95']))
                )
            lines += [f'  - {line}' for line in time_to_accuracy(a)]
    return lines


def _first_reaching(curve: dict, target: float) -> int | None:
    return next((i for i, m in enumerate(curve['mean']) if m >= target), None)


def time_to_accuracy(a: dict) -> list[str]:
    """When the adapted prior reaches the from-scratch control's and GumbelDARTS's final accuracies."""
    out, adapted = [], a['adapted']
    control = a['scratch']
    i = _first_reaching(adapted, control['mean'][-1])
    out.append(
        f"from-scratch control's final {control['mean'][-1]:.3f} (step {control['steps'][-1]}): "
        + (
            'not reached'
            if i is None
            else f'reached by the adapted prior at step {adapted["steps"][i]} '
            f"({adapted['steps'][i] / control['steps'][-1]:.2f} of the control's steps)"
        )
    )
    gumbel = a.get('gumbel_darts')
    if gumbel is not None and 'seconds' in adapted:
        n = len(gumbel['per_task'])  # GumbelDARTS runs on the first n tasks: compare on those
        adapted = {
            'mean': np.asarray(adapted['per_task'][:n]).mean(0).tolist(),
            'steps': adapted['steps'],
            'seconds': adapted['seconds'],
        }
        i = _first_reaching(adapted, gumbel['mean'][-1])
        out.append(
            f"on the first {n} tasks, GumbelDARTS's final {gumbel['mean'][-1]:.3f} after {gumbel['steps'][-1]} "
            'steps, '
            f'{gumbel["seconds"][-1]:.1f} s: '
            + (
                'not reached'
                if i is None
                else f'reached by the adapted prior at step {adapted["steps"][i]}, {adapted["seconds"][i]:.2f} s '
                f"({adapted['seconds'][i] / gumbel['seconds'][-1]:.3f} of GumbelDARTS's time)"
            )
        )
    return out


def plot(recovery: list[tuple[dict, dict]], path: Path) -> None:
    """Two rows per meta-training configuration: α concentration per meta-step, Fig. 4-style adaptation curves."""
    width = max(len(families) for _, families in recovery)
    fig = Figure(figsize=(6 * width, 8 * len(recovery)))
    axes = fig.subplots(2 * len(recovery), width, squeeze=False)
    for group, (settings, families) in enumerate(recovery):
        steps = settings.get('meta_steps')
        for col, (name, runs) in enumerate(families.items()):
            ax = axes[2 * group][col]
            for run in runs:
                for label, curve in run['concentration'].items():
                    ax.plot(curve, label=f'{label} seed {run["seed"]}')
            ax.axhline(0.125, color='gray', ls=':', label='uniform')
            ax.set_title(f'{name} ({steps} meta-steps): α mean max probability per edge')
            ax.set_xlabel('meta-step')
            ax.legend(fontsize=7)
            ax = axes[2 * group + 1][col]
            for cond, curve in runs[0].get('adaptation', {}).items():
                if cond != 'gumbel_darts':  # its own, longer step axis: in the Markdown report
                    ax.errorbar(curve['steps'], curve['mean'], yerr=curve['ci95'], label=cond, capsize=3)
            ax.set_title(f'{name} ({steps} meta-steps): held-out query accuracy vs adaptation steps')
            ax.set_xlabel('adaptation step')
            ax.legend(fontsize=8)
        for col in range(len(families), width):
            axes[2 * group][col].set_visible(False)
            axes[2 * group + 1][col].set_visible(False)
    fig.tight_layout()
    save_figure(fig, path)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--known', type=Path, default=Path('benchmarks/results/known_answer.json'))
    p.add_argument(
        '--recovery',
        type=Path,
        nargs='+',
        default=[
            Path('benchmarks/results/alpha_recovery/results.json'),
            *sorted(Path('benchmarks/results').glob('alpha_recovery_*/results.json')),
        ],
        help='alpha_recovery results; the first holds the controls, the others more seeds',
    )
    p.add_argument('--output', type=Path, default=Path('benchmarks/results/prior_evidence'))
    p.add_argument(
        '--figure',
        type=Path,
        default=Path('docs/images/prior_evidence.png'),
        help='the picture (the one copy README and docs show)',
    )
    args = p.parse_args(argv)
    known = json.loads(args.known.read_text())
    groups: dict[str, tuple[dict, dict]] = {}  # runs of one configuration (seeds, families) from several files
    for path in args.recovery:
        if not path.is_file():
            continue
        part = json.loads(path.read_text())
        settings, families = groups.setdefault(config_key(part['settings']), (part['settings'], {}))
        for name, runs in part['families'].items():
            families[name] = families.get(name, []) + runs
    recovery = list(groups.values())
    write_markdown_result(args.output.with_suffix('.md'), markdown(known, recovery))
    plot(recovery, args.figure)
    print(args.output.with_suffix('.md').read_text())


if __name__ == '__main__':
    main()
