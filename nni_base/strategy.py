"""``BaseStrategy``: BASE as an NNI one-shot strategy.

Workflow, as with NNI's ``DARTS`` strategy::

    space = DartsTaskSpace(width=8, num_cells=3, num_classes=5)     # or nni.nas.hub.pytorch.DARTS
    exp = NasExperiment(space, evaluator, BaseStrategy(...))
    exp.run()
    exp.export_top_models(formatter='dict')                          # standard NNI sample

The evaluator decides what the run does: an :class:`~nni_base.EpisodicClassification` evaluator
meta-trains a prior over its task distribution; any other Lightning evaluator (NNI's
``Classification``) adapts ``prior`` to its dataset, or searches from scratch without a prior.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any, Literal, cast

import pytorch_lightning as pl
import torch
import torch.nn as nn
from nni.mutable import Categorical, CategoricalMultiple
from nni.nas.evaluator.pytorch import Lightning
from nni.nas.oneshot.pytorch.strategy import OneShotStrategy
from nni.nas.space import RawFormatModelSpace

from .callbacks import PriorCheckpoint
from .data.checks import classifier_outputs
from .evaluator import EpisodicClassification, EpisodicModule, check_episodic_space
from .runs import quiet_nni_one_shot_warnings, tidy_trainer
from .search import BaseConfig, BaseSearchModule, MamlModule, ReptileModule, SingleTaskModule
from .search.checkpoint import check_checkpoint
from .search.conditioning import ConditionedReptileModule, ZeroShotModule
from .search.distributed import collective_failure, is_collective_error
from .search.prior import apply_prior, build_prior, load_prior, save_prior
from .search.top_k import cell_shapes, check_top_k, plain_choices, rank_architectures
from .space.mixed import SUPPORTED_CHOICES, mutation_hooks, new_sample_each_forward
from .space.temperature import TemperatureSchedule

__all__ = ['BaseStrategy']

_logger = logging.getLogger(__name__)


class BaseStrategy(OneShotStrategy):
    """Bayesian Meta Architecture SEarch (BASE) as a one-shot strategy.

    BASE keeps one Gumbel-softmax distribution per choice and learns it, with the supernet weights, over a
    distribution of tasks. The learned pair is a *prior* that adapts to a new dataset in a few steps.

    Any space NNI's ``DARTS`` / ``GumbelDARTS`` strategies search is accepted (``LayerChoice``,
    ``InputChoice``, ``Repeat`` depth choices, ``Cell``, ``nni.choice`` in ``MutableConv2d`` and the other
    ops NNI has a mixed version of; see :mod:`nni_base.space.mixed`). DARTS-style cells (built from op
    factories) take the sparse :class:`~nni_base.space.gumbel_cell.GumbelMixedCell`: one distribution per
    edge, one logit tensor per cell type (normal / reduction). Every other choice runs through NNI's
    differentiable supermodule with one logit vector per label. ``sparse``, ``alpha_estimator``,
    ``sample_none``, ``pool_batchnorm`` and ``parameterization`` concern the cells only.

    Parameters
    ----------
    prior
        Path of a prior (from :meth:`save_prior`) to start from. With a non-episodic evaluator this
        is BASE's adaptation; with an episodic one, meta-training continues from it.
    inner_steps
        SGD steps per task in meta-training (T in the paper).
    inner_lr, inner_lr_alpha
        Inner-loop step sizes for weights and for alpha.
    outer_lr, outer_lr_alpha
        Outer (meta) step sizes for weights and alpha. With Reptile, the step toward the mean of the
        task-adapted values (default 1.0: all the way to the mean); with MAML, Adam's step size on the
        query loss (defaults 1e-3 and 0.1: α needs logit-sized steps to leave uniform).
    adapt_steps
        Inner steps used when adapting to held-out tasks (validation, alpha averaging); defaults
        to ``inner_steps``.
    arc_learning_rate
        Single-task search / adaptation (the weights use the evaluator's optimizer): Adam's step on alpha,
        default 0.3 (``None`` means the default). Logit-sized like the meta-level alpha steps, so alpha leaves
        uniform (or the prior) within a run of ~50-100 steps; much smaller steps (3e-3, or SGD at
        ``inner_lr_alpha``) leave alpha where it started, every step then trains another random sub-network
        and, without ``freeze_architecture_after``, the derived cell stays near chance.
    alpha_estimator
        How a hard sample's gradient reaches alpha. ``'paired'`` (default): the sampled op is compared with
        the runner-up of the same Gumbel draw (computed without a weight gradient), so alpha learns whether
        the other op would lower the loss; ``'straight_through'``: the sampled op's gate only (GDAS), which
        with BatchNorm after each op mostly measures output scale. Costs one extra forward per edge.
    pool_batchnorm
        While searching, normalise pooling outputs by their batch statistics (stateless, no affine), as DARTS
        does in its search phase: NNI's pooling ops have no BatchNorm while every parametric op ends in one,
        and unnormalised pooled outputs lose every comparison on scale alone (measured on the ``peaks``
        family: max-pool's probability in normal cells 0.01 without, 0.18 with). Exported cells are unchanged.
    freeze_alpha
        Keep alpha fixed at its initial (prior) values everywhere: adaptation trains only the weights of
        the sampled sub-networks. The paper's frozen-alpha ablation (Fig. 4).
    temperature
        Gumbel-softmax temperature schedule over the run (a :class:`TemperatureSchedule`, or a
        ``(start, end)`` pair for exponential decay). Default: constant 1.0 for hard samples (the sample
        argmax(alpha + g) does not depend on it, only the gradient's scale does); 5.0 decaying
        exponentially to 0.5 for relaxed samples and the softmax relaxation.
    hard
        Straight-through one-hot samples (default) rather than relaxed weights.
    sparse
        With ``hard``, compute only the sampled operation of each edge (default). ``False`` is the
        dense reference path: every operation, weighted by the one-hot sample.
    average_alpha_tasks
        If > 0, after the run adapt to this many held-out tasks of the episodic evaluator and
        export the average of their architecture distributions (paper section 5.2).
    inner_grad_clip
        Clip the global gradient norm of each inner step to this value (``None``: no clipping). Each
        step trains another sampled sub-network, and clipping keeps an unlucky sample from derailing
        the shared weights.
    meta_algorithm
        ``'reptile'`` (default): the paper's practical Algorithm 1, a finite-difference update toward
        the task-adapted values. ``'maml'``: few-shot BASE (paper section 6.3), the inner loop is
        learn2learn's MAML over weights and alpha and the query loss after adaptation is
        differentiated through it (the optimization embedding).
    first_order
        With ``'maml'``, drop the second-order terms (first-order MAML).
    relaxation
        ``'gumbel'`` (default): Gumbel-softmax samples of the architecture. ``'softmax'``: the paper's
        ablation, every operation weighted by ``softmax(alpha)`` as in DARTS (implies dense compute).
    freeze_architecture_after
        Single-task search / adaptation only: after this many steps, fix the architecture to the
        derived (most probable) cell and train only its weights for the rest of the run, so the
        validation accuracy is that of a trained cell rather than of a supernet whose weights were
        spread over many sampled sub-networks. ``None`` (default): search until the end.
    bn_recalibration_batches
        Single-task search / adaptation only: before each validation, recompute the BatchNorm statistics of the
        derived architecture from this many of the latest training batches (forward passes, no gradient). While
        searching, an operation's running statistics were last updated whenever it was last sampled, with
        other sub-networks around it, so the derived cell would be validated with stale statistics (measured on
        the quickstart's adaptation, 16 steps: 0.22 -> 0.33 validation accuracy). ``0`` turns it off.
    sample_none
        Let hard samples draw ``none``. Off by default: a sampled ``none`` computes nothing, so its edge gets
        no alpha gradient and ``none`` drifts upward; the DARTS export never picks ``none`` anyway.
    samples_per_step
        Gumbel samples averaged per inner step (more samples, less noisy alpha gradients, more compute).
    outer_optimizer_alpha
        Reptile's outer step on alpha: ``'adam'`` (default, step size ``outer_lr_alpha`` = 0.15 logits) on the
        direction toward the task-adapted alpha, or ``'sgd'`` (the plain finite-difference step, 1.0).
    alpha_warmup_steps
        Meta-steps at the start of meta-training during which alpha stays fixed and only weights learn, so
        the operations are trained before alpha compares them.
    inner_batch_size
        Images per inner step, drawn from the task's support set (``None``: the whole support set). With
        dataset-level tasks (many shots) and tens of inner steps this is the paper's mini-batch inner loop.
    parameterization
        ``'darts'`` (default): one categorical per edge of the fully connected cell, exported by the DARTS rule.
        ``'slot'``: the paper's parameterisation, one categorical per node input slot over (input, op) pairs,
        as NNI's ``Cell`` exposes them (``op_i_k``, ``input_i_k``); export = the most probable pair per slot.
    dataset_conditioning
        MetaD2A-style dataset-conditioned prior (Reptile meta-training only): a set encoder reads each task's
        support set (per-class then across-class mean pooling) and a generator turns the encoding into an
        offset added to the shared alpha before the inner loop. Both learn by regressing Reptile's alpha
        direction of the task (adapted minus starting alpha); a meta performance predictor learns the query
        accuracy of sampled architectures from the encoding. The prior file carries all three, so
        :func:`nni_base.api.zero_shot` turns a new dataset into top-k architectures without training.
    conditioning_lr
        Adam step size of the encoder, generator and predictor.
    conditioning_alpha_lr
        With ``dataset_conditioning``: Adam step (betas (0.5, 0.999), fresh per task) on a task's alpha gradients
        in the inner loop of meta-training, so that the generator's target (the task's alpha direction) is
        logit-sized, not the ~0.01 that SGD at ``inner_lr_alpha`` moves alpha. ``None``: the SGD-adapted alpha is
        the target (before issue #12).
    conditioning_teacher
        How that Adam step is used: ``'shadow'`` (default) records where it would take alpha while the task's
        alpha and weights follow the usual SGD inner loop (the shared alpha learns as without conditioning);
        ``'inner'`` moves the task's alpha with it.
    conditioning_centred
        With ``dataset_conditioning``: centre the generator's targets over the meta-step's tasks (the common
        part is the shared alpha's Reptile step; the generator learns how each dataset deviates from it).
    conditioning_standardise
        With ``dataset_conditioning``: the generator reads the encoding standardised by running statistics over
        the meta-training tasks (saved with the prior), so that datasets whose raw encodings differ by a few
        percent get distinct offsets. ``False``: the raw encoding (before issue #12).
    conditioning_per_op
        With ``dataset_conditioning``: the generator outputs one alpha offset per (cell type, operation), added to
        every edge (its target is the edge mean of a task's noisy alpha direction). ``False``: one offset per
        (edge, operation), as before issue #12.
    conditioning_features
        With ``dataset_conditioning``: what the set encoder reads of each image. ``'pixels'`` (default):
        channel-agnostic pixel statistics (any image size and channel count). ``'stem'``: the mean and spread of
        each channel of the prior's stem output (a copy of the space's ``stem``, refreshed every task and saved
        with the prior; spaces whose ``stem`` is a Sequential of Conv2d / BatchNorm2d / ReLU).
    predictor_samples
        With ``dataset_conditioning``: random architectures scored on each task's query set (with the adapted
        supernet weights) per meta-step, besides the derived one, as the predictor's training records.
    predictor_steps
        With ``dataset_conditioning``: Adam steps of the performance predictor per meta-step, each on a batch of
        64 records.
    predictor_centred
        With ``dataset_conditioning``: the predictor learns each record's accuracy minus its task's mean (what
        ranking architectures for one dataset needs; how hard a task is no longer dominates its targets).
    head_init
        A prior adapts to a dataset with any number of classes C: everything but the classifier comes from the
        prior, and the classifier is rebuilt with C outputs (the prior file keeps its own). How its rows start:
        ``'zero'`` (default: measured best, ``benchmarks/head_init.py``), ``'class_means'`` (each row from the mean
        feature of its class's images under the prior's derived architecture, read from the first training batches:
        the few-shot prototype rule), or ``'random'`` (PyTorch's Linear initialisation). With the prior's own class
        count the prior's head is kept.
    zero_shot
        Zero-shot generation (MetaD2A) inside the experiment: with a dataset-conditioned ``prior`` and a
        single-dataset evaluator (NNI's ``Classification``), read up to ``zero_shot_images`` labelled images
        from the evaluator's training dataloader, encode them, set alpha to the prior's conditioned alpha for
        that dataset and train nothing. ``export_top_models(top_k=k)`` then ranks by the prior's performance
        predictor. Without a conditioned prior it is refused.
    zero_shot_images
        With ``zero_shot``: how many training images (from the first batches) form the support set.
    zero_shot_pool
        With ``zero_shot``: ``export_top_models(top_k=k)`` ranks ``zero_shot_pool * k`` candidates per source.
    zero_shot_candidates
        With ``zero_shot``: where the candidates come from: ``'alpha'`` (the most probable under the conditioned
        alpha), ``'random'`` (random architectures of the space, drawn with ``seed``; worth it with a predictor
        fitted on trained networks, :func:`nni_base.api.fit_trained_predictor`) or ``'both'``.
    resume_from
        A Lightning checkpoint of an interrupted meta-training run (e.g. ``last.ckpt`` of a
        ``ModelCheckpoint`` in the evaluator's trainer). The run continues from it, loaded with
        ``weights_only=True``; with the same seed and evaluator it ends where the uninterrupted run would.
    save_prior_to
        If set, meta-training writes the prior here after every epoch and at the end (atomically).
    seed
        Seeds torch, numpy and Python before the run and, without a prior, re-draws the space's initial
        weights, so the same seed gives the same result on CPU. ``None`` leaves all randomness alone.
    """

    def __init__(self, *, prior: str | os.PathLike | None = None, inner_steps: int = 5, inner_lr: float = 0.05,
                 inner_lr_alpha: float = 0.5, outer_lr: float | None = None, outer_lr_alpha: float | None = None,
                 adapt_steps: int | None = None, arc_learning_rate: float | None = 0.3,
                 temperature: TemperatureSchedule | tuple[float, float] | None = None,
                 hard: bool = True, sparse: bool = True, average_alpha_tasks: int = 0,
                 inner_grad_clip: float | None = None,
                 meta_algorithm: Literal['reptile', 'maml'] = 'reptile', first_order: bool = False,
                 relaxation: Literal['gumbel', 'softmax'] = 'gumbel',
                 freeze_architecture_after: int | None = None, bn_recalibration_batches: int = 8,
                 sample_none: bool = False, samples_per_step: int = 1,
                 outer_optimizer_alpha: Literal['sgd', 'adam'] = 'adam', alpha_warmup_steps: int = 0,
                 inner_batch_size: int | None = None, parameterization: Literal['darts', 'slot'] = 'darts',
                 freeze_alpha: bool = False, alpha_estimator: Literal['paired', 'straight_through'] = 'paired',
                 pool_batchnorm: bool = True, dataset_conditioning: bool = False, conditioning_lr: float = 0.01,
                 predictor_samples: int = 2, predictor_steps: int = 20, predictor_centred: bool = True,
                 conditioning_alpha_lr: float | None = 0.3,
                 conditioning_teacher: Literal['shadow', 'inner'] = 'shadow',
                 conditioning_centred: bool = True, conditioning_standardise: bool = True,
                 conditioning_per_op: bool = True, conditioning_features: Literal['pixels', 'stem'] = 'pixels',
                 head_init: Literal['zero', 'class_means', 'random'] = 'zero',
                 zero_shot: bool = False, zero_shot_images: int = 250, zero_shot_pool: int = 4,
                 zero_shot_candidates: Literal['alpha', 'random', 'both'] = 'alpha',
                 resume_from: str | os.PathLike | None = None,
                 save_prior_to: str | os.PathLike | None = None, seed: int | None = 0, **kwargs: Any):
        super().__init__(**kwargs)
        quiet_nni_one_shot_warnings()
        given = locals()  # every BaseConfig field is an argument of this method (tests/search/test_config.py checks)
        self.config = BaseConfig(**{f.name: given[f.name] for f in fields(BaseConfig)})
        self.prior_path = Path(prior) if prior is not None else None
        self.prior = load_prior(self.prior_path) if self.prior_path is not None else None
        if self.config.zero_shot and (self.prior is None or self.prior.get('conditioning') is None):
            raise ValueError('zero_shot=True generates architectures from a dataset-conditioned prior, but '
                             + ('no prior was given' if self.prior is None else f'{self.prior_path} has no dataset '
                                'encoder') + ': pass prior= a file meta-trained with dataset_conditioning=True.')
        self.save_prior_to = Path(save_prior_to) if save_prior_to is not None else None
        self.resume_from = Path(resume_from) if resume_from is not None else None
        if self.resume_from is not None and not self.resume_from.is_file():
            raise FileNotFoundError(f'resume_from={str(self.resume_from)!r} is not a file: pass the Lightning '
                                    'checkpoint (e.g. last.ckpt) that the interrupted run wrote.')
        if self.resume_from is not None:
            check_checkpoint(self.resume_from)  # a damaged file is named before Lightning unpickles it
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
        return hook(module, name, memo, {'hard': self.config.hard, 'sparse': self.config.sparse,
                                         'relaxation': self.config.relaxation,
                                         'parameterization': self.config.parameterization,
                                         'draws': self._draws})

    def mutate_model(self, model):
        choices = model.simplify()
        if not choices:
            raise ValueError(f'The model space {type(model).__name__} has no choices: there is nothing to search. '
                             f'BaseStrategy searches {SUPPORTED_CHOICES}; e.g. nni_base.DartsTaskSpace.')
        self._choice_logits = {}
        # A generator of their own: drawing them from torch's global one would shift every seeded initialisation
        # after them (the weights and cell logits of DARTS spaces would differ from earlier versions).
        generator = torch.Generator().manual_seed(0 if self.seed is None else self.seed)
        for label, mutable in choices.items():
            if not isinstance(mutable, (Categorical, CategoricalMultiple)):
                raise TypeError(f'BaseStrategy keeps one categorical distribution per choice, but choice {label!r} is '
                                f'a {type(mutable).__name__} ({mutable!r}). Use nni.choice({label!r}, [...]) over a '
                                'few values instead, or fix it to one value.')
            self._choice_logits[label] = nn.Parameter(torch.randn(len(mutable.values), generator=generator) * 1e-3)
        if self.prior is None and self.seed is not None:
            # The space was initialised when the user built it; re-draw its weights so the seed decides them.
            for module in model.modules():
                if hasattr(module, 'reset_parameters'):
                    module.reset_parameters()
        self._draws = {}  # one Gumbel draw per label and forward, shared by all samplers of this supernet
        model = super().mutate_model(model)
        self._choice_logits = {}
        new_sample_each_forward(model)
        self.rebuilt_heads = apply_prior(model, self.prior) if self.prior is not None else []
        if self.rebuilt_heads:
            ways = self.prior.get('tasks', {}).get('ways')  # type: ignore[union-attr]
            _logger.info('The prior was meta-trained on %s-way tasks; this space has %s classes: its weights and '
                         "alpha are loaded, the classifier is rebuilt (head_init=%r).", ways,
                         classifier_outputs(model), self.config.head_init)
        self._mutated_model = model
        return model

    def mutate_evaluator(self, evaluator):
        if not isinstance(evaluator, Lightning):
            raise TypeError(f'BaseStrategy needs a Lightning evaluator (nni.nas.evaluator.pytorch.Classification '
                            f'or nni_base.EpisodicClassification), got {type(evaluator).__name__}.')
        if self.config.average_alpha_tasks and not isinstance(evaluator, EpisodicClassification):
            raise TypeError('average_alpha_tasks needs an EpisodicClassification evaluator to draw tasks from.')
        if self.config.zero_shot and isinstance(evaluator, EpisodicClassification):
            raise TypeError('zero_shot=True reads one dataset (NNI\'s Classification evaluator, its training '
                            'dataloader); an EpisodicClassification meta-trains. Use zero_shot=False to meta-train.')
        if isinstance(evaluator, EpisodicClassification):
            check_episodic_space(evaluator, self._mutated_model)
            if self.config.freeze_architecture_after is not None:
                _logger.warning('freeze_architecture_after applies to single-task search / adaptation only; '
                                'meta-training with an EpisodicClassification evaluator ignores it.')
            self._task_config = evaluator.task_config()
            self._episodic = evaluator
        else:
            self._task_config = {}
            self._episodic = None
        # The user's own training data: single-task search checks it and reads a rebuilt head's class means from it
        # before Lightning's first batch (its sanity validation included); NNI wraps the loaders below.
        self._train_data = None if isinstance(evaluator, EpisodicClassification) else (
            evaluator.datamodule.train_dataloader if evaluator.datamodule is not None
            else (lambda: evaluator.train_dataloaders))
        mutated = super().mutate_evaluator(evaluator)
        mutated.trainer = tidy_trainer(mutated.trainer)  # nothing written into the current folder unless asked
        if self.resume_from is not None:
            # Lightning restores weights, alpha, optimizer, loop position and (our hook) the RNG streams.
            mutated.fit_kwargs['ckpt_path'] = str(self.resume_from)
            mutated.fit_kwargs['weights_only'] = True
        if self.save_prior_to is not None:
            mutated.trainer.callbacks.append(PriorCheckpoint(self.save_prior, self.save_prior_to))
        return mutated

    def configure_oneshot_module(self, training_module) -> BaseSearchModule:
        module = self._search_module(training_module)
        module.rebuilt_heads = list(self.rebuilt_heads)
        if isinstance(module, SingleTaskModule):
            module.train_data = self._train_data
        return module

    def _search_module(self, training_module) -> BaseSearchModule:
        # As NNI's one-shot strategies do: one Lightning module per search algorithm.
        if not isinstance(training_module, EpisodicModule):
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
            super()._run()
        except Exception as e:
            # Under DDP a dead peer surfaces in whichever collective comes first (DDP's buffer broadcast,
            # Lightning's barrier, the meta-step's all-reduce); name it the same way in every case.
            try:
                trainer = self.oneshot_module.trainer
            except RuntimeError:  # NNI: no module yet; Lightning: not attached to a trainer
                raise e from None
            if trainer is None or trainer.world_size < 2 or not is_collective_error(e):
                raise
            raise collective_failure(e, trainer.global_rank, trainer.world_size,
                                     f'a collective at meta-step {trainer.global_step}') from e
        if self.config.average_alpha_tasks and self._episodic is not None:
            tasks_from = self._episodic.val_tasks or self._episodic.train_tasks
            tasks = [tasks_from.sample() for _ in range(self.config.average_alpha_tasks)]
            self.oneshot_module.average_alpha_over_tasks(tasks, self.config.adaptation_steps)

    # ---- results -------------------------------------------------------------------------------------
    @property
    def oneshot_module(self) -> BaseSearchModule:  # type: ignore[override]
        return super().oneshot_module  # type: ignore[return-value]

    def export_sample(self) -> dict[str, Any]:
        """The most probable architecture as an NNI sample (of the task-averaged alpha, if there is one)."""
        module = self.oneshot_module
        if module.averaged_alpha is None:
            return module.export()
        with self._averaged_alpha(module):
            return module.export()

    def export_probs(self) -> dict[str, dict[str, float]]:
        """Probability of every operation (and ``none``) on every edge: ``{'normal/3_1': {'sep_conv_3x3': p}}``."""
        module = self.oneshot_module
        if module.averaged_alpha is None:
            return module.export_probs()
        with self._averaged_alpha(module):
            return module.export_probs()

    @staticmethod
    @contextlib.contextmanager
    def _averaged_alpha(module: BaseSearchModule) -> Iterator[None]:
        """Put the task-averaged alpha (paper section 5.2) in the cells for the block, then restore it."""
        averaged = cast(dict[str, torch.Tensor], module.averaged_alpha)
        saved = {label: alpha.detach().clone() for label, alpha in module.alphas().items()}
        alphas = module.alphas()
        try:
            with torch.no_grad():
                for label, alpha in alphas.items():
                    alpha.copy_(averaged[label])
            yield
        finally:
            with torch.no_grad():
                for label, alpha in alphas.items():
                    alpha.copy_(saved[label])

    def ranked_models(self, top_k: int = 1) -> list[tuple[dict[str, Any], float]]:
        """The ``top_k`` best distinct architectures with their scores, best first.

        Ranked by the module's performance predictor when it has one for the current dataset, else by
        their log-probability under alpha (the task-averaged alpha, if there is one); the first is
        :meth:`export_sample`'s architecture when ranked by alpha.
        """
        top_k = check_top_k(top_k)
        module = self.oneshot_module
        shapes = cell_shapes(module.cells())
        choices = plain_choices(self.supernet, module.alphas(), [shape.label for shape in shapes])
        if choices is None:  # a choice kind the ranking does not enumerate: the most probable one only
            if top_k > 1:
                raise TypeError('export_top_models(top_k > 1) ranks DARTS-style cells and single-valued choices '
                                '(LayerChoice, Repeat depth, nni.choice); this space also has multi-input or '
                                'NNI-cell choices. Use top_k=1 (export_sample) or export_probs.')
            return [(self.export_sample(), 0.0)]
        if isinstance(module, ZeroShotModule):
            return module.ranked(top_k, seed=0 if self.seed is None else self.seed)
        with self._averaged_alpha(module) if module.averaged_alpha is not None else contextlib.nullcontext():
            return rank_architectures(shapes, module.alphas(), top_k, module.architecture_scorer(), choices=choices)

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
        conditioning = module.conditioning_state() if isinstance(module, ConditionedReptileModule) else None
        return build_prior(self.supernet, module.alphas(), config=self.config.to_dict(), tasks=self._task_config,
                           meta=meta, conditioning=conditioning)

    def save_prior(self, path: str | os.PathLike) -> Path:
        """Write the current prior atomically (refused if any value is NaN/inf)."""
        return save_prior(self.prior_dict(), path)


def _global_step(module: BaseSearchModule) -> int:
    """Meta-steps taken so far (0 for a supernet that never ran under a trainer)."""
    try:
        return int(module.trainer.global_step)
    except RuntimeError:  # Lightning: "not attached to a Trainer"
        return 0
