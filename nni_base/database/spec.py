"""What decides a ground-truth database's numbers (:class:`DatabaseSpec`), and the specs of the shipped versions.

A spec regenerates everything but the trainings: its tasks (seeded family generators and task sampler) and its
architectures (uniform samples of the DARTS cell space); :mod:`nni_base.database.ground_truth` holds the trained
accuracies beside it.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Any

from ..data.digits import digits_splits, noisy_digits_splits
from ..data.families import family_splits
from ..data.photos import scenes_splits
from ..search.top_k import darts_cell_shapes, random_architecture
from ..space.darts import DartsTaskSpace
from ..space.genotype import DARTS_OPS
from ..tasks import Task, TaskDistribution, sample_tasks

__all__ = ['DATABASE_FAMILIES', 'DATABASE_SPECS', 'DatabaseError', 'DatabaseSpec', 'SPLITS', 'pair_seed']

SPLITS = ('train', 'test')
#: Families a database can hold: procedural ones, the embedded rotated digits and crops of scikit-learn's photos.
#: The order is part of every task's seed: new families go at the end.
DATABASE_FAMILIES = (
    'peaks',
    'texture',
    'pairs',
    'digits',
    'stripes',
    'shapes',
    'layout',
    'scenes',
    'lines',
    'noisy_digits',
    'motifs',
)


class DatabaseError(ValueError):
    """A database file that is damaged, foreign, of another version, or does not match its spec."""


def pair_seed(task: int, architecture: int, seed: int) -> int:
    """The torch seed of one training: (task, architecture, seed) → one number, so a database built in pieces,
    in any order or over any number of processes, equals one built at once."""
    return 1_000_003 * seed + 1_000 * task + architecture


@dataclass(frozen=True)
class DatabaseSpec:
    """Everything that decides a database's numbers."""

    families: tuple[str, ...] = ('peaks', 'texture', 'digits')
    train_tasks: int = 5  # per family, from its meta-train classes
    test_tasks: int = 3  # per family, from its held-out classes
    architectures: int = 100
    seeds: tuple[int, ...] = (0, 1)
    width: int = 8
    num_cells: int = 3
    num_nodes: int = 4
    ops: tuple[str, ...] = DARTS_OPS
    image_size: int = 16
    images_per_class: int = 100
    ways: int = 5
    shots: int = 20
    queries: int = 30
    steps: int = 30
    lr: float = 3e-3
    batch_size: int = 32
    data_seed: int = 0
    task_seed: int = 0
    architecture_seed: int = 0

    def __post_init__(self) -> None:
        unknown = [f for f in self.families if f not in DATABASE_FAMILIES]
        if unknown or not self.families or len(set(self.families)) != len(self.families):
            raise DatabaseError(
                f'families must be distinct, some of {", ".join(DATABASE_FAMILIES)}; got {list(self.families)}.'
            )
        for name in ('train_tasks', 'test_tasks', 'architectures', 'steps', 'ways', 'shots', 'queries'):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (1 if name != 'test_tasks' else 0):
                raise DatabaseError(f'{name} must be a positive int, got {value!r}.')
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise DatabaseError(f'seeds must be distinct ints, at least one; got {list(self.seeds)}.')
        if self.shots + self.queries > self.images_per_class:
            raise DatabaseError(
                f'shots + queries ({self.shots} + {self.queries}) exceed images_per_class ({self.images_per_class}).'
            )

    def as_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DatabaseSpec:
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise DatabaseError(f'The database spec has unknown fields {sorted(unknown)}: a newer or foreign file?')
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})

    def space(self) -> DartsTaskSpace:
        """The model space every architecture is a sample of."""
        return DartsTaskSpace(width=self.width, num_cells=self.num_cells, num_classes=self.ways)

    def sample_architectures(self) -> list[dict[str, Any]]:
        """The database's architectures: uniform samples of the DARTS cell space (:func:`random_architecture`)."""
        rng = random.Random(self.architecture_seed)
        shapes = darts_cell_shapes(self.num_nodes, self.ops)
        return [random_architecture(shapes, rng) for _ in range(self.architectures)]

    def task_layout(self) -> list[tuple[str, str, int]]:
        """(family, split, index) of every task, in database order: family by family, meta-train split first."""
        counts = {'train': self.train_tasks, 'test': self.test_tasks}
        return [(f, split, i) for f in self.families for split in SPLITS for i in range(counts[split])]

    def family_splits(self, family: str) -> dict[str, Any]:
        """The meta-train (``'train'``) and held-out (``'test'``) class splits of ``family``, as the tasks are drawn
        from them: what a prior meta-trained for this database's tasks should see (the ``'train'`` split only)."""
        if family == 'digits':
            return digits_splits(image_size=self.image_size)
        if family == 'noisy_digits':
            return noisy_digits_splits(image_size=self.image_size, seed=self.data_seed)
        if family == 'scenes':
            return scenes_splits(self.image_size, self.images_per_class, seed=self.data_seed)
        return family_splits(family, self.image_size, self.images_per_class, seed=self.data_seed)

    def sample_tasks(self) -> list[Task]:
        """Regenerate the tasks (same spec, same tasks: the family generators and the task sampler are seeded)."""
        tasks = []
        for family in self.families:
            splits = self.family_splits(family)
            for k, split in enumerate(SPLITS):
                count = self.train_tasks if split == 'train' else self.test_tasks
                if count == 0:
                    continue
                distribution = TaskDistribution(splits[split], self.ways, self.shots, self.queries, name=family)
                seed = self.task_seed + 100 * DATABASE_FAMILIES.index(family) + 50 * k
                tasks.extend(sample_tasks(distribution, count, seed=seed))
        return tasks


#: The specs of the shipped databases by version. v2: seven families, procedural and real (noisy digits, photo
#: crops), picked by ``benchmarks/family_pilot.py`` for labels that repeat and architectures that matter; three
#: training seeds, 50 query images per class.
DATABASE_SPECS = {
    1: DatabaseSpec(),
    2: DatabaseSpec(
        families=('texture', 'pairs', 'noisy_digits', 'shapes', 'lines', 'layout', 'scenes'),
        seeds=(0, 1, 2),
        queries=50,
    ),
}
