"""The batch folder's durable state: an append-only ledger (JSON lines, fsync per line) and a lock.

``DIR/ledger.jsonl`` holds one line per event: ``{"event": "start", ...}`` when a batch starts,
``{"event": "study", "key", "study_uid", "fingerprint", "status", "error", "runtime_s", "summary"}`` when a
study ends, ``{"event": "end", ...}`` when the batch ends. Lines are appended and fsynced one by one, so
after a crash or power loss the file holds every record written before it, plus at most one torn last
line, which the reader skips (and the writer terminates before appending).

``DIR/.batch.lock`` is held (``flock``) for the whole batch so that two batches cannot write into the same
folder at once; the kernel releases it when the process dies, even on ``kill -9``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError
from pipeline.fsio import fsync_dir

logger = logging.getLogger(__name__)

LEDGER_FILE = "ledger.jsonl"
LOCK_FILE = ".batch.lock"
LEDGER_VERSION = 1


class Ledger:
    """Append-only JSON-lines record of a batch folder (see the module docstring)."""

    def __init__(self, out_root: Path) -> None:
        self.path = Path(out_root) / LEDGER_FILE

    def exists(self) -> bool:
        return self.path.is_file()

    def read(self) -> list[dict[str, Any]]:
        """Every complete record, oldest first (a torn or corrupt line is skipped with a warning)."""
        if not self.path.is_file():
            return []
        records: list[dict[str, Any]] = []
        with self.path.open("r", encoding="utf-8", errors="replace") as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    logger.warning("%s: line %d is incomplete (interrupted write); ignored", self.path, n)
                    continue
                if isinstance(rec, dict):
                    records.append(rec)
        return records

    def last_study_records(self) -> dict[str, dict[str, Any]]:
        """The latest ``study`` record per key."""
        out: dict[str, dict[str, Any]] = {}
        for rec in self.read():
            if rec.get("event") == "study" and isinstance(rec.get("key"), str):
                out[rec["key"]] = rec
        return out

    def append(self, record: dict[str, Any]) -> None:
        """Append one record and fsync it (the call returns when the line is on disk)."""
        line = json.dumps({"v": LEDGER_VERSION, "time": _now(), **record}, sort_keys=True, default=str)
        new = not self.path.exists()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            if size:
                with open(self.path, "rb") as rf:  # a torn last line must not swallow this record
                    rf.seek(size - 1)
                    if rf.read(1) != b"\n":
                        os.write(fd, b"\n")
            os.write(fd, (line + "\n").encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        if new:
            fsync_dir(self.path.parent)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@contextlib.contextmanager
def batch_lock(out_root: Path) -> Iterator[Path]:
    """Hold ``DIR/.batch.lock`` for the duration; ConfigError if another batch holds it.

    The file is removed when the batch ends (while still locked). A process that opened the file just before it
    was removed would lock a deleted file, so a lock counts only if the path still names the locked file.
    """
    path = Path(out_root) / LOCK_FILE
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise ConfigError(
                f"{out_root}: another batch (process {other}) is writing into this folder; wait for it to finish "
                "or choose another --out"
            ) from None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the previous holder removed it as we opened it: take the new one
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # still locked: nobody can take the lock on this file any more
        os.close(fd)  # releases the lock
