"""Read dataset pickles (CIFAR batches, Imagenet32/64 batches, Mini-ImageNet caches) without running code.

These files hold nothing but numpy arrays, lists, dicts, strings and numbers, so the unpickler refuses every global
except numpy's array reconstruction: a tampered file raises :class:`pickle.UnpicklingError` instead of executing.
"""

from __future__ import annotations

import os
import pickle

__all__ = ['load_array_pickle']

_ALLOWED_GLOBALS = {
    ('numpy', 'ndarray'),
    ('numpy', 'dtype'),
    ('numpy.core.multiarray', '_reconstruct'),
    ('numpy._core.multiarray', '_reconstruct'),
    ('numpy.core.multiarray', 'scalar'),
    ('numpy._core.multiarray', 'scalar'),
    ('collections', 'OrderedDict'),
    ('_codecs', 'encode'),  # protocol-2 pickles written by Python 3 store bytes (and array buffers) through it
}


class _ArrayOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f'refusing to load {module}.{name}: dataset pickles only hold numpy arrays, lists, dicts and numbers'
        )


def load_array_pickle(path: str | os.PathLike) -> object:
    """Unpickle a dataset file, allowing only numpy arrays and plain containers (``latin1`` for Python-2 files)."""
    with open(path, 'rb') as f:
        return _ArrayOnlyUnpickler(f, encoding='latin1').load()
