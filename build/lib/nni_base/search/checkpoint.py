"""Checks of a Lightning checkpoint before a run resumes from it.

A checkpoint that was cut off while it was written or copied (a killed job, a full disk, an interrupted
transfer) fails deep inside torch's zip reader with a message that names neither the file nor a way out.
:func:`check_checkpoint` reads the archive's table and the CRC of every member first (no unpickling), so
``BaseStrategy(resume_from=...)`` refuses such a file with :class:`~nni_base.errors.CorruptCheckpointError`.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

from ..errors import CorruptCheckpointError

__all__ = ['check_checkpoint', 'checked_checkpoint']


def check_checkpoint(path: str | os.PathLike) -> Path:
    """Raise :class:`CorruptCheckpointError` unless ``path`` is a complete ``torch.save`` archive; return the path."""
    path = Path(path)
    fix = (
        'Resume from an earlier checkpoint of the run (ModelCheckpoint(save_top_k=-1) keeps one per epoch), or '
        'start the run again without resume_from.'
    )
    if not path.is_file():
        raise CorruptCheckpointError(f'Cannot resume from {path}: it is not a file. {fix}')
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            damaged = archive.testzip()  # reads every member and compares its CRC
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as e:
        raise CorruptCheckpointError(
            f'Cannot resume from {path}: the checkpoint is damaged or is not a torch.save archive ({e}); it was '
            f'probably cut off while it was written or copied. {fix}'
        ) from e
    if damaged is not None:
        raise CorruptCheckpointError(
            f'Cannot resume from {path}: its entry {damaged!r} fails its checksum (the file '
            f'was changed or damaged after it was written). {fix}'
        )
    if not any(name.endswith('/data.pkl') or name == 'data.pkl' for name in names):
        raise CorruptCheckpointError(
            f'Cannot resume from {path}: the archive holds no torch.save payload (data.pkl); '
            f'it is not a Lightning checkpoint. {fix}'
        )
    return path


def checked_checkpoint(path: str | os.PathLike) -> Path:
    """A ``resume_from`` path that exists and holds a checkpoint, named before Lightning unpickles anything."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f'resume_from={str(path)!r} is not a file: pass the Lightning checkpoint (e.g. last.ckpt) that the '
            'interrupted run wrote.'
        )
    check_checkpoint(path)
    return path
