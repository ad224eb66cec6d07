"""Atomic file writes: a reader never sees a half-written JSON, text, checkpoint or picture file.

Every writer here goes through :func:`write_atomic`; the others only say how to fill the temporary file. The
atomic rename replaces whatever is at the path, so :func:`check_file_target` refuses, before anything is
written, a path that names a directory, device node, FIFO or socket (as root, ``/dev/full`` would otherwise
become a regular file); :func:`check_output_dir` does the same for an output folder, so a run given such a
path up front stops before it trains.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

__all__ = [
    'UnusablePathError',
    'check_file_target',
    'check_output_dir',
    'describe_path',
    'write_atomic',
    'write_json',
    'write_text',
    'write_torch',
]


class UnusablePathError(OSError):
    """A path cannot be used as asked: a directory, device node, FIFO or socket where a regular file is read or
    written, a file where a folder must be, or a folder that cannot be written. Raised before anything is read or
    written."""


def describe_path(path: str | os.PathLike) -> str | None:
    """What ``path`` is, in words (``'a regular file'``, ``'a directory'``, ``'a FIFO (named pipe)'``, ...,
    ``'a symbolic link to a character device (/dev/full)'``); None when nothing is there (a dangling link too)."""
    path = Path(path)
    try:
        target = os.stat(path)  # follows links: what a write through the path would meet
    except (FileNotFoundError, NotADirectoryError):
        return None
    kind = _kind(target.st_mode)
    if path.is_symlink():
        return f'a symbolic link to {kind} ({os.path.realpath(path)})'
    return kind


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISREG, 'a regular file'),
        (stat.S_ISDIR, 'a directory'),
        (stat.S_ISCHR, 'a character device'),
        (stat.S_ISBLK, 'a block device'),
        (stat.S_ISFIFO, 'a FIFO (named pipe)'),
        (stat.S_ISSOCK, 'a socket'),
    ):
        if test(mode):
            return name
    return 'not a regular file'


def check_file_target(path: str | os.PathLike, what: str = 'file', *, suggest: str | None = None) -> Path:
    """Refuse a path :func:`write_atomic` must not write, before anything is written; returns it as a ``Path``.

    Refused: something other than a regular file at ``path`` (following links), a file (or other non-folder)
    where one of its folders must be, a folder that cannot be written. A missing path or a dangling link is fine.
    ``what`` names the file in the message; ``suggest`` is a file name to propose inside a directory given
    by mistake.

    Raises
    ------
    UnusablePathError
        Saying what the path is and what to pass instead.
    """
    path = Path(path)
    kind = describe_path(path)
    if kind is not None and not os.path.isfile(path):
        inside = f', e.g. {path / suggest}' if suggest and os.path.isdir(path) else ''
        raise UnusablePathError(
            f'{path} is {kind}, not a regular file: refusing to write the {what} there (the write would replace '
            f'it). Nothing was written; give the path of a regular file or of one that does not exist yet{inside}.'
        )
    _check_folder(path.parent, f'the {what} to {path}')
    return path


def check_output_dir(
    path: str | os.PathLike,
    what: str = 'output folder',
    *,
    files: tuple[str, ...] = (),
    folders: tuple[str, ...] = (),
) -> Path:
    """Refuse an output folder a run cannot write, before the run starts; returns it as a ``Path``.

    The folder itself, its ``files`` (as :func:`check_file_target`) and its sub-``folders`` are checked; nothing
    is created.

    Raises
    ------
    UnusablePathError
        Saying what the path is and what to pass instead.
    """
    path = Path(path)
    kind = describe_path(path)
    if kind is not None and not os.path.isdir(path):
        raise UnusablePathError(
            f'Cannot use {path} as the {what}: it is {kind}, not a folder. Nothing was written; give a folder, or '
            'the path of one that does not exist yet (it is created).'
        )
    _check_folder(path, f'into the {what} {path}')
    for name in folders:
        inner = describe_path(path / name)
        if inner is not None and not os.path.isdir(path / name):
            raise UnusablePathError(
                f'Cannot write into {path / name} (part of the {what}): it is {inner}, not a folder. Nothing was '
                f'written; move it away or choose another {what}.'
            )
    for name in files:
        check_file_target(path / name, f'{name} of the {what}')
    return path


def _check_folder(folder: Path, writing: str) -> None:
    """Refuse writing ``writing`` when the nearest existing folder of ``folder`` is a file or cannot be written."""
    existing = folder
    while describe_path(existing) is None and existing != existing.parent:
        existing = existing.parent
    if not os.path.isdir(existing):
        raise UnusablePathError(
            f'Cannot write {writing}: {existing} is {describe_path(existing)}, not a folder, so nothing can be '
            'created under it. Nothing was written; choose a path under a folder.'
        )
    if not os.access(existing, os.W_OK | os.X_OK):  # also False on a read-only file system, even as root
        raise UnusablePathError(
            f'Cannot write {writing}: the folder {existing} is not writable (permissions or a read-only file '
            'system). Nothing was written; choose a folder you can write.'
        )


def write_atomic(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, flush it to disk, then rename it over ``path``.

    A ``path`` that is a symbolic link is written through: its target is replaced and the link kept.

    The rename is atomic on POSIX file systems and the data is on disk before it, so after a crash ``path``
    holds either the old or the new file; on error the temporary file is removed and ``path`` is untouched.
    Refused with :class:`UnusablePathError` before anything is written: a ``path`` that names a directory, device
    node, FIFO or socket (the rename would replace it), or lies under a file (:func:`check_file_target`).
    """
    path = check_file_target(path)
    if path.is_symlink():  # a link to a regular file (or a dangling one): write through it, keep the link
        target = check_file_target(os.path.realpath(path))
    else:
        target = path
        path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{target.name}.', suffix='.tmp', dir=target.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        with open(tmp, 'rb') as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the mode open() would
        check_file_target(target)  # again: writing can take long, and something else may have appeared there
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    return write_atomic(path, lambda tmp: tmp.write_text(text))


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """Write ``data`` as indented JSON to ``path`` atomically."""
    return write_text(path, json.dumps(data, indent=2) + '\n')


def write_torch(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj)`` to ``path`` atomically."""

    def save(tmp: Path) -> None:
        with open(tmp, 'wb') as f:  # a file object, not a path: torch.save then writes through this one handle
            torch.save(obj, f)

    return write_atomic(path, save)
