"""Zero-shot generation inside an NNI experiment: the evaluator's training data → conditioned α, no training step.

Where it sits
    :class:`~nni_base.BaseStrategy` picks :class:`ZeroShotModule` in ``configure_oneshot_module`` when it has
    ``zero_shot=True``, a dataset-conditioned prior and a single-dataset evaluator (NNI's ``Classification``).
    It is :func:`.zero_shot.zero_shot` run through Lightning: the "training" loop only reads labelled images from
    the evaluator's training dataloader (up to ``ZeroShotConfig.images``, then it stops), the conditioner encodes them
    as a support set and the supernet's α becomes ``shared α + g(encoding)``. Nothing is trained. What NNI's
    ``Classification`` reports is the generated top-1's training metric on the images read (validation, when the
    data ran out first), with the prior's weights: a weight-sharing estimate, not the accuracy the architecture
    reaches once trained. The strategy's
    exports (``export_top_models``, ``list_models``, ``export_probs``) then read that α, ranked by the prior's
    meta performance predictor when it has learnt from records.

Example
-------
>>> strategy = BaseStrategy(prior='conditioned.pt', zero_shot=True)     # doctest: +SKIP
>>> evaluator = Classification(train_dataloaders=loader, val_dataloaders=loader)  # doctest: +SKIP
>>> exp = NasExperiment(space, evaluator, strategy)                      # doctest: +SKIP
>>> exp.run(); exp.export_top_models(top_k=5, formatter='dict')         # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from ..config import BaseConfig
from ..search.base import BaseSearchModule
from ..search.top_k import CellShape
from ..space.gumbel_cell import derived_architecture, fixed_architecture
from .conditioned_zero_shot import rank_candidates
from .conditioner import Conditioner

__all__ = ['SupportSetModule', 'ZeroShotModule']


class SupportSetModule(BaseSearchModule):
    """Zero-shot's shared loop: read a support set from the training batches (up to ``zero_shot_images``), then
    :meth:`condition` on it; nothing is trained. Subclasses say what conditioning is.

    With ``BaseStrategy(budget=...)`` the strategy sets ``make_budget`` (as for single-task search,
    :mod:`nni_base.search.budgeted`): :meth:`bind_budget` costs the space at the support set's image size, refuses
    a budget no architecture meets, and the subclasses rank only architectures under it."""

    make_budget: Callable[[tuple[int, ...]], Any] | None = None

    def __init__(self, training_module, config: BaseConfig):
        super().__init__(training_module, config)
        self.support: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.encoding: Any = None
        self.budget: Any = None

    def bind_budget(self, images: torch.Tensor) -> None:
        """Build and check the budget (once) for ``images``' size; nothing without ``make_budget``."""
        if self.make_budget is None or self.budget is not None:
            return
        budget = self.make_budget(tuple(int(v) for v in images.shape[1:]))
        budget.check(self.alphas())
        self.budget = budget

    def condition(self) -> Any:
        raise NotImplementedError

    def generated_architecture(self) -> contextlib.AbstractContextManager:
        """A context in which the supernet runs the generated top-1 (default: α's derived architecture)."""
        return derived_architecture(self.architecture_modules())

    def support_set(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The images and labels read so far."""
        if not self.support:
            raise ValueError("zero_shot=True read no labelled images: the evaluator's training dataloader is empty.")
        return torch.cat([x for x, _ in self.support]), torch.cat([y for _, y in self.support])

    @property
    def images_read(self) -> int:
        return sum(len(y) for _, y in self.support)

    def training_step(self, batch, batch_idx):
        if not isinstance(batch, (list, tuple)) or len(batch) < 2:
            raise TypeError(
                "zero_shot=True reads (images, labels) batches from the evaluator's training dataloader "
                f"(as NNI's Classification gives them), got {type(batch).__name__}."
            )
        x, y = batch[0], batch[1]
        room = self.config.zero_shot_images - self.images_read
        if room > 0:
            self.support.append((x[:room].detach().cpu(), y[:room].detach().cpu()))
        if self.images_read >= self.config.zero_shot_images and self.encoding is None:
            self.condition()
            self.log_support_metrics()
            self.trainer.should_stop = True  # the support set is read: nothing else to do
        return None

    @torch.no_grad()
    def log_support_metrics(self) -> None:
        """The evaluator's training metrics (``train_acc``, ...) of the generated top-1 on the images read, with the
        prior's weights and BatchNorm statistics: what NNI reports when fit ends before a validation."""
        model = self.training_module
        was_training = model.training
        model.eval()  # running statistics stay the prior's
        with self.generated_architecture():
            x = torch.cat([x for x, _ in self.support]).to(self.device)
            y = torch.cat([y for _, y in self.support]).to(self.device)
            model.training_step((x, y), 0)
        model.train(was_training)

    def on_train_epoch_end(self) -> None:
        # The data ran out before ZeroShotConfig.images: condition on what was read, and give NNI's final report the
        # training metrics it reads when no validation ran.
        if self.encoding is None and self.support:
            self.condition()
            self.log_support_metrics()
        return super().on_train_epoch_end()

    def on_validation_epoch_start(self):
        # The data ran out before ZeroShotConfig.images: condition on what was read. Validation then scores the
        # generated top-1 with the prior's weights (what NNI's Classification reports to the experiment).
        if self.encoding is None and self.support:
            self.condition()
        return super().on_validation_epoch_start()

    def on_train_end(self) -> None:
        if self.encoding is None:
            self.condition()
        return super().on_train_end()


class ZeroShotModule(SupportSetModule):
    """Reads a support set from the training batches, then conditions α on it (see the module docstring)."""

    def __init__(self, training_module, config: BaseConfig, conditioning: Mapping[str, Any]):
        super().__init__(training_module, config)
        self.conditioner = Conditioner.from_state(conditioning)
        self.conditioner.eval()  # the encoder's statistics stay those of meta-training

    @torch.no_grad()
    def condition(self) -> dict[str, torch.Tensor]:
        """α ← shared α + g(encoding of the images read); returns the conditioned α."""
        x, y = self.support_set()
        self.bind_budget(x)
        alphas = {str(label): a for label, a in self.alphas().items()}
        conditioned, self.encoding = self.conditioner.conditioned_alpha(alphas, x, y)
        for label, alpha in alphas.items():
            alpha.copy_(conditioned[label].to(alpha))
        return conditioned

    def ranked(self, top_k: int, seed: int = 0) -> list[tuple[dict[str, Any], float]]:
        """The ``top_k`` best architectures for the dataset read, as :func:`.zero_shot.zero_shot` ranks them with
        the config's ``pool`` and ``candidates`` (:class:`~nni_base.ZeroShotConfig`) and ``seed``."""
        if self.encoding is None:
            self.condition()
        alphas = {str(label): a.detach() for label, a in self.alphas().items()}
        ranked = rank_candidates(
            self.conditioner,
            alphas,
            self.encoding,
            top_k,
            use_predictor=self.conditioner.predictor_records > 0,
            pool=self.config.zero_shot_pool,
            candidates=self.config.zero_shot_candidates,
            seed=seed,
            budget=self.budget,
        )
        return [(sample, score) for sample, score, _ in ranked]

    def generated_architecture(self) -> contextlib.AbstractContextManager:
        if self.budget is None:
            return super().generated_architecture()
        return fixed_architecture(self.cells(), self.ranked(1)[0][0])

    def export(self) -> dict[str, Any]:
        if self.budget is None:
            return super().export()
        return self.ranked(1)[0][0]

    def rank(self, top_k: int, shapes: list[CellShape], choices: Any, seed: int) -> list[tuple[dict[str, Any], float]]:
        return self.ranked(top_k, seed)

    def architecture_scorer(self) -> Callable[[list[dict[str, Any]]], Sequence[float]] | None:
        if self.encoding is None or self.conditioner.predictor_records == 0:
            return None
        return self.conditioner.scorer(self.encoding)
