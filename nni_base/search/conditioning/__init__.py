"""Dataset-conditioned priors (MetaD2A inside BASE): set encoder → α offset, meta performance predictor, zero-shot.

Layout (small files, in workflow order): :mod:`.encoder` (support set → encoding), :mod:`.generator`
(encoding → α offset), :mod:`.predictor` (encoding, architecture → accuracy; the meta-step's records),
:mod:`.conditioner` (the bundle and its plain-tensor form in a prior file), :mod:`.module`
(:class:`ConditionedReptileModule`, meta-training), :mod:`.zero_shot` (new dataset → top-k architectures),
:mod:`.zero_shot_module` (the same inside an NNI experiment, ``BaseStrategy(zero_shot=True)``),
:mod:`.trained_predictor` (after meta-training: refit the predictor on architectures trained from scratch).
"""

from .conditioner import Conditioner
from .encoder import SetEncoder, image_features
from .generator import AlphaOffsetGenerator
from .module import ConditionedReptileModule
from .predictor import PerformancePredictor, arch_features
from .zero_shot import ZeroShotResult, zero_shot
from .zero_shot_module import ZeroShotModule

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
