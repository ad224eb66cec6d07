"""Check an nnictl experiment config for misspelled keys before ``nnictl create`` runs it.

    python -m nni_base.cli.check_config examples/base_exp.yml

NNI reads a misspelled key as an unknown argument and stops with a long traceback (or, inside
``trainingService``, ``'dict' object has no attribute 'platform'``). This reads the YAML file as NNI does (keys
are case-insensitive and underscores do not count: ``trial_concurrency`` is ``trialConcurrency``) and prints one
line per unknown key with the closest valid one, for:

* the experiment's keys, ``tuner`` / ``assessor`` / ``advisor``, ``trainingService`` (the keys of its
  ``platform``) and ``sharedStorage``;
* the search space (``searchSpace``, or the file ``searchSpaceFile`` names): each parameter must be one that
  ``python -m nni_base.cli.trial`` accepts when the ``trialCommand`` runs it, each entry holds ``_type`` (a type
  NNI knows) and ``_value``;
* the JSON object of a ``--params`` option in the ``trialCommand``.

Exit status: 0 when nothing is misspelled, 1 when something is (one line each), 2 when the file cannot be read.
The values themselves (numbers, paths, a tuner's ``classArgs``) are left to NNI and the trial.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import shlex
import sys
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from nni.experiment.config import ExperimentConfig
from nni.experiment.config import training_services as _training_services  # noqa: F401  (registers the platforms)
from nni.experiment.config.base import ConfigBase
from nni.experiment.config.shared_storage import SharedStorageConfig
from nni.experiment.config.training_service import TrainingServiceConfig
from nni.experiment.config.utils import camel_case, case_insensitive

__all__ = ['SEARCH_SPACE_TYPES', 'check_config', 'main']

PROG = 'python -m nni_base.cli.check_config'
#: The ``_type`` values of NNI's search space format.
SEARCH_SPACE_TYPES = (
    'choice',
    'randint',
    'uniform',
    'quniform',
    'loguniform',
    'qloguniform',
    'normal',
    'qnormal',
    'lognormal',
    'qlognormal',
)
_TRIAL = 'nni_base.cli.trial'


class ConfigReadError(ValueError):
    """The config file cannot be read as a YAML mapping."""


def check_config(path: str | Path) -> list[str]:
    """The misspelled keys of the nnictl experiment config at ``path``, one message each (empty: none).

    Raises
    ------
    ConfigReadError
        If the file does not exist or is not a YAML mapping.
    """
    path = Path(path)
    config = _read_yaml(path, 'the experiment config')
    problems: list[str] = []
    _check_section(config, ExperimentConfig, '', problems)
    keys = {case_insensitive(str(k)): v for k, v in config.items()}
    for required in ('trial_concurrency', 'training_service'):
        suggested = any(f'did you mean {camel_case(required)!r}' in p for p in problems)  # said once is enough
        if case_insensitive(required) not in keys and not suggested:
            problems.append(f'missing required key {camel_case(required)!r}')
    command = keys.get('trialcommand')
    command = command if isinstance(command, str) else ''
    parameters = _trial_parameters() if _TRIAL in command else None
    if 'searchspace' in keys and 'searchspacefile' in keys:
        problems.append("both 'searchSpace' and 'searchSpaceFile' are set: NNI takes one of them, remove the other")
    if isinstance(keys.get('searchspace'), dict):
        _check_search_space(keys['searchspace'], 'searchSpace', parameters, problems)
    elif isinstance(keys.get('searchspacefile'), str):
        space_file = (path.parent / keys['searchspacefile']).expanduser()  # NNI: relative to the config's folder
        try:
            space = _read_yaml(space_file, 'the search space file (searchSpaceFile)')
        except ConfigReadError as e:
            problems.append(f'searchSpaceFile: {e}')
        else:
            _check_search_space(space, f'searchSpaceFile({space_file})', parameters, problems)
    elif 'searchspace' not in keys and 'searchspacefile' not in keys:
        problems.append("missing 'searchSpaceFile' (or 'searchSpace'): NNI needs the search space of the tuner")
    if parameters is not None:
        _check_command_params(command, parameters, problems)
    return problems


def _read_yaml(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigReadError(f'{path} is not a file: give the path of {what}')
    try:
        data = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        where = getattr(e, 'problem_mark', None)
        at = f' (line {where.line + 1})' if where is not None else ''
        raise ConfigReadError(f'{path} is not valid YAML{at}: {getattr(e, "problem", None) or e}') from e
    if not isinstance(data, dict):
        raise ConfigReadError(f'{path} must hold a mapping of keys (key: value lines), got {type(data).__name__}')
    return data


def _closest(given: Any, valid: Sequence[str]) -> str:
    """The closest valid spelling (compared as NNI compares keys), or the list of valid ones."""
    by_canon = {case_insensitive(v): v for v in valid}
    close = difflib.get_close_matches(case_insensitive(str(given)), list(by_canon), n=1, cutoff=0.6)
    return f'did you mean {by_canon[close[0]]!r}?' if close else f'valid: {", ".join(sorted(valid))}'


def _unknown(where: str, key: Any, valid: Sequence[str], what: str = 'unknown key') -> str:
    """An unknown key at ``where`` (a dotted prefix such as ``'trainingService.'``) with the closest valid one."""
    return f'{where}{key}: {what}; {_closest(key, valid)}'


def _check_section(data: dict[str, Any], cls: type[ConfigBase], where: str, problems: list[str]) -> None:
    hints = typing.get_type_hints(cls)
    fields = {case_insensitive(f.name): f for f in dataclasses.fields(cls)}
    valid = [camel_case(f.name) for f in fields.values()]
    for key, value in data.items():
        field = fields.get(case_insensitive(str(key)))
        if field is None:
            problems.append(_unknown(where, key, valid))
        else:
            _check_value(hints[field.name], value, f'{where}{key}.', problems)


def _check_value(hint: Any, value: Any, where: str, problems: list[str]) -> None:
    classes = _config_classes(hint)
    if not classes:
        return  # a plain value (or a free-form dict such as classArgs): NNI checks it
    if isinstance(value, list):
        for i, item in enumerate(value):
            _check_value(hint, item, f'{where[:-1]}[{i}].', problems)
        return
    if not isinstance(value, dict):
        return
    cls: type[ConfigBase] | None = classes[0]
    if issubclass(classes[0], TrainingServiceConfig):
        cls = _variant(value, 'platform', TrainingServiceConfig, where, problems)
    elif issubclass(classes[0], SharedStorageConfig):
        cls = _variant(value, 'storage_type', SharedStorageConfig, where, problems)
    if cls is not None:
        _check_section(value, cls, where, problems)


def _config_classes(hint: Any) -> list[type[ConfigBase]]:
    """The config classes a field's type admits, through Optional, Union and List."""
    if isinstance(hint, type) and issubclass(hint, ConfigBase):
        return [hint]
    return [c for arg in typing.get_args(hint) for c in _config_classes(arg)]


def _variant(
    value: dict[str, Any], key: str, base: type[ConfigBase], where: str, problems: list[str]
) -> type[ConfigBase] | None:
    """The subclass of ``base`` whose ``key`` (``platform``, ``storage_type``) the section names."""
    variants = {getattr(c, key): c for c in _subclasses(base) if isinstance(getattr(c, key, None), str)}
    given = next((v for k, v in value.items() if case_insensitive(str(k)) == case_insensitive(key)), None)
    if given is None:
        problems.append(f'{where[:-1]}: missing {camel_case(key)!r} (one of {", ".join(sorted(variants))})')
        return None
    if given not in variants:
        problems.append(
            f'{where}{camel_case(key)}: {given!r} is not a {camel_case(key)} NNI has; {_closest(given, variants)}'
        )
        return None
    return variants[given]


def _subclasses(cls: type) -> list[type]:
    return [s for sub in cls.__subclasses__() for s in (sub, *_subclasses(sub))]


def _trial_parameters() -> list[str]:
    from .trial_params import DEFAULT_PARAMS  # only when the config runs the trial

    return sorted(DEFAULT_PARAMS)


def _check_search_space(space: Any, where: str, parameters: list[str] | None, problems: list[str]) -> None:
    if not isinstance(space, dict):
        problems.append(f'{where}: must map parameter names to {{_type: ..., _value: ...}}')
        return
    for name, entry in space.items():
        if parameters is not None and name not in parameters:
            problems.append(_unknown(f'{where}.', name, parameters, f'not a parameter of python -m {_TRIAL}'))
        at = f'{where}.{name}'
        if not isinstance(entry, dict):
            problems.append(f'{at}: must be a mapping {{_type: ..., _value: ...}}, got {entry!r}')
            continue
        for key in entry:
            if key not in ('_type', '_value'):
                problems.append(_unknown(f'{at}.', key, ['_type', '_value'], 'unknown key of a search space entry'))
        kind = entry.get('_type')
        if '_type' in entry and kind not in SEARCH_SPACE_TYPES:
            problems.append(
                f'{at}._type: {kind!r} is not a search space type NNI has; {_closest(kind, SEARCH_SPACE_TYPES)}'
            )
        for key in ('_type', '_value'):
            if key not in entry and set(entry) <= {'_type', '_value'}:  # else the misspelling is reported
                problems.append(f'{at}: missing {key!r}')


def _check_command_params(command: str, parameters: list[str], problems: list[str]) -> None:
    """The keys of the trial command's ``--params '{...}'`` JSON object."""
    try:
        words = shlex.split(command)
    except ValueError:
        return  # an unbalanced quote: the shell will say so
    for i, word in enumerate(words):
        text = words[i + 1] if word == '--params' and i + 1 < len(words) else word.partition('=')[2]
        if word != '--params' and not word.startswith('--params='):
            continue
        try:
            given = json.loads(text)
        except json.JSONDecodeError as e:
            problems.append(f'trialCommand: --params is not valid JSON ({e})')
            continue
        if isinstance(given, dict):
            for name in given:
                if name not in parameters:
                    problems.append(
                        _unknown('trialCommand --params.', name, parameters, f'not a parameter of python -m {_TRIAL}')
                    )


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (0: no misspelled key, 1: some, 2: unreadable file)."""
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split('\n')[0])
    parser.add_argument('config', type=Path, help='the nnictl experiment config (YAML), e.g. examples/base_exp.yml')
    args = parser.parse_args(argv)
    try:
        problems = check_config(args.config)
    except ConfigReadError as e:
        print(f'{PROG}: error: {e}', file=sys.stderr)
        return 2
    for problem in problems:
        print(f'{args.config}: {problem}')
    if not problems:
        print(f'{args.config}: no misspelled keys')
    return 1 if problems else 0


if __name__ == '__main__':
    sys.exit(main())
