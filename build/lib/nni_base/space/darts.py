"""Model spaces: NNI's DARTS cell space with a classifier sized for the task."""

from __future__ import annotations

from typing import Literal

from nni.nas.hub.pytorch import DARTS
from nni.nas.nn.pytorch import MutableLinear, model_context

__all__ = ['DartsTaskSpace']


class DartsTaskSpace(DARTS):
    """NNI's DARTS space (``nni.nas.hub.pytorch.DARTS``) whose classifier has ``num_classes`` outputs.

    The hub space fixes its classifier to 10 ('cifar') or 1000 ('imagenet') labels; episodic tasks
    are N-way, so the head must be N wide. Cells, choices and labels are exactly those of
    ``DARTS``, so a sample exported from this space freezes into ``DARTS`` too.

    Parameters
    ----------
    width
        Channels of the first stage (fixed, at least 1: BASE searches cells, not widths).
    num_cells
        Number of cells (fixed; at least 3, since the network has 3 stages of at least one cell each).
    num_classes
        Output size of the classifier (and of the auxiliary head in retrain mode).
    dataset, auxiliary_loss, drop_path_prob
        As in NNI's ``DARTS``: stem type, retrain-mode auxiliary tower and drop-path.

    Examples
    --------
    >>> space = DartsTaskSpace(width=8, num_cells=3, num_classes=5)
    >>> sorted(space.simplify())[:2]
    ['normal/input_2_0', 'normal/input_2_1']
    """

    def __init__(
        self,
        width: int = 16,
        num_cells: int = 8,
        num_classes: int = 10,
        dataset: Literal['cifar', 'imagenet'] = 'cifar',
        auxiliary_loss: bool = False,
        drop_path_prob: float = 0.0,
    ):
        if not isinstance(width, int) or not isinstance(num_cells, int):
            raise TypeError(
                'DartsTaskSpace takes a fixed int width and num_cells: BaseStrategy searches the cell '
                f'architecture only (got width={width!r}, num_cells={num_cells!r}).'
            )
        if width < 1:
            raise ValueError(
                f'width must be at least 1 (channels of the first stage), got width={width}: pass a '
                'positive width such as DartsTaskSpace(width=16).'
            )
        if num_cells < 3:
            # NNI's DARTS splits the cells over 3 stages (num_cells * i // 3 each), and every stage needs a cell.
            raise ValueError(
                f'num_cells must be at least 3 (one cell per stage of the DARTS network), got '
                f'num_cells={num_cells}: pass e.g. DartsTaskSpace(num_cells=3) or the default 8.'
            )
        if num_classes < 2:
            raise ValueError(f'num_classes must be at least 2, got {num_classes}.')
        super().__init__(
            width=width,
            num_cells=num_cells,
            dataset=dataset,
            auxiliary_loss=auxiliary_loss,
            drop_path_prob=drop_path_prob,
        )
        self.num_classes = num_classes
        self.classifier = MutableLinear(self.classifier.in_features, num_classes)
        if auxiliary_loss:
            aux = self.auxiliary_head.classifier
            self.auxiliary_head.classifier = MutableLinear(aux.in_features, num_classes)

    def freeze(self, sample):
        with model_context(sample):
            return DartsTaskSpace(
                self.width, self.num_cells, self.num_classes, self.dataset, self.auxiliary_loss, self.drop_path_prob
            )
