"""Tasks: labelled datasets → N-way K-shot tasks, task distributions, episodes, resolution mixtures.

Second layer of the package (after :mod:`nni_base.data`); imports only from there.
"""

from .episodes import EpisodeDataset, Task, TaskDistribution, episode_loader, l2l, sample_tasks
from .mixture import MixtureEpisodes, ResolutionMixture

__all__ = [
    'EpisodeDataset',
    'Task',
    'TaskDistribution',
    'episode_loader',
    'l2l',
    'MixtureEpisodes',
    'ResolutionMixture',
    'sample_tasks',
]
