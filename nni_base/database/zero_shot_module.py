"""Zero-shot from a ground-truth database inside an NNI experiment: the evaluator's training data → ranked cells.

Where it sits
    :class:`~nni_base.BaseStrategy` picks :class:`DatabaseZeroShotModule` in ``configure_oneshot_module`` when it
    has ``zero_shot=ZeroShotConfig(database=...)`` and a single-dataset evaluator (NNI's ``Classification``); no
    prior is needed. Like :class:`~.zero_shot_module.ZeroShotModule` it only reads a support set from the training
    dataloader; then :class:`~.database_models.DatabaseZeroShot`, fitted on every task of the database, generates
    and ranks cells for it. The supernet's α becomes the generator's per-edge distribution (``export_probs``), the
    exports are the predictor's ranking (``export_top_models``). The cells are genotypes of the database's DARTS
    cells: any :class:`~nni_base.DartsTaskSpace` with the same operations and nodes takes them, whatever its width
    and depth.

Example
-------
>>> strategy = BaseStrategy(zero_shot=ZeroShotConfig(database='shipped'))    # doctest: +SKIP
>>> exp = NasExperiment(DartsTaskSpace(width=16, num_cells=8, num_classes=10), evaluator, strategy)  # doctest: +SKIP
>>> exp.run(); exp.export_top_models(top_k=5, formatter='dict')              # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from ..config import BaseConfig
from ..search.top_k import CellShape, cell_shapes, darts_cell_shapes
from ..space.gumbel_cell import fixed_architecture
from .conditioned_zero_shot_module import SupportSetModule
from .ground_truth import DEFAULT_DATABASE, load_database
from .zero_shot_models import DatabaseZeroShot

__all__ = ['DatabaseZeroShotModule', 'database_path']


def database_path(setting: str) -> str:
    """``ZeroShotConfig.database`` as a file: ``'shipped'`` is the database nni-base ships."""
    return str(DEFAULT_DATABASE) if setting == 'shipped' else setting


class DatabaseZeroShotModule(SupportSetModule):
    """Reads a support set, then ranks the database model's cells for it (see the module docstring)."""

    def __init__(self, training_module, config: BaseConfig):
        super().__init__(training_module, config)
        self.database = load_database(database_path(str(config.zero_shot_database)))  # a bad file fails here
        self.ranker = DatabaseZeroShot.fit(self.database, range(len(self.database.tasks)))
        self.picks: list[tuple[dict[str, Any], float]] = []

    def on_fit_start(self) -> None:
        self.check_space()
        return super().on_fit_start()

    def check_space(self) -> None:
        """Refuse a supernet whose cells are not the database's (its cells are only known once it is attached)."""
        spec = self.database.spec
        found = cell_shapes(self.cells())
        if found != darts_cell_shapes(spec.num_nodes, spec.ops):
            raise ValueError(
                f'The zero-shot database ranks DARTS cells of {spec.num_nodes} nodes over {list(spec.ops)} '
                f'(labels normal/reduce); this space has {_describe(found)}. Use a DartsTaskSpace (any width and '
                'number of cells) or a space with the same cells.'
            )

    @torch.no_grad()
    def condition(self) -> dict[str, torch.Tensor]:
        """α ← the generator's per-edge distribution for the images read; the ranking is kept for the exports."""
        self.check_space()
        x, y = self.support_set()
        self.bind_budget(x)
        generated = self.ranker.alphas(x, y)
        for label, alpha in self.alphas().items():
            alpha.copy_(generated[str(label)].to(alpha))
        self.encoding = x.shape[0]  # conditioned: the number of images read
        self.picks = self.ranker.top_k(x, y, k=max(5, self.config.zero_shot_pool), budget=self.budget)
        return generated

    def generated_architecture(self) -> contextlib.AbstractContextManager:
        return fixed_architecture(self.cells(), self.ranked(1)[0][0])

    def ranked(self, top_k: int, seed: int = 0) -> list[tuple[dict[str, Any], float]]:
        """The ``top_k`` best cells for the dataset read, by the database predictor (predicted accuracy gain)."""
        if self.encoding is None:
            self.condition()
        if top_k > len(self.picks):
            x, y = self.support_set()
            self.picks = self.ranker.top_k(x, y, k=top_k, budget=self.budget)
        return self.picks[:top_k]

    def rank(self, top_k: int, shapes: list[CellShape], choices: Any, seed: int) -> list[tuple[dict[str, Any], float]]:
        return self.ranked(top_k, seed)

    def export(self) -> dict[str, Any]:
        return self.ranked(1)[0][0]


def _describe(shapes: list[CellShape]) -> str:
    if not shapes:
        return 'no DARTS-style cell'
    return ', '.join(f'{s.label}: {s.num_nodes} nodes over {list(s.op_names)}' for s in shapes)
