"""What the task loop, the head rebuild and adaptation use of a search module, as a Protocol.

:class:`~nni_base.search.base.BaseSearchModule` is the one implementation; typing those files against this
Protocol instead of importing it keeps the import graph acyclic (``base.py`` imports all three).
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
import torch.nn as nn

from ..config import BaseConfig
from .meta_update import ModelState

__all__ = ['SearchSupernet']


class SearchSupernet(Protocol):
    """A supernet under search: its settings, its NNI training module and its two parameter sets."""

    config: BaseConfig
    training_module: Any  # the user's Lightning module (NNI's evaluator) holding ``.model``
    rebuilt_heads: list[str]
    device: torch.device

    def architecture_modules(self) -> list[nn.Module]: ...

    def arch_parameters(self) -> list[nn.Parameter]: ...

    def weight_parameters(self) -> list[nn.Parameter]: ...

    def model_state(self) -> ModelState: ...

    def model_loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...

    def resample(self) -> None: ...
