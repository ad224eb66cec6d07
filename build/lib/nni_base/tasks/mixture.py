"""Mixed-resolution meta-training: equal numbers of tasks from several task distributions (image sizes).

The paper meta-trains on 10-class ImageNet tasks at 32x32, 64x64 and 224x224, "8 tasks of each size
per epoch". :class:`ResolutionMixture` bundles one :class:`~nni_base.TaskDistribution` per size and
makes every meta-step balanced: with R sizes and K tasks per step (K a multiple of R), task ``k`` of
every step comes from size ``k % R``. A balanced step is balanced whatever order the evaluator reads
steps in, so every epoch is too: K = 3 and 8 steps per epoch give the paper's 8 tasks of each size.

Pass it to :class:`~nni_base.EpisodicClassification` in place of a single distribution, with a
model space that accepts every size (:class:`~nni_base.space.multires.MultiResolutionDartsSpace`).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import nni
from torch.utils.data import DataLoader, Dataset

from .episodes import Task, TaskDistribution

__all__ = ['MixtureEpisodes', 'ResolutionMixture']


class ResolutionMixture:
    """Several task distributions with the same number of ways, drawn from in equal numbers.

    Parameters
    ----------
    distributions
        One distribution per image size (e.g. ImageNet 32x32, 64x64, 224x224), all with the same
        ``ways``, ``shots`` and ``queries`` (the classifier and the inner loop are shared).
    name
        Name used in messages and priors; defaults to the distributions' names joined by ``+``.
    """

    def __init__(self, distributions: Sequence[TaskDistribution], name: str | None = None):
        distributions = list(distributions)
        if not distributions:
            raise ValueError('ResolutionMixture needs at least one TaskDistribution')
        for d in distributions:
            if not isinstance(d, TaskDistribution):
                raise TypeError(f'ResolutionMixture takes nni_base.TaskDistribution objects, got {type(d).__name__}')
        first = distributions[0]
        for d in distributions[1:]:
            if (d.ways, d.shots, d.queries) != (first.ways, first.shots, first.queries):
                raise ValueError(
                    f"all distributions must have the same ways/shots/queries: '{first.name}' has "
                    f"{first.ways}/{first.shots}/{first.queries}, '{d.name}' {d.ways}/{d.shots}/"
                    f'{d.queries}'
                )
        self.distributions = distributions
        self.name = name or '+'.join(d.name for d in distributions)
        self.ways, self.shots, self.queries = first.ways, first.shots, first.queries

    @property
    def num_resolutions(self) -> int:
        return len(self.distributions)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """Shape of the first distribution's images (see :attr:`image_shapes` for all)."""
        return self.distributions[0].image_shape

    @property
    def image_shapes(self) -> list[tuple[int, int, int]]:
        return [d.image_shape for d in self.distributions]

    def sample(self) -> Task:
        """One task from a distribution chosen uniformly at random (Python's global ``random``, like learn2learn)."""
        return random.choice(self.distributions).sample()

    def episodes(self, tasks_per_step: int, steps: int, seed: int = 0) -> MixtureEpisodes:
        """Dataset whose item ``i`` is the balanced list of tasks of meta-step ``i``."""
        return MixtureEpisodes(self, tasks_per_step, steps, seed)

    def episode_loader(self, tasks_per_step: int, steps: int, seed: int = 0) -> DataLoader:
        """Traced, uncollated loader over :meth:`episodes` (what NNI's Lightning evaluator expects)."""
        return nni.trace(DataLoader)(
            self.episodes(tasks_per_step, steps, seed), batch_size=None, shuffle=False, collate_fn=_as_is
        )

    def __repr__(self) -> str:
        return f'ResolutionMixture({self.distributions!r})'


def _as_is(tasks: list[Task]) -> list[Task]:
    return tasks


class MixtureEpisodes(Dataset):
    """Item ``i``: ``tasks_per_step`` tasks, task ``k`` from distribution ``k % R``; depends only on (seed, i)."""

    def __init__(self, mixture: ResolutionMixture, tasks_per_step: int, steps: int, seed: int = 0):
        r = mixture.num_resolutions
        if tasks_per_step < 1 or tasks_per_step % r:
            raise ValueError(
                f'tasks_per_step={tasks_per_step} must be a positive multiple of the {r} resolutions '
                f"of '{mixture.name}' so that every meta-step holds as many tasks of each size "
                f'(e.g. {r} or {2 * r})'
            )
        if steps < 1:
            raise ValueError(f'steps must be at least 1, got {steps}')
        self.mixture = mixture
        self.tasks_per_step = tasks_per_step
        self.steps = steps
        self.seed = int(seed)

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, index: int) -> list[Task]:
        if not 0 <= index < self.steps:
            raise IndexError(f'step {index} out of range for {self.steps} steps')
        # learn2learn samples with the global `random`; seed it for this item only (a str seed is hashed stably).
        state = random.getstate()
        try:
            random.seed(f'nni_base.tasks.mixture:{self.seed}:{index}')
            dists = self.mixture.distributions
            return [dists[k % len(dists)].sample() for k in range(self.tasks_per_step)]
        finally:
            random.setstate(state)
