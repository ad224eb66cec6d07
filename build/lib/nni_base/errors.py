"""Exceptions that name the problem and the fix."""


class PriorMismatchError(ValueError):
    """A prior was saved for another search space (other choices, candidates or tensor shapes)."""


class CorruptPriorError(ValueError):
    """A prior file cannot be read or lacks required entries."""


class MetaTrainingDiverged(FloatingPointError):
    """A loss or parameter became NaN/inf during meta-training; the shared prior was left unchanged."""


class DistributedMetaStepError(RuntimeError):
    """A cross-process all-reduce of a meta-step failed: another rank died or the process group timed out."""


class CorruptCheckpointError(ValueError):
    """A Lightning checkpoint given as ``resume_from`` is damaged (cut off, overwritten) and cannot be resumed."""
