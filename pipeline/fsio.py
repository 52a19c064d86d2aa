"""Durable file writes shared by run, batch and listener: one way to write a file so it is never half there.

A file is written to a hidden temporary beside its final name (``.<name>.tmp-<pid>-<thread>-<ns>``), fsync'ed,
renamed over the final name (atomic on POSIX) and its folder fsync'ed: after :func:`atomic_write` returns, the
file survives a kill -9 or a power cut, and a reader sees the old content or the new, never a mix. Only a writer
killed mid-write leaves a temporary behind; :func:`remove_stale_temporaries` deletes those of given names when no
other writer is active.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

#: Part of every temporary file's name (the listener's spool recognises its own temporaries by it too).
TMP_MARK = ".tmp-"
#: Files carry patient data (SR / SEG hold the patient's name, ID and birth date; reports the findings): readable
#: by the owner and its group only, whatever the process umask (docs/pacs.md).
FILE_MODE = 0o640

_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries (a rename or a new file in it) to disk."""
    fd = os.open(path, os.O_RDONLY | _O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """fsync every file under ``root``, then every folder (``root`` included)."""
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(dirpath))


def atomic_write(path: Path, data: bytes | str, *, mode: int = FILE_MODE) -> None:
    """Write ``data`` (``str`` as UTF-8) to ``path``: complete and durable when this returns, never half-written.

    The file gets ``mode`` regardless of the umask. On any error the temporary is removed and the previous file,
    if any, is left as it was.
    """
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    tmp = path.parent / f".{path.name}{TMP_MARK}{os.getpid()}-{threading.get_ident()}-{time.monotonic_ns()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        try:
            os.fchmod(fd, mode)  # os.open applies the umask to ``mode``
            view = memoryview(payload)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def _temporary_of(name: str) -> re.Pattern[str]:
    return re.compile(rf"^\.{re.escape(name)}{re.escape(TMP_MARK)}\d+(-\d+)*$")


def remove_stale(folder: Path, is_stale: Callable[[Path], bool]) -> list[Path]:
    """Delete the entries of ``folder`` (not recursive, never through a symlink) that ``is_stale``; return them.

    Folders are removed with their content. For what killed writers leave behind: call it only when no other
    process writes into ``folder`` (a live writer's temporary looks like a dead one's).
    """
    removed: list[Path] = []
    try:
        entries = list(Path(folder).iterdir())
    except FileNotFoundError:
        return removed
    for p in entries:
        if p.is_symlink() or not is_stale(p):
            continue
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed.append(p)
    if removed:
        fsync_dir(Path(folder))
    return removed


def remove_stale_temporaries(folder: Path, names: Iterable[str]) -> list[Path]:
    """Delete the temporaries that killed :func:`atomic_write` calls for the files ``names`` left in ``folder``."""
    patterns = [_temporary_of(n) for n in names]
    return remove_stale(folder, lambda p: p.is_file() and any(pat.match(p.name) for pat in patterns))


__all__ = [
    "FILE_MODE",
    "TMP_MARK",
    "atomic_write",
    "fsync_dir",
    "fsync_tree",
    "remove_stale",
    "remove_stale_temporaries",
]
