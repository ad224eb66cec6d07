"""Building an :class:`~nni_base.database.ground_truth.ArchitectureDatabase`: train every (task, architecture, seed).

Where it sits
    Behind ``python -m nni_base.cli.database``. Every training is :func:`~nni_base.search.evaluation.train_on_task`
    from the seed :func:`~nni_base.database.ground_truth.pair_seed` gives it, so the result does not depend on how the
    work is split: one process or many, at once or resumed. Each accuracy is appended to a journal
    (``<output>.records.jsonl``) the moment it is measured and the database file is rewritten atomically every
    ``save_every`` trainings, so an interrupted build loses at most the trainings in flight. Seeds are filled one
    after the other, and within a seed the families' tasks take turns (:func:`task_order`): a build stopped half-way
    holds complete seeds and every family's first tasks, not one family's.

    >>> spec = DatabaseSpec(families=('peaks',), train_tasks=1, test_tasks=1, architectures=4, steps=2)
    >>> db = build_database(spec, 'tiny_db.json', workers=2)   # rerun: resumes
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..search.evaluation import train_on_task
from ..space.costs import architecture_costs
from .ground_truth import (
    ArchitectureDatabase,
    DatabaseError,
    DatabaseSpec,
    empty_database,
    load_database,
    pair_seed,
    save_database,
)

__all__ = ['build_database', 'journal_path', 'task_order']

_worker: dict = {}


def journal_path(output: str | os.PathLike) -> Path:
    """Where a build of ``output`` appends each measured accuracy."""
    output = Path(output)
    return output.with_name(output.name + '.records.jsonl')


def task_order(db: ArchitectureDatabase) -> list[int]:
    """The order a build fills tasks in: one task of every family, then the next of every family, with a family's
    meta-train and held-out tasks alternating. A build stopped early then holds every family's first tasks, held-out
    ones among them, so leave-one-family-out can be tried on it; the numbers do not depend on the order."""
    rank = {}
    for family in db.spec.families:
        train, test = db.task_indices(family, 'train'), db.task_indices(family, 'test')
        mixed = [t for pair in zip(train, test) for t in pair] + train[len(test) :] + test[len(train) :]
        rank.update({t: i for i, t in enumerate(mixed)})
    return sorted(range(len(db.tasks)), key=lambda t: (rank[t], db.spec.families.index(db.tasks[t].family)))


def _init_worker(spec: dict, threads: int) -> None:
    torch.set_num_threads(threads)
    spec_ = DatabaseSpec.from_dict(spec)
    _worker.update(spec=spec_, tasks=spec_.sample_tasks(), space=spec_.space(), archs=spec_.sample_architectures())


def _train(job: tuple[int, int, int]) -> tuple[int, int, int, float, float]:
    t, a, s = job
    spec: DatabaseSpec = _worker['spec']
    seed = pair_seed(t, a, spec.seeds[s])
    start = time.process_time()
    torch.manual_seed(seed)
    net = _worker['space'].freeze(_worker['archs'][a])
    accuracy = train_on_task(net, _worker['tasks'][t], spec.steps, lr=spec.lr, batch_size=spec.batch_size, seed=seed)
    return t, a, s, float(accuracy), time.process_time() - start


def _read_journal(path: Path, spec: DatabaseSpec) -> Iterator[tuple[int, int, int, float, float]]:
    if not path.is_file():
        return
    expected = spec.as_dict()
    for number, line in enumerate(path.read_text().splitlines(), 1):
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a crash: its training is simply redone
        if number == 1:
            if entry.get('spec') != expected:
                raise DatabaseError(
                    f'{path} journals a build with another spec; delete it, or build with the spec it records.'
                )
            continue
        yield entry['t'], entry['a'], entry['s'], entry['accuracy'], entry.get('cpu_s', 0.0)


def build_database(
    spec: DatabaseSpec,
    output: str | os.PathLike,
    *,
    workers: int = 1,
    threads_per_worker: int = 1,
    max_trainings: int | None = None,
    save_every: int = 50,
    progress: bool = True,
) -> ArchitectureDatabase:
    """Train what ``output`` (and its journal) do not hold yet, write the database to ``output``, return it.

    ``workers`` processes (``1``: this one) with ``threads_per_worker`` torch threads each — on a machine with
    ``n`` cores, ``n`` workers of one thread each is fastest, since small networks do not use many threads;
    ``max_trainings``: stop after that many new trainings (a build in pieces).
    """
    if workers < 1 or threads_per_worker < 1:
        raise ValueError(f'workers and threads_per_worker must be >= 1, got {workers} and {threads_per_worker}.')
    output, journal = Path(output), journal_path(output)
    db = empty_database(spec)
    if output.is_file():
        earlier = load_database(output)
        if earlier.spec != spec:
            raise DatabaseError(f'{output} holds a database of another spec; pick another --output or its spec.')
        db.accuracy, db.meta, db.costs = earlier.accuracy, earlier.meta, earlier.costs
    if db.costs is None:
        # Costs depend on the architecture only (a minute for 100 cells): measured once, before any training, on
        # one thread, and kept across resumes so a latency column is never a mix of two machines' moods.
        db.costs = architecture_costs(db.spec.space(), db.architectures, (3, spec.image_size, spec.image_size))
        _save_with_meta(db, output, float(db.meta.get('cpu_seconds', 0.0)))
    cpu_seconds = float(db.meta.get('cpu_seconds', 0.0))
    for t, a, s, accuracy, cpu in _read_journal(journal, spec):
        if not np.isfinite(db.accuracy[t, a, s]):
            db.accuracy[t, a, s] = accuracy
            cpu_seconds += cpu
    if not journal.is_file():
        journal.parent.mkdir(parents=True, exist_ok=True)
        journal.write_text(json.dumps({'spec': spec.as_dict()}) + '\n')
    jobs = [
        (t, a, s)
        for s in range(len(spec.seeds))
        for t in task_order(db)
        for a in range(spec.architectures)
        if not np.isfinite(db.accuracy[t, a, s])
    ][:max_trainings]
    start = time.perf_counter()
    bar = tqdm(total=db.accuracy.size, initial=db.accuracy.size - np.isnan(db.accuracy).sum(), disable=not progress)
    with journal.open('a') as log:
        for done, (t, a, s, accuracy, cpu) in enumerate(_run(spec, jobs, workers, threads_per_worker), 1):
            db.accuracy[t, a, s] = accuracy
            cpu_seconds += cpu
            log.write(json.dumps({'t': t, 'a': a, 's': s, 'accuracy': accuracy, 'cpu_s': round(cpu, 3)}) + '\n')
            log.flush()
            bar.update()
            if done % save_every == 0:
                _save_with_meta(db, output, cpu_seconds)
    bar.close()
    db.meta['last_build'] = {
        'trainings': len(jobs),
        'wall_seconds': round(time.perf_counter() - start, 1),
        'workers': workers,
        'threads_per_worker': threads_per_worker,
        'machine': {'cpus': os.cpu_count(), 'platform': platform.platform(), 'torch': torch.__version__},
    }
    _save_with_meta(db, output, cpu_seconds)
    return db


def _save_with_meta(db: ArchitectureDatabase, output: Path, cpu_seconds: float) -> None:
    db.meta['cpu_seconds'] = round(cpu_seconds, 1)
    db.meta['measured'] = int(np.isfinite(db.accuracy).sum())
    save_database(db, output)


def _run(spec: DatabaseSpec, jobs: list, workers: int, threads: int) -> Iterator[tuple[int, int, int, float, float]]:
    if workers == 1:
        before = torch.get_num_threads()
        _init_worker(spec.as_dict(), threads)
        try:
            yield from map(_train, jobs)
        finally:
            torch.set_num_threads(before)
        return
    # spawn, not fork: a forked child inherits the parent's OpenMP state, which can deadlock torch.
    with ProcessPoolExecutor(
        workers, mp_context=get_context('spawn'), initializer=_init_worker, initargs=(spec.as_dict(), threads)
    ) as pool:
        yield from pool.map(_train, jobs, chunksize=4)
