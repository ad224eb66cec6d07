"""Model space for multi-resolution BASE meta-training (32x32, 64x64 and 224x224 tasks).

The class lives in the installed package, :mod:`nni_base.space.multires`; this module is where the
repository's search-space files are, so ``from search_spaces.multires import MultiResolutionDartsSpace``
works from the repository root as well::

    from search_spaces.multires import MultiResolutionDartsSpace
    space = MultiResolutionDartsSpace(width=16, num_cells=8, num_classes=10)   # stems for 32, 64, 224
"""

from nni_base.space.multires import MultiResolutionDartsSpace, ResolutionStem

__all__ = ['MultiResolutionDartsSpace', 'ResolutionStem']
