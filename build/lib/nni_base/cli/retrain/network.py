"""Architecture in, network out: read an exported sample / genotype, build it in NNI DARTS retrain mode, size it.

First step of retraining (:mod:`nni_base.cli.retrain`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch.nn as nn
from nni.nas.space import model_context

from ...space.darts import DartsTaskSpace
from ...space.genotype import DARTS_V2, format_genotype, genotype_to_sample, parse_genotype, sample_to_genotype
from ...space.macs import count_macs, count_parameters
from .recipe import RetrainRecipe

__all__ = ['build_network', 'canonical_sample', 'load_arch', 'model_summary']


def canonical_sample(sample: Any, source: str = 'arch') -> dict[str, Any]:
    """Check that ``sample`` is a complete NNI DARTS cell sample and return it in NNI's exported form.

    Inputs may be ``[j]`` (NNI's form) or a bare ``j``; keys outside the cells (e.g. ``width``) are dropped.
    """
    if not isinstance(sample, dict):
        raise ValueError(
            f'{source}: expected an NNI DARTS sample (a JSON object such as '
            f'{{"normal/op_2_0": "sep_conv_3x3", "normal/input_2_0": [0], ...}}), '
            f'got {type(sample).__name__}'
        )
    try:
        return genotype_to_sample(sample_to_genotype(sample))
    except ValueError as e:
        raise ValueError(
            f'{source}: {e}. Use the sample exported by BaseStrategy '
            "(exp.export_top_models(formatter='dict')[0], or arch.json of a run)."
        ) from None


def load_arch(arch: str | os.PathLike | dict[str, Any]) -> dict[str, Any]:
    """Read an architecture: a sample dict, ``'darts-v2'``, a JSON sample file, or a DARTS genotype text file."""
    if isinstance(arch, dict):
        return canonical_sample(arch)
    if str(arch).lower() == 'darts-v2':
        return genotype_to_sample(DARTS_V2)
    path = Path(arch).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f'architecture file {path} not found: pass the arch.json written by a BASE run '
            "(or 'darts-v2' for the published DARTS cells)"
        )
    text = path.read_text()
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        try:  # not JSON: maybe a published genotype, "Genotype(normal=[...], ...)"
            return genotype_to_sample(parse_genotype(text))
        except ValueError as e:
            raise ValueError(f'{path}: neither a JSON NNI sample nor a DARTS genotype ({e})') from None
    return canonical_sample(data, source=str(path))


def build_network(sample: dict[str, Any], recipe: RetrainRecipe, num_classes: int) -> DartsTaskSpace:
    """The fixed network of ``sample`` in NNI DARTS retrain mode (auxiliary tower if ``aux_weight > 0``, drop-path).

    Built inside :func:`nni.nas.space.model_context`, so every cell is NNI's own frozen ``Cell``; drop-path
    modules are created with the recipe's final probability and ramped by :class:`RetrainModule`.
    """
    with model_context(canonical_sample(sample)):
        return DartsTaskSpace(
            width=recipe.width,
            num_cells=recipe.num_cells,
            num_classes=num_classes,
            dataset=recipe.stem,
            auxiliary_loss=recipe.aux_weight > 0,
            drop_path_prob=recipe.drop_path_prob,
        )


def model_summary(network: nn.Module, recipe: RetrainRecipe, sample: dict[str, Any]) -> dict[str, Any]:
    """Size of the retrained network as papers report it: parameters without the auxiliary tower, MACs per image."""
    input_size = (3, recipe.image_size, recipe.image_size)
    return {
        'params': count_parameters(network),
        'params_with_auxiliary': count_parameters(network, exclude=()),
        'macs': count_macs(network, input_size),
        'input_size': list(input_size),
        'width': recipe.width,
        'num_cells': recipe.num_cells,
        'num_classes': int(network.num_classes),
        'genotype': format_genotype(sample_to_genotype(sample)),
    }
