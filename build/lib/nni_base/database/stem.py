"""Encoder input from the prior's stem: per-channel statistics of the supernet's first layers on each image.

Where it sits
    The alternative to pixel statistics (:func:`.encoder.image_features`) as the set encoder's per-image input,
    chosen with ``BaseStrategy(conditioning_features='stem')``. MetaD2A encodes datasets with features of a
    network; here the network is the prior's own stem, which meta-training shapes for the task distribution.

How
    The conditioner keeps a copy of the supernet's stem (a ``Sequential`` of ``Conv2d`` / ``BatchNorm2d`` / ``ReLU``,
    as in NNI's DARTS and NasBench201 spaces and ``DartsTaskSpace``), refreshed from the supernet before every
    task of meta-training and saved with the prior, so zero-shot generation runs the stem the prior ended with
    without building the supernet. It runs in eval mode (running BatchNorm statistics), without gradient: the
    encoder learns on top of the stem, the stem learns only as part of the supernet. The prior file describes the
    stem by layer types and sizes (:func:`stem_spec`) and plain tensors, so loading it runs no code.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn

__all__ = ['stem_spec', 'build_stem', 'stem_features', 'stem_feature_size']


def stem_spec(stem: Any) -> list[dict[str, Any]]:
    """Plain description of a ``Sequential`` stem of ``Conv2d`` / ``BatchNorm2d`` / ``ReLU`` layers.

    Raises ``TypeError`` naming the fix for any other stem.
    """
    layers = list(stem) if isinstance(stem, nn.Sequential) else None
    if not layers or not all(isinstance(m, (nn.Conv2d, nn.BatchNorm2d, nn.ReLU)) for m in layers):
        raise TypeError(
            "conditioning_features='stem' reads the space's `stem`: an nn.Sequential of Conv2d, "
            f"BatchNorm2d and ReLU layers (as NNI's DARTS, NasBench201 and DartsTaskSpace have), got "
            f"{type(stem).__name__}. Use conditioning_features='pixels' for this space."
        )
    spec: list[dict[str, Any]] = []
    for m in layers:
        if isinstance(m, nn.Conv2d):
            spec.append(
                {
                    'type': 'conv',
                    'in_channels': m.in_channels,
                    'out_channels': m.out_channels,
                    'kernel_size': list(m.kernel_size),
                    'stride': list(m.stride),
                    'padding': list(m.padding),
                    'dilation': list(m.dilation),
                    'groups': m.groups,
                    'bias': m.bias is not None,
                }
            )
        elif isinstance(m, nn.BatchNorm2d):
            spec.append({'type': 'batchnorm', 'num_features': m.num_features, 'eps': m.eps, 'affine': m.affine})
        else:
            spec.append({'type': 'relu'})
    return spec


def build_stem(spec: Sequence[dict[str, Any]]) -> nn.Sequential:
    """The stem :func:`stem_spec` describes (fresh weights; load them with ``load_state_dict``), frozen."""
    layers: list[nn.Module] = []
    for layer in spec:
        kind = layer['type']
        if kind == 'conv':
            layers.append(
                nn.Conv2d(
                    layer['in_channels'],
                    layer['out_channels'],
                    tuple(layer['kernel_size']),
                    tuple(layer['stride']),
                    tuple(layer['padding']),
                    tuple(layer['dilation']),
                    layer['groups'],
                    layer['bias'],
                )
            )
        elif kind == 'batchnorm':
            layers.append(nn.BatchNorm2d(layer['num_features'], layer['eps'], affine=layer['affine']))
        elif kind == 'relu':
            layers.append(nn.ReLU())
        else:
            raise ValueError(f'Unknown stem layer {kind!r} in the prior file.')
    stem = nn.Sequential(*layers)
    stem.requires_grad_(False)
    return stem.eval()


def stem_feature_size(spec: Sequence[dict[str, Any]]) -> int:
    """Length of :func:`stem_features` vectors: mean and spread of each output channel."""
    channels = [layer['out_channels'] for layer in spec if layer['type'] == 'conv']
    return 2 * channels[-1]


@torch.no_grad()
def stem_features(x: torch.Tensor, stem: nn.Module) -> torch.Tensor:
    """``(N, C, H, W)`` images → ``(N, 2 * stem channels)``: each stem channel's spatial mean and spread."""
    if x.dim() != 4:
        raise ValueError(f'Support images must be (N, C, H, W), got shape {tuple(x.shape)}.')
    first = next(m for m in stem.modules() if isinstance(m, nn.Conv2d))
    if x.shape[1] != first.in_channels:
        raise ValueError(f'The stem takes {first.in_channels}-channel images, the support set has {x.shape[1]}.')
    stem.eval()
    h = stem(x.to(first.weight.device, first.weight.dtype))
    return torch.cat([h.mean((2, 3)), h.flatten(2).std(2, unbiased=False)], 1)
