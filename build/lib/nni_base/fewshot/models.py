"""The standard 4-layer convolutional learner of few-shot MAML, the baseline of paper Table 4."""

from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ['Conv4']


class Conv4(nn.Module):
    """Four blocks of 3x3 conv, BatchNorm, ReLU and 2x2 max-pooling, then a linear classifier.

    This is the learner MAML uses on Omniglot and Mini-ImageNet (32 filters on Mini-ImageNet, 64 on
    Omniglot). Pooling rounds up (``ceil_mode``) so that small inputs such as the 8x8 digits keep at
    least one pixel after four halvings.

    Not learn2learn's ``CNN4``: it floors the pooling (84x84 ends at 5x5, ours at 6x6; 8x8 digits at 0x0) and
    initialises otherwise (Xavier, uniform BatchNorm scales), so the few-shot table's numbers would change.

    Parameters
    ----------
    ways
        Output classes.
    channels
        Input channels.
    hidden
        Filters per block.
    image_size
        Input side length (sets the classifier's input width).

    Examples
    --------
    >>> net = Conv4(ways=5, channels=3, hidden=32, image_size=84)
    >>> net(torch.zeros(2, 3, 84, 84)).shape
    torch.Size([2, 5])
    """

    def __init__(self, ways: int, channels: int = 3, hidden: int = 32, image_size: int = 84):
        super().__init__()
        if ways < 2 or channels < 1 or hidden < 1 or image_size < 1:
            raise ValueError(
                f'Conv4 needs ways >= 2 and positive sizes, got ways={ways}, channels={channels}, '
                f'hidden={hidden}, image_size={image_size}.'
            )
        blocks: list[nn.Module] = []
        side = image_size
        for i in range(4):
            blocks += [
                nn.Conv2d(channels if i == 0 else hidden, hidden, 3, padding=1),
                nn.BatchNorm2d(hidden),
                nn.ReLU(inplace=False),
                nn.MaxPool2d(2, ceil_mode=True),
            ]
            side = -(-side // 2)
        self.features = nn.Sequential(*blocks)
        self.classifier = nn.Linear(hidden * side * side, ways)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))
