"""A ground-truth database of trained architectures: every architecture of a set trained from scratch on every
task of several task families, each with several seeds — MetaD2A's foundation, at CPU scale.

Where it sits
    Beside search, after the data and the space: what a zero-shot predictor or generator learns from, and what any
    NAS method's pick is scored against (its percentile among a task's architectures and its regret to the best,
    :meth:`ArchitectureDatabase.score`), as NAS-Bench-201 is for GPU-sized spaces. The shipped file is built by
    ``python -m nni_base.cli.database`` (resumable, parallel over processes; :func:`build_database`) and read by
    :func:`load_database`, which checks its format, schema and checksum and never executes anything from it.

What is in it
    ``spec`` (:class:`DatabaseSpec`) says how every number was made: the space (a :class:`~nni_base.DartsTaskSpace`
    size), the families and task counts, the training recipe of :func:`~nni_base.search.evaluation.train_on_task`,
    the seeds. The tasks are regenerated from the spec (:meth:`ArchitectureDatabase.task`), each checked against
    its stored fingerprint; ``accuracy[t, a, s]`` is architecture ``a``'s query accuracy on task ``t`` when
    trained from seed ``s`` (NaN: not measured yet).

    >>> db = load_database()                                   # the shipped database
    >>> acc = db.mean_accuracy()                               # (tasks, architectures), seed-averaged
    >>> db.score(0, db.architectures[acc[0].argmax()])         # a pick's percentile and regret on task 0
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from ..io import write_json
from ..resources import resource_path
from ..tasks import Task
from .spec import DATABASE_FAMILIES, DATABASE_SPECS, DatabaseError, DatabaseSpec, pair_seed

__all__ = [
    'DATABASE_FORMAT',
    'DATABASE_VERSION',
    'DEFAULT_DATABASE',
    'DATABASE_FAMILIES',
    'DatabaseError',
    'DatabaseSpec',
    'TaskEntry',
    'ArchitectureDatabase',
    'load_database',
    'save_database',
    'pair_seed',
    'architecture_key',
    'DATABASE_SPECS',
]

DATABASE_FORMAT = 'nni-base-architecture-database'
#: The version this nni-base writes; it reads :data:`READABLE_VERSIONS` (version 1 has no cost columns).
DATABASE_VERSION = 2
READABLE_VERSIONS = (1, 2)
DEFAULT_DATABASE = resource_path('architecture_database_v1.json')
#: The cost columns of a version-2 file, one value per architecture.
COST_COLUMNS = ('params', 'macs', 'latency_ms')
#: Where each database version's file ships.
DATABASE_FILES = {1: DEFAULT_DATABASE, 2: DEFAULT_DATABASE.with_name('architecture_database_v2.json')}


@dataclass(frozen=True)
class TaskEntry:
    """One task of the database: where it comes from, and a fingerprint of its images and labels."""

    family: str
    split: str
    index: int
    fingerprint: str


def fingerprint(task: Task) -> str:
    """A short digest of a task's labels and (rounded) image sums: regenerated tasks must match it."""
    parts = [task.support_y, task.query_y, task.support_x.double().sum((1, 2, 3)), task.query_x.double().sum((1, 2, 3))]
    text = ';'.join(','.join(f'{float(v):.3f}' for v in p.flatten()) for p in parts)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class ArchitectureDatabase:
    """Trained accuracies of ``architectures`` on ``tasks`` (see the module docstring); built or loaded."""

    spec: DatabaseSpec
    tasks: list[TaskEntry]
    architectures: list[dict[str, Any]]
    accuracy: np.ndarray  # (tasks, architectures, seeds); NaN where not measured
    meta: dict[str, Any] = field(default_factory=dict)
    #: per architecture: ``params``, ``macs`` (one image), ``latency_ms`` (CPU, one image, one thread) and
    #: ``machine`` (where the latency was measured); None in a version-1 file
    costs: dict[str, Any] | None = None

    @cached_property
    def _tasks(self) -> list[Task]:
        tasks = self.spec.sample_tasks()
        for t, (task, entry) in enumerate(zip(tasks, self.tasks)):
            if fingerprint(task) != entry.fingerprint:
                raise DatabaseError(
                    f'Task {t} ({entry.family}/{entry.split} #{entry.index}) regenerates differently than when the '
                    'database was built (its family generator or the task sampler changed): rebuild the database '
                    '(python -m nni_base.cli.database) or use the nni-base version that built it.'
                )
        return tasks

    def task(self, index: int) -> Task:
        """Task ``index``, regenerated from the spec and checked against its fingerprint."""
        return self._tasks[index]

    def task_indices(self, family: str | None = None, split: str | None = None) -> list[int]:
        """Indices of the tasks of ``family`` and/or ``split`` (``'train'``: meta-train classes, ``'test'``)."""
        return [
            t
            for t, e in enumerate(self.tasks)
            if (family is None or e.family == family) and (split is None or e.split == split)
        ]

    @property
    def complete(self) -> bool:
        return bool(np.isfinite(self.accuracy).all())

    def mean_accuracy(self) -> np.ndarray:
        """(tasks, architectures): accuracy averaged over the measured seeds (NaN where none is)."""
        with np.errstate(invalid='ignore'):
            counts = np.isfinite(self.accuracy).sum(2)
            return np.where(counts > 0, np.nansum(self.accuracy, 2) / np.maximum(counts, 1), np.nan)

    def index_of(self, sample: dict[str, Any]) -> int | None:
        """The database index of an architecture (an NNI sample of the DARTS cells), or None."""
        key = architecture_key(sample, self.spec)
        return self._arch_index.get(key)

    @cached_property
    def _arch_index(self) -> dict[tuple, int]:
        return {architecture_key(s, self.spec): a for a, s in enumerate(self.architectures)}

    def score(self, task: int, accuracy: float) -> dict[str, float]:
        """Where a pick with seed-averaged ``accuracy`` on ``task`` stands among the task's architectures:
        ``percentile`` (share of the database's architectures it beats or ties, 0..100) and ``regret`` (best − it)."""
        column = self.mean_accuracy()[task]
        column = column[np.isfinite(column)]
        if len(column) == 0:
            raise DatabaseError(f'Task {task} has no measured architecture yet: finish the build first.')
        return {
            'accuracy': float(accuracy),
            'percentile': float(100.0 * np.mean(column <= accuracy + 1e-9)),
            'regret': float(column.max() - accuracy),
        }


def architecture_key(sample: dict[str, Any], spec: DatabaseSpec) -> tuple:
    """What identifies a DARTS cell architecture: (operation, input) of every edge slot, both cell types."""
    keys = [
        (label, node, k) for label in ('normal', 'reduce') for node in range(2, 2 + spec.num_nodes) for k in range(2)
    ]
    return tuple(
        (sample[f'{label}/op_{node}_{k}'], int(_first(sample[f'{label}/input_{node}_{k}']))) for label, node, k in keys
    )


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, (list, tuple)) else value


# ---- files -------------------------------------------------------------------------------------------------------
def _content(db: ArchitectureDatabase) -> dict[str, Any]:
    content = {
        'spec': db.spec.as_dict(),
        'tasks': [asdict(e) for e in db.tasks],
        'architectures': db.architectures,
        'accuracy': [
            [[None if not math.isfinite(v) else round(float(v), 6) for v in row] for row in t] for t in db.accuracy
        ],
    }
    if db.costs is not None:
        content['costs'] = db.costs
    return content


def _check_costs(costs: Any, architectures: int, path: Path) -> dict[str, Any]:
    if not isinstance(costs, dict):
        raise DatabaseError(f'{path} is a version-2 database without cost columns: the file is damaged; rebuild it.')
    for column in COST_COLUMNS:
        values = costs.get(column)
        if not isinstance(values, list) or len(values) != architectures:
            raise DatabaseError(
                f'{path}: cost column {column!r} must hold one number per architecture ({architectures}); '
                'the file is damaged or from an unfinished build: rerun `python -m nni_base.cli.database`.'
            )
        bad = [a for a, v in enumerate(values) if not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0]
        if bad:
            raise DatabaseError(f'{path}: cost column {column!r} has non-positive or missing values at {bad[:5]}.')
    return costs


def _checksum(content: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def save_database(db: ArchitectureDatabase, path: str | os.PathLike) -> Path:
    """Write ``db`` to ``path`` (JSON, atomically) with its format, version and checksum."""
    content = _content(db)
    return write_json(
        path,
        {
            'format': DATABASE_FORMAT,
            'version': DATABASE_VERSION if db.costs is not None else 1,
            **content,
            'meta': db.meta,
            'checksum': _checksum(content),
        },
    )


def load_database(path: str | os.PathLike | None = None) -> ArchitectureDatabase:
    """Read a database file (default: the one shipped with nni-base); a damaged or foreign file raises
    :class:`DatabaseError` that says what is wrong."""
    path = Path(path) if path is not None else DEFAULT_DATABASE
    if not path.is_file():
        raise DatabaseError(
            f'No database file at {path}: build one with `python -m nni_base.cli.database --output {path}`.'
        )
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatabaseError(
            f'{path} is not a database file (not JSON: {e}); rebuild it or restore the shipped one.'
        ) from e
    if not isinstance(data, dict) or data.get('format') != DATABASE_FORMAT:
        raise DatabaseError(f'{path} is not an nni-base architecture database (no "format": "{DATABASE_FORMAT}").')
    version = data.get('version')
    if version not in READABLE_VERSIONS:
        raise DatabaseError(
            f'{path} is database version {version!r}; this nni-base reads versions '
            f'{", ".join(map(str, READABLE_VERSIONS))}: upgrade nni-base, or rebuild the file with this one.'
        )
    keys = ('spec', 'tasks', 'architectures', 'accuracy') + (('costs',) if version >= 2 else ())
    missing = [k for k in (*keys, 'checksum') if k not in data]
    if missing:
        raise DatabaseError(f'{path} lacks {", ".join(missing)}: the file is damaged; rebuild it.')
    content = {k: data[k] for k in keys}
    if _checksum(content) != data['checksum']:
        raise DatabaseError(f'{path} does not match its checksum: the file was damaged or edited; rebuild it.')
    spec = DatabaseSpec.from_dict(content['spec'])
    tasks = [TaskEntry(**e) for e in content['tasks']]
    accuracy = np.array(
        [[[np.nan if v is None else float(v) for v in row] for row in t] for t in content['accuracy']], dtype=float
    ).reshape(len(tasks), len(content['architectures']), len(spec.seeds))
    if [(e.family, e.split, e.index) for e in tasks] != spec.task_layout() or len(
        content['architectures']
    ) != spec.architectures:
        raise DatabaseError(f'{path}: its tasks or architectures do not match its spec; the file is damaged.')
    costs = _check_costs(content['costs'], spec.architectures, path) if version >= 2 else None
    return ArchitectureDatabase(spec, tasks, content['architectures'], accuracy, data.get('meta', {}), costs)


def empty_database(spec: DatabaseSpec, tasks: Sequence[Task] | None = None) -> ArchitectureDatabase:
    """A database of ``spec`` with nothing measured: its tasks fingerprinted, its architectures drawn."""
    tasks = spec.sample_tasks() if tasks is None else tasks
    entries = [TaskEntry(f, s, i, fingerprint(t)) for (f, s, i), t in zip(spec.task_layout(), tasks)]
    accuracy = np.full((len(entries), spec.architectures, len(spec.seeds)), np.nan)
    return ArchitectureDatabase(spec, entries, spec.sample_architectures(), accuracy)
