"""The parameters of an NNI trial (:mod:`nni_base.cli.trial`): their declarations, defaults, checks, search space.

Kept apart from the trial's run so that a config check (:mod:`nni_base.cli.check_config`) reads them without
importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ..config import BaseConfig, coerce, hparam
from ..prior.shipped import SHIPPED_PRIORS, resolve_prior_path

__all__ = [
    'ACCELERATORS',
    'BASE_PARAMS',
    'BASE_TRIAL_DEFAULTS',
    'DATASETS',
    'DEFAULT_PARAMS',
    'RANK_PARAMS_ENV',
    'STRATEGIES',
    'TRIAL_FILES',
    'TrialSettings',
    'declarations',
    'search_space',
    'validate_params',
]

#: Values of the ``accelerator`` parameter.
ACCELERATORS = ('auto', 'cpu', 'gpu')
#: Environment variable through which rank 0 of a DDP trial hands its parameters to the ranks Lightning starts.
RANK_PARAMS_ENV = 'NNI_BASE_TRIAL_PARAMS'
#: Values of the ``strategy`` parameter (Lightning's names).
STRATEGIES = ('auto', 'ddp')
#: Values of the ``dataset`` parameter.
DATASETS = ('digits', 'image_folder', 'cifar10', 'cifar100', 'svhn', 'imagenet32', 'imagenet64')

#: The BASE knobs a trial takes; they are declared (default, checks, tuning range) in BaseConfig.
BASE_PARAMS = (
    'inner_steps',
    'inner_lr',
    'inner_lr_alpha',
    'outer_lr',
    'outer_lr_alpha',
    'adapt_steps',
    'arc_learning_rate',
    'meta_algorithm',
    'first_order',
    'relaxation',
    'dataset_conditioning',
    'zero_shot_pool',
    'zero_shot_candidates',
)
#: What a trial writes into its output folder.
TRIAL_FILES = ('prior.pt', 'arch.json', 'probs.json', 'top_k.json', 'zero_shot.json')
#: Where the trial's default differs from the library's: sized to finish in about a minute on 2 CPU cores.
BASE_TRIAL_DEFAULTS = {'inner_steps': 3}


@dataclass
class TrialSettings:
    """The trial's own parameters (budget, tasks, supernet, data), declared like BaseConfig's."""

    # hard samples do not depend on the temperature (only alpha's gradient scale does)
    temperature_start: float = hparam(1.0, 'float', minimum=1e-6, tune={'_type': 'choice', '_value': [2.0, 5.0, 10.0]})
    temperature_end: float = hparam(1.0, 'float', minimum=1e-6, tune={'_type': 'choice', '_value': [0.2, 0.5, 1.0]})
    tasks_per_step: int = hparam(2, 'int', minimum=1, tune={'_type': 'choice', '_value': [1, 2, 4]})
    steps_per_epoch: int = hparam(5, 'int', minimum=1)
    meta_epochs: int = hparam(2, 'int', minimum=1)
    val_episodes: int = hparam(2, 'int', minimum=1)
    ways: int = hparam(5, 'int', minimum=2)
    shots: int = hparam(5, 'int', minimum=1)
    queries: int = hparam(5, 'int', minimum=1)
    width: int = hparam(8, 'int', minimum=1)
    num_cells: int = hparam(3, 'int', minimum=1)
    eval_tasks: int = hparam(4, 'int', minimum=1)  # held-out tasks of the final adaptation / evaluation
    top_k: int = hparam(1, 'int', minimum=1)  # architectures written to top_k.json, best first, with scores
    # a hardware budget on the exported cell (nni_base.hardware.Budget): parameters, MACs of one image, CPU latency
    # (ms, one thread; from latency_table, written by python -m nni_base.cli.latency, or measured in the trial)
    budget_params: float | None = hparam(None, 'float', minimum=1, optional=True)
    budget_macs: float | None = hparam(None, 'float', minimum=1, optional=True)
    budget_latency_ms: float | None = hparam(None, 'float', minimum=1e-6, optional=True)
    latency_table: str | None = hparam(None, 'path', optional=True)
    # also generate top_k architectures per held-out task from the conditioned prior, no training step
    # (zero_shot.json); needs dataset_conditioning or a conditioned prior
    zero_shot: bool = hparam(False, 'bool')
    # 'digits' is embedded; the others read files under data_root
    dataset: str = hparam('digits', 'choice', choices=DATASETS)
    data_root: str | None = hparam(None, 'path', optional=True)
    image_size: int | None = hparam(None, 'int', minimum=4, optional=True)
    # a prior file, or a shipped prior's name ('default'), to start from instead of meta-training
    prior: str | None = hparam(None, 'path', optional=True)
    seed: int = hparam(0, 'int', minimum=0)
    num_threads: int = hparam(2, 'int', minimum=0)
    # 'auto' uses a GPU when the trial sees one (trialGpuNumber >= 1 in the experiment config)
    accelerator: str = hparam('auto', 'choice', choices=ACCELERATORS)
    # Lightning's devices / num_nodes / strategy for meta-training: strategy 'ddp' with devices > 1 splits each
    # meta-step's tasks among the processes (rank 0 then adapts, exports and reports; see README "Scale out")
    devices: int = hparam(1, 'int', minimum=1)
    num_nodes: int = hparam(1, 'int', minimum=1)
    strategy: str = hparam('auto', 'choice', choices=STRATEGIES)


def declarations() -> dict[str, Any]:
    """Every trial parameter's dataclass field (BASE knobs first), in the order ``--help`` lists them."""
    base = {f.name: f for f in fields(BaseConfig) if f.name in BASE_PARAMS}
    return {**{name: base[name] for name in BASE_PARAMS}, **{f.name: f for f in fields(TrialSettings)}}


#: Defaults of every parameter a trial accepts; tuner values and ``--params`` are merged over them.
DEFAULT_PARAMS: dict[str, Any] = {name: BASE_TRIAL_DEFAULTS.get(name, f.default) for name, f in declarations().items()}


def search_space() -> dict[str, dict[str, Any]]:
    """NNI's search space for the trial (``search_spaces/base_hparams.json`` is this, written out)."""
    return {name: dict(f.metadata['tune']) for name, f in declarations().items() if f.metadata.get('tune')}


def validate_params(params: dict[str, Any] | None) -> dict[str, Any]:
    """Merge ``params`` over :data:`DEFAULT_PARAMS` and check every value.

    Parameters
    ----------
    params
        Parameters from the tuner and/or the command line; ``None`` means all defaults.

    Returns
    -------
    dict[str, Any]
        A complete, normalised parameter set (integral floats turned into ints, paths expanded).

    Raises
    ------
    ValueError
        On an unknown parameter name or a value of the wrong type or out of range; the message names the
        parameter and the accepted values.
    """
    params = dict(params or {})
    unknown = sorted(set(params) - set(DEFAULT_PARAMS))
    if unknown:
        raise ValueError(
            f'unknown parameter(s) {", ".join(map(repr, unknown))}; accepted parameters are: '
            f'{", ".join(sorted(DEFAULT_PARAMS))}'
        )
    merged = {**DEFAULT_PARAMS, **params}
    for name, declaration in declarations().items():
        if declaration.metadata['kind'] == 'path':
            value = merged[name]
            if value is not None and (not isinstance(value, str) or not value):
                raise ValueError(f'parameter {name!r} must be a path string or null, got {value!r}')
            try:
                merged[name] = None if value is None else str(Path(value).expanduser().resolve())
            except (RuntimeError, ValueError, OSError) as e:  # '~nosuchuser/...', a NUL byte
                raise ValueError(f'parameter {name!r} is not a usable path ({e}): {value!r}') from e
        else:
            merged[name] = coerce(f'parameter {name!r}', merged[name], declaration.metadata, json_spelling=True)
    _check_together(merged)
    return merged


def _check_together(merged: dict[str, Any]) -> None:
    """The checks that read several parameters at once (a dataset and its folder, a prior and zero_shot)."""
    if merged['temperature_end'] > merged['temperature_start']:
        raise ValueError(
            f"parameter 'temperature_end' ({merged['temperature_end']}) must not exceed "
            f"'temperature_start' ({merged['temperature_start']}): the temperature anneals downwards"
        )
    if merged['dataset'] == 'digits':
        if merged['data_root'] is not None:
            raise ValueError(
                "parameter 'data_root' is only used with a file-based 'dataset' "
                f"({', '.join(DATASETS[1:])}); dataset 'digits' is embedded"
            )
    else:
        if merged['data_root'] is None:
            raise ValueError(f"dataset {merged['dataset']!r} reads files: set parameter 'data_root' to its folder")
        if not Path(merged['data_root']).is_dir():
            raise ValueError(f"parameter 'data_root' is not a folder: {merged['data_root']}")
    if merged['prior'] is not None:
        resolved = resolve_prior_path(merged['prior'])
        if not resolved.is_file():
            raise ValueError(
                f"parameter 'prior' is not a file: {merged['prior']} (or name a shipped prior: "
                f'{", ".join(sorted(SHIPPED_PRIORS))})'
            )
        merged['prior'] = str(resolved)  # a shipped prior's name becomes its file
    if merged['latency_table'] is not None and merged['budget_latency_ms'] is None:
        raise ValueError("parameter 'latency_table' is read for a latency budget: set 'budget_latency_ms' too")
    if merged['zero_shot'] and merged['prior'] is None and not merged['dataset_conditioning']:
        raise ValueError(
            "parameter 'zero_shot' generates architectures from a dataset-conditioned prior: set "
            "'dataset_conditioning' to true (meta-train one) or 'prior' to a conditioned prior file"
        )
