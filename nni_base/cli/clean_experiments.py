"""Clear old NNI experiment folders: ``~/nni-experiments`` gains one per ``NasExperiment`` run and nnictl experiment.

    python -m nni_base.cli.clean_experiments --older-than 7            # lists what would go: deletes nothing
    python -m nni_base.cli.clean_experiments --older-than 7 --delete   # deletes it
    python -m nni_base.cli.clean_experiments --dir /data/nni --older-than 30

Only what NNI made is touched. A folder is NNI's when it holds one of NNI's own files (``checkpoint/config.json``,
``log/experiment.log`` or ``db/nni.sqlite``); its age is that of the newest file in it. Only NNI's own entries
inside it (``checkpoint``, ``db``, ``log``, ``trials``, ``environments``, ``envs``, ``tarball``) are deleted, and
the folder itself only once nothing else is left in it; symbolic links are never followed. An experiment that NNI's
manifest calls running is kept while its process is alive (a one-shot ``NasExperiment`` records none: for a day
after its last write). A deleted experiment also leaves that manifest (``~/nni-experiments/.experiment``, what
``nnictl experiment list`` reads).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import stat
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ['ExperimentFolder', 'NNI_HOME', 'read_manifest', 'find_old_experiments', 'delete_experiment', 'main']

#: NNI's default experiment directory, which also holds its manifest of experiments (``.experiment``).
NNI_HOME = Path.home() / 'nni-experiments'
#: Files only NNI writes in an experiment folder: one-shot and multi-trial NAS, nnictl (its database).
NNI_MARKERS = ('checkpoint/config.json', 'log/experiment.log', 'db/nni.sqlite')
#: What NNI creates inside an experiment folder (NNI's experiment code and its manager's).
NNI_ENTRIES = ('checkpoint', 'db', 'log', 'trials', 'environments', 'envs', 'tarball')
#: Manifest statuses of an experiment that has ended.
ENDED = ('DONE', 'STOPPED', 'ERROR', 'VIEWED')
#: A running one-shot NAS experiment records no process: kept this many days after its last write.
RUNNING_WITHOUT_PID_DAYS = 1.0


@dataclasses.dataclass(frozen=True)
class ExperimentFolder:
    """One NNI experiment folder: its age in days (newest file), its size in bytes, the entries in it that are not
    NNI's (they stay, and so does the folder), and why it stays whole, if it does."""

    path: Path
    age_days: float
    size: int
    others: tuple[str, ...] = ()
    kept_because: str | None = None


def _newest_and_size(folder: Path) -> tuple[float, int]:
    """The newest modification time of anything in ``folder``, and the bytes of NNI's entries (what would go)."""
    newest, size = folder.lstat().st_mtime, 0
    for root, dirs, files in os.walk(folder):  # os.walk does not follow symbolic links by default
        top = Path(root).relative_to(folder).parts
        for name in dirs + files:
            info = os.lstat(os.path.join(root, name))
            newest = max(newest, info.st_mtime)
            nni_entry = (top[0] if top else name) in NNI_ENTRIES
            size += info.st_size if nni_entry and stat.S_ISREG(info.st_mode) else 0
    return newest, size


def _is_nni_folder(folder: Path) -> bool:
    """Holds one of NNI's own files, as a regular file under a real (not linked) sub-folder."""
    for marker in NNI_MARKERS:
        sub, name = marker.split('/')
        try:
            if not (folder / sub).is_symlink() and stat.S_ISREG((folder / sub / name).lstat().st_mode):
                return True
        except OSError:
            continue
    return False


def _others(folder: Path) -> tuple[str, ...]:
    return tuple(sorted(p.name for p in folder.iterdir() if p.name not in NNI_ENTRIES or p.is_symlink()))


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def read_manifest() -> dict[str, Any]:
    """NNI's manifest of experiments (id -> status, pid, logDir, ...), or {} when there is none or it is unreadable."""
    try:
        data = json.loads((NNI_HOME / '.experiment').read_text(encoding='utf-8'))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def find_old_experiments(
    directory: Path | None = None,
    older_than_days: float = 7.0,
    *,
    manifest: Mapping[str, Any] | None = None,
    now: float | None = None,
) -> list[ExperimentFolder]:
    """NNI's experiment folders in ``directory`` whose newest file is older than ``older_than_days``, oldest first;
    one the manifest calls running (see the module's docstring) comes with ``kept_because`` set."""
    directory = NNI_HOME if directory is None else directory
    manifest = read_manifest() if manifest is None else manifest
    now = time.time() if now is None else now
    found = []
    for folder in sorted(directory.iterdir()) if directory.is_dir() else []:
        if folder.name.startswith('.') or folder.is_symlink() or not folder.is_dir() or not _is_nni_folder(folder):
            continue
        newest, size = _newest_and_size(folder)
        age = (now - newest) / 86400
        if age < older_than_days:
            continue
        found.append(ExperimentFolder(folder, age, size, _others(folder), _running(manifest.get(folder.name), age)))
    return sorted(found, key=lambda f: -f.age_days)


def _running(entry: Any, age_days: float) -> str | None:
    """Why the manifest's ``entry`` says the experiment may still run, or None."""
    if not isinstance(entry, dict) or entry.get('status') in (*ENDED, None):
        return None
    status, pid = entry['status'], entry.get('pid')
    if pid is None:
        young = age_days < RUNNING_WITHOUT_PID_DAYS
        return f'NNI lists it as {status} with no process recorded, and it was written today' if young else None
    return f'NNI lists it as {status} and its process {pid} is alive' if _alive(pid) else None


def delete_experiment(folder: Path) -> list[str]:
    """Delete NNI's own entries of ``folder``, then the folder if nothing else is left; the names left in it."""
    for name in NNI_ENTRIES:
        entry = folder / name
        if entry.is_symlink() or not entry.exists():
            continue  # a link is not NNI's: left alone, and never followed
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    left = sorted(p.name for p in folder.iterdir())
    if not left:
        folder.rmdir()
    return left


def _forget(ids: Sequence[str], directory: Path) -> None:
    """Remove the deleted experiments from NNI's manifest (through NNI's own class, under its lock)."""
    if not ids or not (NNI_HOME / '.experiment').exists():
        return
    from nni.tools.nnictl.config_utils import Experiments

    manifest = Experiments(str(NNI_HOME))
    for experiment_id in ids:
        entry = manifest.get_all_experiments().get(experiment_id) or {}
        log_dir = Path(os.path.expanduser(entry.get('logDir') or str(NNI_HOME)))
        if log_dir.resolve() == directory.resolve():  # the same id under another directory is another experiment
            manifest.remove_experiment(experiment_id)


def _size(n: int) -> str:
    return f'{n / 2**20:.1f} MB' if n >= 2**20 else f'{n / 2**10:.0f} KB'


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog='python -m nni_base.cli.clean_experiments', description=__doc__.split('\n')[0])
    p.add_argument('--dir', type=Path, default=NNI_HOME, help=f'the experiment directory (default: {NNI_HOME})')
    p.add_argument(
        '--older-than', type=float, default=7.0, metavar='DAYS', help='age of the newest file in it (default: 7)'
    )
    p.add_argument('--delete', action='store_true', help='delete them (without it: only list them)')
    args = p.parse_args(argv)
    if args.older_than < 0:
        p.error(f'--older-than must be 0 or more days, got {args.older_than:g}')
    if not args.dir.is_dir():
        p.error(f'--dir {args.dir} is not a directory')
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    folders = find_old_experiments(args.dir, args.older_than)
    gone, total = [], 0
    for f in folders:
        if f.kept_because is not None:
            print(f'kept {f.path}: {f.kept_because}')
            continue
        stays = f'; the folder stays, it also holds {", ".join(f.others)}' if f.others else ''
        if not args.delete:
            print(f'would delete {f.path}  ({f.age_days:.0f} days old, {_size(f.size)}{stays})')
        else:
            left = delete_experiment(f.path)
            print(
                f'deleted {f.path}'
                + (f" (NNI's files; the folder stays, it also holds {', '.join(left)})" if left else '')
            )
            gone += [] if left else [f.path.name]
        total += f.size
    count = sum(f.kept_because is None for f in folders)
    where = f'NNI experiment folder{"" if count == 1 else "s"} older than {args.older_than:g} days in {args.dir}'
    if args.delete:
        _forget(gone, args.dir)
        print(f'Deleted {count} {where} ({_size(total)}).')
    elif count:
        print(f'{count} {where} ({_size(total)}); nothing deleted: pass --delete to delete them.')
    else:
        print(f'No {where}.')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
