"""The durable spool: where every received instance is on disk before we answer Success.

Layout under the spool root (all created on demand)::

    incoming/.<random>.dcm.tmp-<pid>                                    data sets being received (temporary)
    studies/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm   instances to process
    quarantine/<StudyInstanceUID>/<SOPInstanceUID>.dcm (+ .reason.txt)    parsed, but unusable
    results/<StudyInstanceUID>/                                         run_study outputs (report.json, sr.dcm...)
    state.sqlite3                                                       study / job / outbox state

Writes are crash-safe: data goes to a hidden temporary file in the destination folder, is fsync'ed, renamed
over the final name (atomic on POSIX), and the folder is fsync'ed; folders created on the way are fsync'ed in
their parents too. After :meth:`Spool.store` returns, the instance survives a kill -9 or a power cut.
A received data set is written as it arrives to an :class:`IncomingFile` in ``incoming/`` (same file system), and
:meth:`Spool.store_received` fsyncs it and renames it into place, so an instance is never held in memory whole.
UIDs become file names only after :func:`clean_uid` has checked that they are UIDs (digits and dots), so a
hostile value cannot escape the spool.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import re
import shutil
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import ConfigError, InputError
from pipeline.fsio import TMP_MARK, atomic_write, fsync_dir

logger = logging.getLogger(__name__)

INCOMING_DIR = "incoming"
STUDIES_DIR = "studies"
QUARANTINE_DIR = "quarantine"
RESULTS_DIR = "results"
STATE_DB = "state.sqlite3"
LOCK_FILE = ".lock"
SUFFIX = ".dcm"
_TMP_MARK = TMP_MARK

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
        for sub in (INCOMING_DIR, STUDIES_DIR, QUARANTINE_DIR, RESULTS_DIR):
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
        path = self._destination(key, quarantined=quarantine_reason is not None)
        existed = path.exists()
        same = existed and sha256_file(path) == digest
        atomic_write(path, data)
        if quarantine_reason is not None:
            _write_reason(path, quarantine_reason)
        return StoredInstance(key, path, digest, len(data), existed, same, quarantine_reason is not None)

    def _destination(self, key: InstanceKey, *, quarantined: bool) -> Path:
        """Where an instance goes (its series folder, or quarantine), with the folders made durably."""
        path = self.quarantine_dir(key.study_uid) / f"{key.sop_uid}{SUFFIX}" if quarantined else self.instance_path(key)
        with self._dir_lock:
            _makedirs_durable(path.parent)
        return path

    def incoming(self, max_bytes: int) -> IncomingFile:
        """A new file in ``incoming/`` for a data set being received (see :class:`IncomingFile`)."""
        return IncomingFile(self.root / INCOMING_DIR, max_bytes)

    def receive_file(self, src: Path, max_bytes: int) -> IncomingFile:
        """Copy a complete file (e.g. one pynetdicom wrote elsewhere) into ``incoming/``, 1 MiB at a time."""
        incoming = self.incoming(max_bytes)
        try:
            size = os.stat(src).st_size
            if size > max_bytes:  # refused anyway: not worth copying
                incoming.size_bytes, incoming.too_large = size, True
                return incoming
            with open(src, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    incoming.write(chunk)
        except OSError as exc:
            incoming.error = incoming.error or exc
        return incoming

    def store_received(
        self, key: InstanceKey, incoming: IncomingFile, *, quarantine_reason: str | None = None
    ) -> StoredInstance:
        """Move a completely received file into the study (or quarantine) durably, as :meth:`store` does.

        The file is fsync'ed, renamed over the final name (``incoming/`` is on the same file system, so this is
        atomic) and the folder fsync'ed. The caller discards ``incoming`` if this raises.

        Raises
        ------
        OSError
            ``incoming`` is incomplete (its write error, or too large), or it could not be made durable.
        """
        if incoming.error is not None:
            raise incoming.error
        if incoming.too_large:
            raise OSError(errno.EFBIG, f"larger than {incoming.max_bytes} bytes")
        path = self._destination(key, quarantined=quarantine_reason is not None)
        existed = path.exists()
        same = existed and sha256_file(path) == incoming.sha256
        incoming.fsync()
        incoming.close()
        os.replace(incoming.path, path)
        fsync_dir(path.parent)
        if quarantine_reason is not None:
            _write_reason(path, quarantine_reason)
        return StoredInstance(
            key, path, incoming.sha256, incoming.size_bytes, existed, same, quarantine_reason is not None
        )

    def move_to_quarantine(self, key: InstanceKey, src: Path, reason: str) -> Path:
        """Move a file already in the spool (found unreadable at start-up) to ``quarantine/`` with its reason."""
        path = self._destination(key, quarantined=True)
        os.replace(src, path)
        fsync_dir(path.parent)
        fsync_dir(src.parent)
        _write_reason(path, reason)
        return path

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


class IncomingFile:
    """A data set being received, written to ``incoming/`` as its fragments arrive and hashed on the way.

    pynetdicom writes a received C-STORE data set to a temporary file when ``STORE_RECV_CHUNKED_DATASET`` is set;
    the listener gives it one of these instead (:meth:`pipeline.listener.scp.Receiver.open_incoming`), so it has
    the ``name``, ``write``, ``file.flush`` and ``close`` pynetdicom uses. ``write`` never raises: it runs in
    pynetdicom's network thread, where an exception would break the association instead of giving the sender a
    status. Past ``max_bytes`` the file is emptied at once and the rest only counted (``too_large``); an OS error
    (disk full, I/O error) is kept in ``error`` and the rest discarded. The C-STORE handler then refuses the
    instance, or moves the file into place with :meth:`Spool.store_received`. The name is a temporary one, so a
    file left by a crash is removed at start-up (:meth:`Spool.remove_temp_files`).
    """

    def __init__(self, folder: Path, max_bytes: int) -> None:
        self.path = Path(folder) / f".{uuid.uuid4().hex}{SUFFIX}{_TMP_MARK}{os.getpid()}"
        self.max_bytes = max_bytes
        self.size_bytes = 0
        self.too_large = False
        self.error: OSError | None = None
        self._hash = hashlib.sha256()
        self._fd: int | None = None
        try:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        except OSError as exc:
            self.error = exc

    @property
    def name(self) -> str:
        return str(self.path)

    @property
    def file(self) -> IncomingFile:  # pynetdicom flushes ``file`` after each fragment
        return self

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    @property
    def ok(self) -> bool:
        return self.error is None and not self.too_large

    def write(self, data: bytes | bytearray | memoryview) -> int:
        n = len(data)
        self.size_bytes += n
        if not self.ok or self._fd is None:
            return n
        if self.size_bytes > self.max_bytes:
            self.too_large = True
            self._empty()
            return n
        try:
            view = memoryview(data)
            while view:
                view = view[self._write_chunk(view) :]
        except OSError as exc:
            self.error = exc
            self._empty()
            return n
        self._hash.update(data)
        return n

    def _write_chunk(self, data: memoryview) -> int:
        assert self._fd is not None
        return os.write(self._fd, data)

    def _empty(self) -> None:
        """Give the space back at once (a refused transfer may go on for a while)."""
        with contextlib.suppress(OSError):
            if self._fd is not None:
                os.ftruncate(self._fd, 0)

    def flush(self) -> None:
        """Nothing to do: every write goes straight to the operating system."""

    def fsync(self) -> None:
        if self._fd is None:
            raise self.error or OSError(errno.EBADF, "incoming file already closed")
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                os.close(fd)

    def discard(self) -> None:
        """Close and delete the file (nothing happens if :meth:`Spool.store_received` moved it away)."""
        self.close()
        with contextlib.suppress(OSError):
            self.path.unlink(missing_ok=True)


def _write_reason(quarantined: Path, reason: str) -> None:
    """The reason a file was quarantined, in ``<name>.reason.txt`` beside it."""
    atomic_write(quarantined.with_suffix(".reason.txt"), (reason.strip() + "\n").encode("utf-8"))


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


def sha256_file(path: Path) -> str:
    """SHA-256 of a file, read 1 MiB at a time."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
