"""What every BASE search module shares: the supernet's cells and α, the temperature, the inner loop.

Sits under the three search algorithms (:mod:`.reptile`, :mod:`.maml`, :mod:`.single_task`), which
:class:`~nni_base.BaseStrategy` picks in ``configure_oneshot_module`` as NNI picks its one-shot modules.
Outside a trainer, this class alone is the supernet a prior adapts with (:func:`nni_base.api.build_supernet`,
:class:`~nni_base.TaskAdapter`).
"""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
from nni.nas.evaluator.pytorch import LightningModule
from nni.nas.oneshot.pytorch.base_lightning import BaseOneShotLightningModule
from nni.nas.oneshot.pytorch.supermodule.base import BaseSuperNetModule

from ..config import BaseConfig
from ..space.gumbel_cell import alpha_entropy, alpha_max_prob
from ..space.layout import to_channels_last
from ..space.mixed import ArchSoftmax, architecture_logits, reported_probabilities
from ..space.sampled_cell import SampledCell
from ..tasks import Task
from ..tasks.metrics import accuracy as accuracy_of
from .loop import adapt, adapt_each, query_metrics
from .meta_update import ModelState
from .top_k import CellShape, cell_shapes, check_top_k, plain_choices, rank_architectures

__all__ = ['BaseSearchModule', 'SupernetStructure']


class BaseSearchModule(BaseOneShotLightningModule):
    """The supernet of :class:`~nni_base.BaseStrategy` wrapped around the evaluator's Lightning module.

    Its architecture logits (:meth:`alphas`) are those of the DARTS-style cells and of NNI's differentiable
    supermodules for every other choice (:mod:`nni_base.space.mixed`); all are parameters of the model, so
    the inner loops, the outer optimizer's α group, checkpoints and priors carry them alike.

    Parameters
    ----------
    training_module
        The evaluator's Lightning module (loss and metrics).
    config
        BASE hyper-parameters.
    """

    def __init__(self, training_module: LightningModule, config: BaseConfig):
        super().__init__(training_module)
        self.config = config
        self.last_metrics: dict[str, float] = {}
        self.averaged_alpha: dict[str, torch.Tensor] | None = None
        self.temperature: float = 1.0
        # classifier heads rebuilt for a dataset with another class count than the prior's (search/head.py),
        # initialised before the first adaptation step
        self.rebuilt_heads: list[str] = []
        # the user's training data (single-task search reads a rebuilt head's class means from it): a callable
        # returning the evaluator's training dataloader(s), set by the strategy
        self.train_data: Callable[[], Any] | None = None
        for cell in self.structure().cells:
            self.configure_cell(cell)

    # ---- supernet --------------------------------------------------------------------------------
    # The inner loop asks for the cells, the samplers, α and the parameter lists on every step; walking the module
    # tree each time took ~12% of meta-training at the defaults (benchmarks/meta_training_speed.py). The structure
    # is fixed once the strategy has mutated the model (a rebuilt head is swapped in before this module exists), so
    # it is looked up once; call forget_structure() after replacing submodules.
    def structure(self) -> SupernetStructure:
        """The supernet's sampling modules, α and trainable state, looked up once (see :meth:`forget_structure`)."""
        cached = self.__dict__.get('_nni_base_structure')
        if cached is None:
            try:
                model = self.training_module.model
            except RuntimeError:  # NNI sets the model when the evaluator runs: nothing to keep yet
                return SupernetStructure.of(self, None)
            cached = SupernetStructure.of(self, model)
            self.__dict__['_nni_base_structure'] = cached  # a plain attribute: not a registered submodule
        return cached

    def forget_structure(self) -> None:
        """Look the structure up again on next use (after submodules or parameters were replaced)."""
        self.__dict__.pop('_nni_base_structure', None)

    def prepare_model(self) -> None:
        """Put the model in the configured memory format, once (``configure_model``, or ``api.build_supernet``).

        Channels-last (:func:`~nni_base.space.layout.to_channels_last`) is the layout CPU convolutions and pooling run
        fastest in and the one tensor cores want under mixed precision; a forward pre-hook gives the model's 4-D
        inputs the same layout, whoever calls it.
        """
        if not self.config.channels_last or self.__dict__.get('_nni_base_channels_last'):
            return
        to_channels_last(self.training_module.model)
        self.__dict__['_nni_base_channels_last'] = True

    def cells(self) -> list[SampledCell]:
        """The sparse DARTS-style cells (the fast path)."""
        return list(self.structure().cells)

    def softmaxes(self) -> list[ArchSoftmax]:
        """The samplers of NNI's differentiable supermodules (every choice outside a DARTS-style cell)."""
        return list(self.structure().softmaxes)

    def architecture_modules(self) -> list[SampledCell | ArchSoftmax]:
        """Everything that samples an architecture: cells and samplers (see :func:`derived_architecture`)."""
        return [*self.structure().cells, *self.structure().softmaxes]

    def supernet_modules(self) -> Iterator[BaseSuperNetModule]:
        """NNI's supernet modules (what :meth:`resample` draws for), from the looked-up structure."""
        return iter(self.structure().supernet_modules)

    def alphas(self) -> dict[str, nn.Parameter]:
        """The architecture logits by label: one tensor per cell type, one vector per other choice label."""
        return dict(self.structure().alphas)

    def arch_parameters(self) -> list[nn.Parameter]:
        return list(self.structure().alphas.values())

    def model_state(self) -> ModelState:
        """The model's trainable parameters and floating-point buffers (what the inner loop snapshots)."""
        state = self.structure().state
        if state is None:
            raise RuntimeError('The search module has no model yet (NNI sets it when the evaluator runs).')
        return state

    def weight_parameters(self) -> list[nn.Parameter]:
        arch = {id(p) for p in self.arch_parameters()}
        return [p for p in self.training_module.model.parameters() if id(p) not in arch and p.requires_grad]

    def set_temperature(self, tau: float) -> None:
        """Set the Gumbel temperature and the sampling options of every cell and sampler."""
        self.temperature = tau
        for cell in self.cells():
            cell.tau = tau
            self.configure_cell(cell)
        for softmax in self.softmaxes():
            softmax.tau = tau

    def configure_cell(self, cell: SampledCell) -> None:
        """Give a cell the config's sampling options (the cell keeps NNI's mutation-hook signature)."""
        cell.sample_none = self.config.sample_none
        cell.estimator = self.config.alpha_estimator
        cell.pool_batchnorm = self.config.pool_batchnorm

    def export_probs(self) -> dict[str, Any]:
        """Probability of every candidate of every choice (edges of cells: ``'{cell}/{node}_{input}'``)."""
        with reported_probabilities(self.softmaxes()):
            return super().export_probs()

    def step_position(self) -> tuple[int, int]:
        """(current step, total steps) of the fit, for schedules."""
        trainer = self.trainer
        per_epoch = max(int(trainer.num_training_batches), 1) if math.isfinite(trainer.num_training_batches) else 1
        step = trainer.current_epoch * per_epoch + trainer.fit_loop.epoch_loop.batch_progress.current.ready - 1
        return max(step, 0), max(int(trainer.estimated_stepping_batches), 1)

    def current_temperature(self) -> float:
        return self.config.schedule(*self.step_position())

    def log_architecture(self) -> None:
        for label, alpha in self.alphas().items():
            self.log(f'alpha_entropy/{label}', alpha_entropy(alpha), on_step=True, on_epoch=False)
            self.log(f'alpha_max_prob/{label}', alpha_max_prob(alpha), on_step=True, on_epoch=False)

    def model_loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The evaluator's criterion and the accuracy of the model's current forward on (x, y)."""
        return self.loss_of(self.training_module.model, x, y)

    def loss_of(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = model(x)
        if isinstance(logits, tuple):
            logits = logits[0]
        # validate_args=False: the criterion already refuses labels outside the classes, and the checks would
        # cost a device sync on every inner step.
        accuracy = accuracy_of(logits, y)
        return self.training_module.criterion(logits, y), accuracy

    def architecture_scorer(self) -> Callable[[list[dict[str, Any]]], Sequence[float]] | None:
        """Scores of candidate NNI samples for top-k ranking (higher is better), or None to rank by alpha.

        :class:`~.conditioning.ConditionedReptileModule` returns its meta performance predictor here.
        """
        return None

    def conditioning_state(self) -> dict[str, Any] | None:
        """What a prior file stores of the dataset conditioning (None: this module has none)."""
        return None

    # ---- results ---------------------------------------------------------------------------------
    @contextlib.contextmanager
    def averaged_alpha_applied(self) -> Iterator[None]:
        """Within the block, the cells hold the task-averaged alpha (paper section 5.2), if there is one."""
        if self.averaged_alpha is None:
            yield
            return
        alphas = self.alphas()
        saved = {label: alpha.detach().clone() for label, alpha in alphas.items()}
        try:
            with torch.no_grad():
                for label, alpha in alphas.items():
                    alpha.copy_(self.averaged_alpha[label])
            yield
        finally:
            with torch.no_grad():
                for label, alpha in alphas.items():
                    alpha.copy_(saved[label])

    def ranked_models(self, top_k: int = 1, seed: int = 0) -> list[tuple[dict[str, Any], float]]:
        """The ``top_k`` best distinct architectures (NNI samples) with their scores, best first.

        Ranked by :meth:`architecture_scorer` when there is one, else by log-probability under alpha (the
        task-averaged alpha, if there is one); ``seed`` draws the random candidates of modules that use them.
        """
        top_k = check_top_k(top_k)
        shapes = cell_shapes(self.cells())
        choices = plain_choices(self.training_module.model, self.alphas(), [shape.label for shape in shapes])
        if choices is None:  # a choice kind the ranking does not enumerate: the most probable one only
            if top_k > 1:
                raise TypeError(
                    'export_top_models(top_k > 1) ranks DARTS-style cells and single-valued choices '
                    '(LayerChoice, Repeat depth, nni.choice); this space also has multi-input or '
                    'NNI-cell choices. Use top_k=1 (export_sample) or export_probs.'
                )
            with self.averaged_alpha_applied():
                return [(self.export(), 0.0)]
        return self.rank(top_k, shapes, choices, seed)

    def rank(self, top_k: int, shapes: list[CellShape], choices: Any, seed: int) -> list[tuple[dict[str, Any], float]]:
        """Rank a space that :meth:`ranked_models` can enumerate (``choices``: its plain choices)."""
        with self.averaged_alpha_applied():
            return rank_architectures(shapes, self.alphas(), top_k, self.architecture_scorer(), choices=choices)

    # ---- the inner loop (search/loop.py), as methods for adaptation outside a trainer ----------------
    def adapt(self, task: Task, steps: int, state: ModelState, *, where: str, train_alpha: bool = True) -> float:
        """``steps`` inner-loop steps on the task's support set, in place (see :func:`.loop.adapt`)."""
        return adapt(self, task, steps, state, where=where, train_alpha=train_alpha)

    def query_metrics(self, task: Task) -> tuple[float, float]:
        """Query (loss, accuracy) of the derived architecture (see :func:`.loop.query_metrics`)."""
        return query_metrics(self, task)

    def average_alpha_over_tasks(self, tasks: list[Task], steps: int) -> dict[str, torch.Tensor]:
        """Adapt to each task, average the adapted architecture distributions (paper section 5.2).

        Returns (and keeps in ``averaged_alpha``) their log-probabilities.
        """
        probs: dict[str, torch.Tensor] = {}

        def collect(_: ModelState) -> None:
            for label, alpha in self.alphas().items():
                probs[label] = probs.get(label, 0) + torch.softmax(alpha.detach(), -1) / len(tasks)

        adapt_each(self, tasks, steps, where='alpha averaging', measure=False, on_adapted=collect)
        self.averaged_alpha = {label: p.log() for label, p in probs.items()}
        return self.averaged_alpha

    # ---- Lightning hooks -------------------------------------------------------------------------
    # Each hook also runs the evaluator's, as NNI's one-shot modules do, so a custom evaluator's hooks are called.
    def configure_model(self):
        self.prepare_model()  # before Lightning wraps the model for DDP, whose buckets follow the parameters' layout
        return self.training_module.configure_model()

    def on_train_batch_start(self, batch, batch_idx, *args, **kwargs):
        self.set_temperature(self.current_temperature())
        return self.training_module.on_train_batch_start(batch, batch_idx, *args, **kwargs)

    def on_validation_epoch_start(self):
        self.set_temperature(self.current_temperature() if self.trainer.training else self.config.schedule.end)
        return self.training_module.on_validation_epoch_start()

    def on_validation_epoch_end(self):
        return self.training_module.on_validation_epoch_end()

    def postprocess_weight_optimizers(self, optimizer):
        arch = {id(p) for p in self.arch_parameters()}

        def strip(opt):
            if isinstance(opt, torch.optim.Optimizer):
                for group in opt.param_groups:
                    group['params'] = [p for p in group['params'] if id(p) not in arch]
            elif isinstance(opt, (list, tuple)):
                for o in opt:
                    strip(o)
            elif isinstance(opt, dict) and 'optimizer' in opt:
                strip(opt['optimizer'])
            return opt

        return strip(optimizer)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Gumbel noise comes from torch's global generator; a resumed run must continue its stream to
        # reproduce the uninterrupted run. Plain tensors and tuples keep the file loadable with weights_only.
        checkpoint['nni_base_rng'] = {
            'torch': torch.get_rng_state(),
            'cuda': torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            'python': random.getstate(),
        }
        self.training_module.on_save_checkpoint(checkpoint)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.training_module.on_load_checkpoint(checkpoint)
        state = checkpoint.get('nni_base_rng')
        if state is None:
            return
        torch.set_rng_state(state['torch'])
        if state['cuda'] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state['cuda'])
        version, internal, gauss = state['python']
        random.setstate((version, tuple(internal), gauss))


@dataclass(frozen=True)
class SupernetStructure:
    """What :class:`BaseSearchModule` looks up once: its sampling modules, α by label, the model's state."""

    cells: tuple[SampledCell, ...]
    softmaxes: tuple[ArchSoftmax, ...]
    supernet_modules: tuple[BaseSuperNetModule, ...]
    alphas: dict[str, nn.Parameter]
    state: ModelState | None  # None before NNI has set the model

    @classmethod
    def of(cls, module: BaseSearchModule, model: nn.Module | None) -> SupernetStructure:
        modules = list(module.modules())
        alphas: dict[str, nn.Parameter] = {}
        for m in modules:
            for label, alpha in architecture_logits(m).items():
                if label in alphas and alphas[label] is not alpha:
                    raise ValueError(
                        f'Two different architecture logits are labelled {label!r}; give the choices '
                        '(or a cell and a choice) different labels.'
                    )
                alphas[label] = alpha
        return cls(
            cells=tuple(m for m in modules if isinstance(m, SampledCell)),
            softmaxes=tuple(m for m in modules if isinstance(m, ArchSoftmax)),
            supernet_modules=tuple(m for m in modules if isinstance(m, BaseSuperNetModule)),
            alphas=alphas,
            state=ModelState(model) if model is not None else None,
        )
