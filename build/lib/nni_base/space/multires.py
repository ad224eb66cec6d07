"""Multi-resolution DARTS space: one featurization stem per image size, cells and alpha shared by all sizes.

BASE meta-trains on 10-class tasks drawn from ImageNet at 32x32, 64x64 and 224x224 (paper §5). A
single network serves all three: each input size has its own stem ("featurization head"), the small
sizes striding to 1/2 and 224x224 to 1/8, and every stem hands the same pair of feature maps to the
first cell, so the DARTS cells, their weights and the architecture distribution are shared.

The choices are exactly those of NNI's DARTS space, so a sample exported after meta-training or
adaptation freezes into ``nni.nas.hub.pytorch.DARTS`` (and :class:`~nni_base.DartsTaskSpace`) for
retraining; the stems only matter while searching.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
from nni.nas.nn.pytorch import MutableBatchNorm2d, MutableConv2d, model_context

from .darts import DartsTaskSpace

__all__ = ['MultiResolutionDartsSpace', 'ResolutionStem']


def _conv_bn(c_in: int, c_out: int, stride: int, relu_first: bool = False) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.ReLU(inplace=False)] if relu_first else []
    return layers + [MutableConv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), MutableBatchNorm2d(c_out)]


class ResolutionStem(nn.Module):
    """Stem for one input size: returns ``(s0, s1)``, ``width`` channels each, ``s0`` at twice ``s1``'s resolution.

    ``stride=8`` is NNI's ImageNet stem (s0 at 1/4, s1 at 1/8 of the input); ``stride=2`` keeps s0 at full
    resolution and s1 at 1/2. Both feed the first cell the same way (a factorized reduce on s0).
    """

    def __init__(self, width: int, stride: int):
        super().__init__()
        if stride not in (2, 8):
            raise ValueError(f'stem stride must be 2 or 8, got {stride}')
        self.stride = stride
        if stride == 8:
            self.to_s0 = nn.Sequential(
                *_conv_bn(3, width // 2, 2), nn.ReLU(inplace=False), *_conv_bn(width // 2, width, 2)
            )
        else:
            self.to_s0 = nn.Sequential(*_conv_bn(3, width, 1))
        self.to_s1 = nn.Sequential(*_conv_bn(width, width, 2, relu_first=True))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s0 = self.to_s0(x)
        return s0, self.to_s1(s0)


class MultiResolutionDartsSpace(DartsTaskSpace):
    """NNI's DARTS cells behind one stem per supported input size (32, 64 and 224 by default).

    Parameters
    ----------
    width
        Channels of the first stage (at least 2).
    num_cells
        Number of cells.
    num_classes
        Classifier outputs (10 for the paper's 10-way meta-training tasks).
    resolutions
        Square input sizes to build a stem for. Sizes of 128 and above get the stride-8 (ImageNet) stem,
        smaller ones the stride-2 stem.

    Examples
    --------
    >>> space = MultiResolutionDartsSpace(width=4, num_cells=3, num_classes=10)
    >>> sorted(space.stems)
    ['224', '32', '64']

    Raises
    ------
    ValueError
        From ``forward``, for an input whose size has no stem.
    """

    def __init__(
        self, width: int = 16, num_cells: int = 8, num_classes: int = 10, resolutions: Sequence[int] = (32, 64, 224)
    ):
        if not resolutions or any(isinstance(r, bool) or not isinstance(r, int) or r < 8 for r in resolutions):
            raise ValueError(f'resolutions must be a non-empty list of ints >= 8, got {resolutions!r}')
        if isinstance(width, int) and width < 2:
            raise ValueError(f'width must be at least 2 (the ImageNet stem halves it), got {width}')
        # The 'imagenet' layout makes the first cell expect (s0, s1) with s0 at twice s1's resolution.
        super().__init__(width=width, num_cells=num_cells, num_classes=num_classes, dataset='imagenet')
        del self.stem0, self.stem1  # replaced by one stem per size
        self.resolutions = tuple(sorted(set(resolutions)))
        self.stems = nn.ModuleDict({str(r): ResolutionStem(width, 8 if r >= 128 else 2) for r in self.resolutions})

    def stem_for(self, x: torch.Tensor) -> ResolutionStem:
        """The stem for ``x``'s spatial size, or a ValueError naming the supported sizes."""
        h, w = int(x.shape[-2]), int(x.shape[-1])
        if x.ndim != 4 or h != w or str(h) not in self.stems:
            supported = ', '.join(f'{r}x{r}' for r in self.resolutions)
            raise ValueError(
                f'{type(self).__name__} has stems for {supported} inputs, got a batch of shape '
                f'{tuple(x.shape)}. Resize the images to one of these sizes (the nni_base.data '
                'loaders take image_size=...) or build the space with resolutions=(..., '
                f'{h}).'
            )
        return self.stems[str(h)]  # type: ignore[return-value]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s0, s1 = self.stem_for(x)(x)
        for stage in self.stages:
            s0, s1 = stage([s0, s1])
        return self.classifier(self.global_pooling(s1).flatten(1))

    def freeze(self, sample):
        with model_context(sample):
            return MultiResolutionDartsSpace(self.width, self.num_cells, self.num_classes, self.resolutions)
