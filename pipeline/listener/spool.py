"""The durable spool: where every received instance is on disk before we answer Success.

Layout under the spool root (all created on demand)::

    studies/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm   instances to process
    quarantine/<StudyInstanceUID>/<SOPInstanceUID>.dcm (+ .reason.txt)    parsed, but unusable
    results/<StudyInstanceUID>/                                         run_study outputs (report.json, sr.dcm...)
    state.sqlite3                                                       study / job / outbox state

Writes are crash-safe: data goes to a hidden temporary file in the destination folder, is fsync'ed, renamed
over the final name (atomic on POSIX), and the folder is fsync'ed; folders created on the way are fsync'ed in
their parents too. After :meth:`Spool.store` returns, the instance survives a kill -9 or a power cut.
UIDs become file names only after :func:`clean_uid` has checked that they are UIDs (digits and dots), so a
hostile value cannot escape the spool.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import ConfigError, InputError

logger = logging.getLogger(__name__)

STUDIES_DIR = "studies"
QUARANTINE_DIR = "quarantine"
RESULTS_DIR = "results"
STATE_DB = "state.sqlite3"
LOCK_FILE = ".lock"
SUFFIX = ".dcm"
_TMP_MARK = ".tmp-"

_UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def clean_uid(value: object, what: str) -> str:
    """Return ``value`` as a UID string fit to be a file name, or raise :class:`InputError`.

    Trailing padding (space / NUL) is removed. A UID is at most 64 characters of digits and dots, with no empty
    component. Leading zeros in a component are tolerated (some scanners write them; they are harmless here).
    """
    text = str(value if value is not None else "").strip(" \0")
    if not text:
        raise InputError(f"{what} is missing")
    if len(text) > 64 or not _UID_RE.match(text):
        raise InputError(f"{what} {uid_for_log(text)} is not a DICOM UID (digits and dots, at most 64 characters)")
    return text


def uid_for_log(value: object) -> str:
    """A UID as it may appear in a log line or an error: itself when it is a valid UID, else a short hash.

    An invalid "UID" can hold any text a sender put there (a name, an accession number): it is never written out,
    only ``<invalid UID sha256:1a2b3c4d5e6f, 23 chars>``, enough to match two log lines about the same value.
    """
    text = str(value if value is not None else "").strip(" \0")
    if text and len(text) <= 64 and _UID_RE.match(text):
        return text
    digest = hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:12]
    return f"<invalid UID sha256:{digest}, {len(text)} chars>"


@dataclass(frozen=True)
class InstanceKey:
    """The identity of one received instance (all UIDs already checked by :func:`clean_uid`)."""

    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str = ""


@dataclass(frozen=True)
class StoredInstance:
    """What :meth:`Spool.store` wrote."""

    key: InstanceKey
    path: Path
    sha256: str
    size_bytes: int
    existed: bool  # a file of that SOP Instance was already there (it has been replaced)
    same_content: bool  # ... and it held exactly the same bytes
    quarantined: bool = False


class Spool:
    """Files of one listener (see the module docstring for the layout)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        for sub in (STUDIES_DIR, QUARANTINE_DIR, RESULTS_DIR):
            _makedirs_durable(self.root / sub)
        self._dir_lock = threading.Lock()
        self._lock_fd: int | None = None

    # ------------------------------------------------------------------ exclusive use
    def lock(self) -> None:
        """Take the spool for this process (``flock`` on ``.lock``; released when the process dies).

        Raises
        ------
        ConfigError
            Another listener holds it.
        """
        import fcntl

        fd = os.open(self.root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise ConfigError(
                f"{self.root}: spool in use by another listener (pid {holder}); stop it, or give this one its own "
                "storage.spool_dir"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # ------------------------------------------------------------------ paths
    @property
    def db_path(self) -> Path:
        return self.root / STATE_DB

    def study_dir(self, study_uid: str) -> Path:
        return self.root / STUDIES_DIR / clean_uid(study_uid, "StudyInstanceUID")

    def results_dir(self, study_uid: str) -> Path:
        return self.root / RESULTS_DIR / clean_uid(study_uid, "StudyInstanceUID")

    def quarantine_dir(self, study_uid: str) -> Path:
        return self.root / QUARANTINE_DIR / clean_uid(study_uid, "StudyInstanceUID")

    def instance_path(self, key: InstanceKey) -> Path:
        return self.study_dir(key.study_uid) / key.series_uid / f"{key.sop_uid}{SUFFIX}"

    # ------------------------------------------------------------------ writing
    def store(self, key: InstanceKey, data: bytes, *, quarantine_reason: str | None = None) -> StoredInstance:
        """Write one instance (a complete DICOM Part 10 file in ``data``) durably.

        A second copy of the same SOP Instance replaces the first atomically (``existed`` / ``same_content``
        tell the caller whether it changed). With ``quarantine_reason`` the file goes to ``quarantine/`` with
        the reason beside it instead of the study folder, so it is kept but never processed.

        Raises
        ------
        OSError
            The file could not be written durably (disk full, permissions...): the caller must not answer
            Success.
        """
        digest = hashlib.sha256(data).hexdigest()
        if quarantine_reason is not None:
            path = self.quarantine_dir(key.study_uid) / f"{key.sop_uid}{SUFFIX}"
        else:
            path = self.instance_path(key)
        with self._dir_lock:
            _makedirs_durable(path.parent)
        existed = path.exists()
        same = existed and _sha256_file(path) == digest
        atomic_write(path, data)
        if quarantine_reason is not None:
            atomic_write(path.with_suffix(".reason.txt"), (quarantine_reason.strip() + "\n").encode("utf-8"))
        return StoredInstance(key, path, digest, len(data), existed, same, quarantine_reason is not None)

    # ------------------------------------------------------------------ reading / maintenance
    def free_mb(self) -> float:
        """Free space for an unprivileged writer on the spool's file system, in MiB."""
        return shutil.disk_usage(self.root).free / (1024 * 1024)

    def scan(self) -> Iterator[tuple[str, str, str, Path]]:
        """Every instance file under ``studies/`` as ``(study_uid, series_uid, sop_uid, path)``.

        Temporary files and names that are not UIDs are skipped (and logged).
        """
        base = self.root / STUDIES_DIR
        for study in sorted(base.iterdir()) if base.is_dir() else []:
            if not study.is_dir():
                continue
            for series in sorted(study.iterdir()):
                if not series.is_dir():
                    continue
                for f in sorted(series.iterdir()):
                    if f.name.startswith(".") or not f.name.endswith(SUFFIX):
                        continue
                    try:
                        parts = tuple(
                            clean_uid(p, "spool path") for p in (study.name, series.name, f.name[: -len(SUFFIX)])
                        )
                    except InputError:
                        logger.warning("spool: ignoring %s (its name is not study/series/SOP UIDs)", f)
                        continue
                    yield parts[0], parts[1], parts[2], f

    def remove_temp_files(self) -> int:
        """Delete temporary files left by an interrupted write (they were never acknowledged)."""
        n = 0
        for dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                if name.startswith(".") and _TMP_MARK in name:
                    try:
                        os.unlink(os.path.join(dirpath, name))
                        n += 1
                    except OSError as exc:
                        logger.warning("spool: cannot remove temporary file %s: %s", name, exc.strerror)
        return n

    def remove_study(self, study_uid: str) -> None:
        """Delete a study's instances, quarantined files and results (operator purge)."""
        for d in (self.study_dir(study_uid), self.quarantine_dir(study_uid), self.results_dir(study_uid)):
            if d.exists():
                shutil.rmtree(d)
        fsync_dir(self.root / STUDIES_DIR)


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that after return it is complete and durable, and never half-written."""
    path = Path(path)
    tmp = path.parent / f".{path.name}{_TMP_MARK}{os.getpid()}-{threading.get_ident()}-{time.monotonic_ns()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    try:
        try:
            view = memoryview(data)
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


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _makedirs_durable(path: Path) -> None:
    """``mkdir -p`` that also fsyncs the parent of every folder it creates."""
    missing = []
    p = Path(path)
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=0o750)
        except FileExistsError:
            continue
        os.chmod(d, 0o750)  # owner and group only, whatever the umask (the spool holds patient images)
        fsync_dir(d.parent)


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
