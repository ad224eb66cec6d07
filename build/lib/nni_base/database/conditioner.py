"""The conditioning bundle (encoder + α generator + predictor) and its plain-tensor form in a prior file.

Where it sits
    Owned by :class:`.module.ConditionedReptileModule` during meta-training, written into the prior under
    ``'conditioning'`` (:meth:`Conditioner.state`: ints, strings, lists and tensors only, so
    ``torch.load(weights_only=True)`` reads it), rebuilt by :func:`.zero_shot.zero_shot`
    (:meth:`Conditioner.from_state`). Priors without the entry are ordinary, unconditioned priors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

import torch
import torch.nn as nn

from ..search.top_k import CellShape
from .encoder import IMAGE_FEATURES, SetEncoder, check_support, image_features
from .generator import AlphaOffsetGenerator
from .predictor import PerformancePredictor, arch_feature_size, arch_features
from .stem import build_stem, stem_feature_size, stem_features

__all__ = ['Conditioner', 'CONDITIONING_VERSION']

#: 2: the encoder's running image-statistics standardisation and per-operation offsets. 3: choices
#: outside the cells (``choices``, e.g. NasBench201's edges) and the stem as encoder input (``stem_spec``).
#: Versions 1 and 2 still load and run as trained.
CONDITIONING_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)


class Conditioner(nn.Module):
    """Dataset encoder, α-offset generator and performance predictor of one supernet's cell types."""

    def __init__(
        self,
        shapes: Sequence[CellShape],
        alpha_shapes: Mapping[str, tuple[int, ...]],
        dim: int = 32,
        hidden: int = 64,
        standardise: bool = True,
        per_op: bool = True,
        choices: Mapping[str, Sequence[Any]] | None = None,
        stem: Sequence[dict[str, Any]] | None = None,
    ):
        super().__init__()
        self.shapes = list(shapes)
        #: label → candidate values of the choices outside the cells (in their α's order)
        self.choices: dict[str, list[Any]] = {str(k): list(v) for k, v in (choices or {}).items()}
        self.dim, self.hidden = dim, hidden
        #: the encoder reads the prior's stem (``stem``: its :func:`.stem.stem_spec`) or, without one, pixels
        self.stem_spec = [dict(layer) for layer in stem] if stem is not None else None
        self.stem = build_stem(self.stem_spec) if self.stem_spec is not None else None
        in_features = stem_feature_size(self.stem_spec) if self.stem_spec is not None else IMAGE_FEATURES
        self.encoder = SetEncoder(dim, hidden, standardise, in_features)
        self.generator = AlphaOffsetGenerator(dim, alpha_shapes, hidden, per_op)
        self.predictor = PerformancePredictor(dim, arch_feature_size(self.shapes, self.choices), hidden)
        self.predictor_records = 0  # how many records the predictor has learnt from (0: rank by alpha)
        #: what those records measured: 'weight-sharing' (meta-training's) or 'trained' (:mod:`.trained_predictor`)
        self.predictor_labels = 'weight-sharing'

    @property
    def features_name(self) -> str:
        return 'stem' if self.stem is not None else 'pixels'

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Per-image encoder input: statistics of the prior's stem output, or of the pixels."""
        return stem_features(x, self.stem) if self.stem is not None else image_features(x)

    def sync_stem(self, stem: nn.Module) -> None:
        """Take the supernet's current stem weights and statistics (meta-training refreshes them every task)."""
        if self.stem is not None:
            self.stem.load_state_dict(stem.state_dict())

    def encode(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        check_support(x, y)
        return self.encoder(self.features(x), y)

    def conditioned_alpha(
        self, alphas: Mapping[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """``shared α + g(encoding)`` per cell type, and the encoding (no gradient)."""
        with torch.no_grad():
            encoding = self.encode(x, y)
            offsets = self.generator(encoding)
            return {k: alphas[k].detach().float().cpu() + offsets[k].cpu() for k in alphas}, encoding

    def scorer(self, encoding: torch.Tensor):
        """Predicted query accuracy of candidate samples on the encoded dataset (for top-k ranking)."""

        def score(samples: list[dict[str, Any]]) -> list[float]:
            with torch.no_grad():
                arch = torch.stack([arch_features(s, self.shapes, self.choices) for s in samples]).to(encoding.device)
                return self.predictor(encoding, arch).tolist()

        return score

    # ---- prior file ----------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            'version': CONDITIONING_VERSION,
            'dim': self.dim,
            'hidden': self.hidden,
            'standardise': bool(self.encoder.standardise),
            'per_op': bool(self.generator.per_op),
            'shapes': [{**asdict(s), 'op_names': list(s.op_names)} for s in self.shapes],
            'alpha_shapes': {k: list(v) for k, v in self.generator.alpha_shapes.items()},
            'choices': {k: list(v) for k, v in self.choices.items()},
            'stem_spec': self.stem_spec,
            'stem': _plain_state(self.stem) if self.stem is not None else None,
            'encoder': _plain_state(self.encoder),
            'generator': _plain_state(self.generator),
            'predictor': _plain_state(self.predictor),
            'predictor_records': int(self.predictor_records),
            'predictor_labels': str(self.predictor_labels),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Conditioner:
        version = state.get('version')
        if version not in READABLE_VERSIONS:
            raise ValueError(
                f"The prior's dataset conditioning has version {version}, this nni-base reads versions "
                f'{", ".join(map(str, READABLE_VERSIONS))}.'
            )
        shapes = [CellShape(**{**s, 'op_names': tuple(s['op_names'])}) for s in state['shapes']]
        conditioner = cls(
            shapes,
            {k: tuple(v) for k, v in state['alpha_shapes'].items()},
            state['dim'],
            state['hidden'],
            bool(state.get('standardise', False)),
            bool(state.get('per_op', False)),
            state.get('choices'),
            state.get('stem_spec'),
        )
        if conditioner.stem is not None:
            conditioner.stem.load_state_dict(state['stem'])
        encoder = dict(state['encoder'])
        for name, buffer in conditioner.encoder.named_buffers():
            encoder.setdefault(name, buffer)  # version 1 has no feature statistics (and does not use them)
        conditioner.encoder.load_state_dict(encoder)
        conditioner.generator.load_state_dict(state['generator'])
        conditioner.predictor.load_state_dict(state['predictor'])
        conditioner.predictor_records = int(state['predictor_records'])
        conditioner.predictor_labels = str(state.get('predictor_labels', 'weight-sharing'))
        return conditioner


def _plain_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
