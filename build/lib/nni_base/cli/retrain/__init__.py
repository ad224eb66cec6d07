"""Retrain an exported architecture from scratch at full size (BASE Appendix A, the DARTS protocol).

The last step of the BASE workflow: meta-train a prior, adapt it to a dataset, export the cells
(an NNI sample), then train that architecture from scratch at full size. Here the sample is built
in retrain mode of NNI's DARTS space (auxiliary tower, drop-path) and trained by a Lightning
``Trainer``, so GPUs and multi-GPU runs come from its ``accelerator`` / ``devices`` flags::

    python -m nni_base.cli.retrain --recipe cifar10 --arch runs/quickstart/arch.json \\
        --data-root ~/data/cifar --output-dir runs/cifar10

Everything a run writes goes under ``--output-dir``::

    arch.json            the architecture being trained (an NNI DARTS sample)
    run.json             the effective recipe, seed and data root (a resumed run must match it)
    model_summary.json   parameters (without / with the auxiliary tower) and MACs of one image
    checkpoints/         last.ckpt (every epoch, for --resume) and best.ckpt (highest val_acc)
    logs/tensorboard/    TensorBoard event files (``tensorboard --logdir runs/cifar10/logs``)
    logs/csv/            the same metrics as CSV
    model.pt             final network weights (state dict), see :func:`load_retrained`
    final.json           final and best validation accuracy, epochs done, wall time

Same seed, same weights on CPU, also across an interruption: data order, augmentation and
drop-path masks are functions of (seed, epoch), and checkpoints hold optimizer and schedule state.
"""

from .module import RetrainModule
from .network import build_network, load_arch, model_summary
from .recipe import RetrainRecipe, load_recipe
from .run import build_datasets, load_retrained, retrain

__all__ = [
    'RetrainModule',
    'RetrainRecipe',
    'build_datasets',
    'build_network',
    'load_arch',
    'load_recipe',
    'load_retrained',
    'main',
    'model_summary',
    'retrain',
]


def main(argv: list[str] | None = None):
    """The command line (``python -m nni_base.cli.retrain``); see :mod:`.__main__`."""
    # Imported on use: loaded with the package, `python -m nni_base.cli.retrain` would warn that it ran twice.
    from .__main__ import main as run_cli

    return run_cli(argv)
