"""MetaD2A's half of nni-base: a ground-truth database of trained cells and what learns from it.

Where it sits: the layer above :mod:`nni_base.search` (it reuses the search's task loop and top-k), below the
strategies. Files in workflow order:

* :mod:`.ground_truth` — the database: its spec, file format (versioned, validated), tasks and scores;
  :mod:`.build` — the resumable builder behind ``python -m nni_base.cli.database``;
* :mod:`.zero_shot_models` — zero-shot from the database (a per-edge generator and a ridge predictor over a task
  kernel), :mod:`.zero_shot_module` — the same inside an NNI experiment;
* :mod:`.encoder` (support set → encoding), :mod:`.generator` (encoding → α offset), :mod:`.predictor`
  (encoding, architecture → accuracy), :mod:`.conditioner` (the bundle a conditioned prior stores),
  :mod:`.conditioned_meta_training` (:class:`ConditionedReptileModule`), :mod:`.conditioned_zero_shot` and
  :mod:`.conditioned_zero_shot_module` (α generated from a conditioned prior), :mod:`.trained_predictor`
  (the predictor refitted on cells trained from scratch).
"""

from .conditioned_meta_training import ConditionedReptileModule
from .conditioned_zero_shot import ZeroShotResult, zero_shot
from .conditioned_zero_shot_module import ZeroShotModule
from .conditioner import Conditioner
from .encoder import SetEncoder, image_features
from .generator import AlphaOffsetGenerator
from .predictor import PerformancePredictor, arch_features

__all__ = [
    'AlphaOffsetGenerator',
    'ConditionedReptileModule',
    'Conditioner',
    'PerformancePredictor',
    'SetEncoder',
    'ZeroShotModule',
    'ZeroShotResult',
    'arch_features',
    'image_features',
    'zero_shot',
]
