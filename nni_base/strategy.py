"""``BaseStrategy``: BASE as an NNI one-shot strategy, used as NNI's ``DARTS`` is::

    exp = NasExperiment(space, evaluator, BaseStrategy(...))
    exp.run()
    exp.export_top_models(formatter='dict')

The evaluator decides what the run does: an :class:`~nni_base.EpisodicClassification` evaluator
meta-trains a prior over its task distribution; any other Lightning evaluator (NNI's
``Classification``) adapts ``prior`` to its dataset, or searches from scratch without a prior.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytorch_lightning as pl
import torch
import torch.nn as nn
from nni.nas.oneshot.pytorch.strategy import OneShotStrategy
from nni.nas.space import RawFormatModelSpace

from .callbacks import PriorCheckpoint, ThreadCheck
from .config import MetaAlgorithm
from .config_groups import (
    GROUPS,
    AdaptationConfig,
    ConditioningConfig,
    MetaTrainingConfig,
    SupernetConfig,
    ZeroShotConfig,
    resolve_config,
    without_flat_keywords,
)
from .data.checks import classifier_outputs
from .database import ConditionedReptileModule, ZeroShotModule
from .database.conditioned_zero_shot_module import SupportSetModule
from .database.zero_shot_module import DatabaseZeroShotModule
from .evaluator import EpisodicClassification, EpisodicModule, check_evaluator, training_data_of
from .hardware.strategy_budget import Budget, bound_budget, checked_budget
from .hparams import Default, passed
from .io import check_file_target
from .prior import apply_prior, build_prior, load_prior, resolve_prior_path, save_prior
from .runs import (
    quiet_lightning_notes,
    quiet_nni_checkpoint_warnings,
    quiet_nni_one_shot_warnings,
    search_result_line,
    start_line,
    tidy_trainer,
)
from .search import BaseConfig, BaseSearchModule, MamlModule, ReptileModule, SingleTaskModule
from .search.checkpoint import checked_checkpoint
from .search.distributed import explain_collective_error
from .space.mixed import SUPPORTED_CHOICES, choice_logits, mutation_hooks, new_sample_each_forward
from .space.temperature import TemperatureSchedule

__all__ = ['BaseStrategy']

_logger = logging.getLogger(__name__)


class BaseStrategy(OneShotStrategy):
    """Bayesian Meta Architecture SEarch (BASE) as a one-shot strategy.

    BASE learns one Gumbel-softmax distribution per choice (alpha) with the supernet weights over a distribution
    of tasks: a *prior* that adapts to a new dataset in a few steps. It searches the spaces NNI's ``DARTS``
    strategy does. Every setting is a field of :class:`~nni_base.config.BaseConfig` (``strategy.config``).

    Parameters
    ----------
    prior
        A prior file (:meth:`save_prior`) to start from; its stored settings are the defaults of every other
        argument (those you pass win). Adapted to the dataset of a single-task evaluator; with an episodic one,
        meta-training continues from it.
    inner_steps, inner_lr, inner_lr_alpha
        Meta-training's inner loop: SGD steps per task and their step sizes for weights and alpha.
    outer_lr, outer_lr_alpha
        Meta step sizes for weights and alpha (None: 1.0 and 0.15 for Reptile, 1e-3 and 0.1 for MAML).
    arc_learning_rate
        Single-task search and adaptation: Adam's step on alpha (the weights use the evaluator's optimizer).
    temperature
        Gumbel-softmax temperature schedule (a :class:`~nni_base.TemperatureSchedule` or a ``(start, end)`` pair);
        None: constant 1.0 for hard samples, 5.0 decaying to 0.5 otherwise.
    meta_algorithm
        ``'reptile'`` (the paper's Algorithm 1) or ``'maml'`` (few-shot BASE, through the inner loop).
    freeze_alpha
        Keep alpha at its initial (prior) values: only weights train (the paper's frozen-alpha ablation).
    supernet, meta_training, adaptation
        Sampling and compute of the supernet (:class:`~nni_base.SupernetConfig`), meta-training details
        (:class:`~nni_base.MetaTrainingConfig`), single-task search details (:class:`~nni_base.AdaptationConfig`).
    conditioning
        ``True`` or a :class:`~nni_base.ConditioningConfig`: meta-train a dataset-conditioned prior (MetaD2A style).
    zero_shot
        ``True`` or a :class:`~nni_base.ZeroShotConfig`: with a dataset-conditioned prior and a single-dataset
        evaluator, generate the dataset's architectures from its training images without training.
    resume_from
        A Lightning checkpoint (e.g. ``last.ckpt``) of an interrupted meta-training run to continue.
    save_prior_to
        Meta-training writes the prior here after every epoch and at the end.
    budget
        A :class:`~nni_base.hardware.Budget` (parameters, MACs, CPU latency) for single-dataset search and
        adaptation: α is steered under it and every exported architecture fits it.
    seed
        Seeds Python, numpy and torch before the run and, without a prior, re-draws the space's initial weights.
        None leaves all randomness alone.
    kwargs
        Options of NNI's ``OneShotStrategy`` (``mutation_hooks=...``).
    """

    def __init__(
        self,
        *,
        prior: str | os.PathLike | None = None,
        inner_steps: int = Default(BaseConfig.inner_steps),
        inner_lr: float = Default(BaseConfig.inner_lr),
        inner_lr_alpha: float = Default(BaseConfig.inner_lr_alpha),
        outer_lr: float | None = Default(BaseConfig.outer_lr),
        outer_lr_alpha: float | None = Default(BaseConfig.outer_lr_alpha),
        arc_learning_rate: float | None = Default(BaseConfig.arc_learning_rate),
        temperature: TemperatureSchedule | tuple[float, float] | None = Default(BaseConfig.temperature),
        meta_algorithm: MetaAlgorithm = Default(BaseConfig.meta_algorithm),
        freeze_alpha: bool = Default(BaseConfig.freeze_alpha),
        supernet: SupernetConfig | None = None,
        meta_training: MetaTrainingConfig | None = None,
        adaptation: AdaptationConfig | None = None,
        conditioning: bool | ConditioningConfig = Default(False),
        zero_shot: bool | ZeroShotConfig = Default(False),
        resume_from: str | os.PathLike | None = None,
        save_prior_to: str | os.PathLike | None = None,
        budget: Budget | None = None,
        seed: int | None = 0,
        **kwargs: Any,
    ):
        # What the caller passed (not a Default), with the old flat spellings of grouped options from kwargs: with a
        # prior, only these override its stored settings.
        arguments = passed({k: v for k, v in locals().items() if k in GROUPS or k in BaseConfig.__dataclass_fields__})
        arguments |= {k: v for k, v in kwargs.items() if k in BaseConfig.__dataclass_fields__}
        kwargs = without_flat_keywords(kwargs)
        super().__init__(**kwargs)
        quiet_nni_one_shot_warnings()
        self.prior = load_prior(prior) if prior is not None else None  # first: it names what prior= accepts
        self.prior_path = resolve_prior_path(prior) if prior is not None else None
        self.config = resolve_config(arguments, self.prior['config'] if self.prior is not None else None)
        from_prior = self.config.zero_shot and self.config.zero_shot_database is None
        if from_prior and (self.prior is None or self.prior.get('conditioning') is None):
            raise ValueError(
                'zero_shot=True generates architectures from a dataset-conditioned prior, but '
                + ('no prior was given' if self.prior is None else f'{self.prior_path} has no dataset encoder')
                + ': pass prior= a file meta-trained with conditioning=True, or zero_shot=ZeroShotConfig(database='
                "'shipped') to generate from the ground-truth database."
            )
        # Refused now, not after meta-training: a directory, device node or FIFO there would be replaced.
        self.save_prior_to = (
            check_file_target(save_prior_to, 'prior (save_prior_to)', suggest='prior.pt')
            if save_prior_to is not None
            else None
        )
        self.resume_from = checked_checkpoint(resume_from) if resume_from is not None else None
        self.budget = checked_budget(budget)
        self._cost_space: nn.Module | None = None  # the unmutated space, for the budget's cost table
        self.seed = seed
        self._task_config: dict[str, Any] = {}
        self._choice_logits: dict[str, nn.Parameter] = {}
        self._draws: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.rebuilt_heads: list[str] = []  # classifier layers rebuilt for another class count (search/head.py)
        self._mutated_model: nn.Module | None = None
        self._train_data: Any = None

    # ---- supernet --------------------------------------------------------------------------------
    def default_mutation_hooks(self):
        # DARTS-style cells take the sparse GumbelMixedCell; every other NNI choice NNI's differentiable supermodule.
        return mutation_hooks()

    def run_hook(self, hook, name, module, memo):
        if not memo.get('__nni_base_logits__'):
            # As NNI's DARTS does: one logit vector per choice label, shared by every module with that label.
            memo.update(self._choice_logits)
            memo['__nni_base_logits__'] = True
        # The memo also carries one alpha per cell label, created by the first cell of that label.
        return hook(
            module,
            name,
            memo,
            {
                'hard': self.config.hard,
                'sparse': self.config.sparse,
                'relaxation': self.config.relaxation,
                'parameterization': self.config.parameterization,
                'draws': self._draws,
            },
        )

    def mutate_model(self, model):
        choices = model.simplify()
        if not choices:
            raise ValueError(
                f'The model space {type(model).__name__} has no choices: there is nothing to search. '
                f'BaseStrategy searches {SUPPORTED_CHOICES}; e.g. nni_base.DartsTaskSpace.'
            )
        self._choice_logits = choice_logits(choices, 0 if self.seed is None else self.seed)
        if self.prior is None and self.seed is not None:
            # The space was initialised when the user built it; re-draw its weights so the seed decides them.
            for module in model.modules():
                if hasattr(module, 'reset_parameters'):
                    module.reset_parameters()
        self._draws = {}  # one Gumbel draw per label and forward, shared by all samplers of this supernet
        self._cost_space = copy.deepcopy(model) if self.budget is not None else None
        model = super().mutate_model(model)
        self._choice_logits = {}
        new_sample_each_forward(model)
        self.rebuilt_heads = (
            apply_prior(model, self.prior, self.config.prior_alpha_scale) if self.prior is not None else []
        )
        if self.rebuilt_heads:
            ways = self.prior.get('tasks', {}).get('ways')  # type: ignore[union-attr]
            _logger.debug(  # the INFO line is the search's own, when it initialises the head (search/head.py)
                'The prior was meta-trained on %s-way tasks; this space has %s classes: its weights and '
                'alpha are loaded, the classifier is rebuilt (head_init=%r).',
                ways,
                classifier_outputs(model),
                self.config.head_init,
            )
        self._mutated_model = model
        return model

    def mutate_evaluator(self, evaluator):
        check_evaluator(evaluator, self.config, self._mutated_model)
        episodic = isinstance(evaluator, EpisodicClassification)
        if self.budget is not None and episodic:
            raise ValueError(
                'budget= applies to single-dataset search, adaptation and zero-shot generation (NNI '
                'Classification and the like); meta-training does not take one yet: drop budget= for this run and '
                'pass it when the prior adapts.'
            )
        self._task_config = evaluator.task_config() if episodic else {}
        self._episodic = evaluator if episodic else None
        generator = 'database' if self.config.zero_shot_database is not None else 'prior'
        zero_shot = generator if self.config.zero_shot else None
        _logger.info(start_line(self._task_config or None, self.prior_path, self.prior, zero_shot, self._mutated_model))
        # The user's own training data: single-task search checks it and reads a rebuilt head's class means from it
        # before Lightning's first batch (its sanity validation included); NNI wraps the loaders below.
        self._train_data = None if episodic else training_data_of(evaluator)
        mutated = super().mutate_evaluator(evaluator)
        mutated.trainer = tidy_trainer(mutated.trainer)  # nothing written into the current folder unless asked
        if self.resume_from is not None:
            # Lightning restores weights, alpha, optimizer, loop position and (our hook) the RNG streams.
            mutated.fit_kwargs['ckpt_path'] = str(self.resume_from)
            mutated.fit_kwargs['weights_only'] = True
        mutated.trainer.callbacks.append(ThreadCheck())
        if self.save_prior_to is not None:
            mutated.trainer.callbacks.append(PriorCheckpoint(self.save_prior, self.save_prior_to))
        return mutated

    def configure_oneshot_module(self, training_module) -> BaseSearchModule:
        module = self._search_module(training_module)
        module.rebuilt_heads = list(self.rebuilt_heads)
        module.train_data = self._train_data
        if isinstance(module, SingleTaskModule):
            module.from_prior = self.prior is not None
        if isinstance(module, (SingleTaskModule, SupportSetModule)) and self.budget is not None:
            module.make_budget = bound_budget(self.budget, self._cost_space, module)
        return module

    def _search_module(self, training_module) -> BaseSearchModule:
        # As NNI's one-shot strategies do: one Lightning module per search algorithm.
        if not isinstance(training_module, EpisodicModule):
            if self.config.zero_shot and self.config.zero_shot_database is not None:
                return DatabaseZeroShotModule(training_module, self.config)
            if self.config.zero_shot:
                return ZeroShotModule(training_module, self.config, cast(dict, self.prior)['conditioning'])
            return SingleTaskModule(training_module, self.config)
        if self.config.meta_algorithm == 'maml':
            return MamlModule(training_module, self.config)
        if self.config.dataset_conditioning:
            conditioning = self.prior.get('conditioning') if self.prior is not None else None
            return ConditionedReptileModule(training_module, self.config, conditioning)
        return ReptileModule(training_module, self.config)

    def _initialize(self, model_space: RawFormatModelSpace, engine):
        self.seed_everything()
        return super()._initialize(model_space, engine)

    def seed_everything(self) -> None:
        """Seed Python, numpy and torch with ``seed`` (no-op when it is None)."""
        if self.seed is not None:
            pl.seed_everything(self.seed, workers=True, verbose=False)

    def _run(self) -> None:
        try:
            with quiet_lightning_notes():  # Lightning's tips, its note on our stepping-batch estimate (runs.py)
                super()._run()
        except Exception as e:
            try:
                trainer = self.oneshot_module.trainer
            except RuntimeError:  # NNI: no module yet; Lightning: not attached to a trainer
                raise e from None
            explained = explain_collective_error(e, trainer)
            if explained is None:
                raise
            raise explained from e
        if self.config.average_alpha_tasks and self._episodic is not None:
            tasks_from = self._episodic.val_tasks or self._episodic.train_tasks
            tasks = [tasks_from.sample() for _ in range(self.config.average_alpha_tasks)]
            self.oneshot_module.average_alpha_over_tasks(tasks, self.config.adaptation_steps)
        module = self.oneshot_module
        if _logger.isEnabledFor(logging.INFO) and module.trainer.is_global_zero:  # one line per run, not per rank
            meta = self._episodic is not None
            line = search_result_line(
                self.export_sample(),
                module.trainer.callback_metrics,
                _global_step(module) if meta else module.trainer.current_epoch,
                meta=meta,
                prior_file=self.save_prior_to,
            )
            _logger.info(line)
            if getattr(module, 'budget', None) is not None:
                _logger.info(module.budget.describe(self.export_sample()))

    def state_dict(self) -> dict:
        # NNI warns at each experiment checkpoint that the trainer has no checkpoint (enable_checkpointing=False,
        # the user's choice; BaseStrategy resumes with resume_from=) or none yet (before the fit): nothing to do.
        with quiet_nni_checkpoint_warnings():
            return super().state_dict()

    # ---- results -------------------------------------------------------------------------------------
    @property
    def oneshot_module(self) -> BaseSearchModule:  # type: ignore[override]
        return super().oneshot_module  # type: ignore[return-value]

    def export_sample(self) -> dict[str, Any]:
        """The most probable architecture as an NNI sample (of the task-averaged alpha, if there is one)."""
        with self.oneshot_module.averaged_alpha_applied():
            return self.oneshot_module.export()

    def export_probs(self) -> dict[str, dict[str, float]]:
        """Probability of every operation (and ``none``) on every edge: ``{'normal/3_1': {'sep_conv_3x3': p}}``."""
        with self.oneshot_module.averaged_alpha_applied():
            return self.oneshot_module.export_probs()

    def ranked_models(self, top_k: int = 1) -> list[tuple[dict[str, Any], float]]:
        """The ``top_k`` best distinct architectures with their scores, best first (by the performance predictor
        of a conditioned prior when it has one for this dataset, else by log-probability under alpha)."""
        self.oneshot_module.set_model(self.supernet)
        return self.oneshot_module.ranked_models(top_k, seed=0 if self.seed is None else self.seed)

    def export_top_models(self, top_k: int = 1) -> list[dict[str, Any]]:
        """The ``top_k`` best distinct architectures as NNI samples (``space.freeze(sample)`` builds each),
        best first; ``NasExperiment.export_top_models(top_k=k, formatter='dict')`` gives the same list."""
        return [sample for sample, _ in self.ranked_models(top_k)]

    def list_models(self, sort: bool = True, limit: int | None = 1) -> Iterator:
        """Yield the ``limit`` best distinct architectures (frozen model spaces), best first (NNI's strategy API)."""
        if not sort:
            _logger.warning('BaseStrategy lists its models best first; sort=False is ignored.')
        samples = self.export_top_models(1 if limit is None else limit)
        self.oneshot_module.set_model(self.supernet)
        for sample in samples:
            yield self.model_space.freeze(sample)

    def prior_dict(self) -> dict[str, Any]:
        """The current prior (weights, alpha, space and task description) as a dict."""
        module = self.oneshot_module
        meta = {'steps': _global_step(module), 'seed': self.seed, 'metrics': dict(module.last_metrics)}
        return build_prior(
            self.supernet,
            module.alphas(),
            config=self.config.to_dict(),
            tasks=self._task_config,
            meta=meta,
            conditioning=module.conditioning_state(),
        )

    def save_prior(self, path: str | os.PathLike) -> Path:
        """Write the current prior atomically (refused if any value is NaN/inf)."""
        return save_prior(self.prior_dict(), path)


def _global_step(module: BaseSearchModule) -> int:
    """Meta-steps taken so far (0 for a supernet that never ran under a trainer)."""
    try:
        return int(module.trainer.global_step)
    except RuntimeError:  # Lightning: "not attached to a Trainer"
        return 0
