"""The listener's state: studies, their instances, jobs and the export outbox, in one SQLite database.

SQLite in WAL mode with ``synchronous=FULL``: every committed transaction is on disk, a crash leaves the
database at the last commit, and the operator's ``spine-assess queue`` commands can read and change it while
the listener runs (one writer at a time; each side waits up to ``busy_timeout`` for the other).

State machine of a study (``studies.status``)::

    (new instance) --> RECEIVING --(no new instance for stable_seconds)--> RUNNING --ok--> DONE
                          ^   ^                                             |  |
                          |   +---- new/changed instance during the run ----+  +--failed--> RETRY_WAIT --due--> RUNNING
                          |                                                    +--failed, attempts used--> DEAD
                          +---- new/changed instance when DONE / DEAD / RETRY_WAIT (one re-run)
    QUEUED: run as soon as a worker is free (operator retry; a run interrupted by a listener restart).

``change_seq`` counts new or changed instances of the study; a run records the ``change_seq`` it started
from (``run_seq``), so instances that arrive while it runs are never silently left out: the study goes back to
RECEIVING and runs again once stable. A duplicate with identical bytes changes nothing (counted once).

Outbox: one row per result file x destination and run (``outbox.status`` PENDING -> DELIVERED, or DEAD after
``max_attempts``; rows of an older run are SUPERSEDED when a re-run's results replace them). Rows are created
in the same transaction that marks the study DONE, so finished results are never left unsent.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, fields
from enum import StrEnum
from pathlib import Path

from pipeline.errors import PipelineError

SCHEMA_VERSION = 1


class StudyStatus(StrEnum):
    RECEIVING = "receiving"
    QUEUED = "queued"
    RUNNING = "running"
    RETRY_WAIT = "retry_wait"
    DONE = "done"
    DEAD = "dead"


class OutboxStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"
    SUPERSEDED = "superseded"


@dataclass(frozen=True)
class StudyRow:
    study_uid: str
    status: StudyStatus
    n_instances: int
    n_quarantined: int
    change_seq: int
    run_seq: int
    first_arrival: float | None
    last_arrival: float | None
    stable_since: float | None
    attempts: int
    runs: int
    next_attempt_at: float | None
    last_error: str | None
    out_dir: str | None
    runtime_s: float | None
    run_started: float | None
    run_finished: float | None
    updated: float


@dataclass(frozen=True)
class OutboxRow:
    id: int
    study_uid: str
    run: int
    destination: str
    path: str
    kind: str
    status: OutboxStatus
    attempts: int
    next_attempt_at: float
    last_error: str | None
    created: float
    delivered: float | None


@dataclass(frozen=True)
class ExportItem:
    """One file to send to one destination."""

    destination: str
    path: str
    kind: str  # sr, seg, sc


_SCHEMA = """
CREATE TABLE IF NOT EXISTS studies(
    study_uid TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    n_instances INTEGER NOT NULL DEFAULT 0,
    n_quarantined INTEGER NOT NULL DEFAULT 0,
    change_seq INTEGER NOT NULL DEFAULT 0,
    run_seq INTEGER NOT NULL DEFAULT 0,
    first_arrival REAL,
    last_arrival REAL,
    stable_since REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    runs INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL,
    last_error TEXT,
    out_dir TEXT,
    runtime_s REAL,
    run_started REAL,
    run_finished REAL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS instances(
    path TEXT PRIMARY KEY,
    study_uid TEXT NOT NULL,
    series_uid TEXT NOT NULL,
    sop_uid TEXT NOT NULL,
    sop_class_uid TEXT,
    sha256 TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    received REAL NOT NULL,
    calling_ae TEXT
);
CREATE INDEX IF NOT EXISTS instances_study ON instances(study_uid);
CREATE TABLE IF NOT EXISTS quarantine(
    path TEXT PRIMARY KEY,
    study_uid TEXT NOT NULL,
    sop_uid TEXT NOT NULL,
    reason TEXT NOT NULL,
    received REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    study_uid TEXT NOT NULL,
    run INTEGER NOT NULL,
    destination TEXT NOT NULL,
    path TEXT NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    last_error TEXT,
    created REAL NOT NULL,
    delivered REAL,
    UNIQUE(study_uid, run, destination, path)
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox(status, next_attempt_at);
CREATE INDEX IF NOT EXISTS outbox_study ON outbox(study_uid);
"""


def backoff_s(attempt: int, base_s: float, cap_s: float) -> float:
    """Delay before retry number ``attempt`` (1-based): ``base * 2**(attempt-1)``, at most ``cap``."""
    return float(min(cap_s, base_s * 2.0 ** max(0, min(attempt - 1, 60))))


class StateError(PipelineError):
    """The state database cannot be opened or is from a newer version."""


class StateDB:
    """Thread-safe access to the state database (one connection, one lock; see the module docstring)."""

    def __init__(self, path: Path, *, busy_timeout_s: float = 30.0) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        try:
            # The database names studies by UID only, but it sits with patient data: owner and group only, whatever
            # the umask. SQLite gives the -wal / -shm files the database file's permissions.
            if not self.path.exists():
                with suppress(FileExistsError):
                    os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640))
            self._conn = sqlite3.connect(
                self.path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StateError(
                    f"{self.path}: state database schema {version} is newer than this program's ({SCHEMA_VERSION}); "
                    "upgrade spine-assess"
                )
            with self._tx() as c:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        c.execute(statement)
                c.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.Error as exc:
            raise StateError(f"{self.path}: cannot open the state database ({exc})") from None

    def close(self) -> None:
        self._conn.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE: take the write lock up front, so no upgrade deadlock)."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _query(self, sql: str, args: Sequence[object] = ()) -> list[tuple]:
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    # ------------------------------------------------------------------ receiving
    def record_instance(
        self,
        *,
        study_uid: str,
        series_uid: str,
        sop_uid: str,
        sop_class_uid: str,
        path: str,
        sha256: str,
        size_bytes: int,
        calling_ae: str,
        now: float,
    ) -> bool:
        """Record an instance written to the spool; returns True if it is new or its content changed."""
        with self._tx() as c:
            old = c.execute("SELECT sha256 FROM instances WHERE path=?", (path,)).fetchone()
            changed = old is None or old[0] != sha256
            if old is None:
                c.execute(
                    "INSERT INTO instances VALUES (?,?,?,?,?,?,?,?,?)",
                    (path, study_uid, series_uid, sop_uid, sop_class_uid, sha256, size_bytes, now, calling_ae),
                )
            elif changed:
                c.execute(
                    "UPDATE instances SET sha256=?, size_bytes=?, received=?, calling_ae=? WHERE path=?",
                    (sha256, size_bytes, now, calling_ae, path),
                )
            self._touch_study(c, study_uid, now, changed=changed, new=old is None)
        return changed

    def record_quarantine(self, *, study_uid: str, sop_uid: str, path: str, reason: str, now: float) -> None:
        with self._tx() as c:
            c.execute("INSERT OR REPLACE INTO quarantine VALUES (?,?,?,?,?)", (path, study_uid, sop_uid, reason, now))
            n = c.execute("SELECT COUNT(*) FROM quarantine WHERE study_uid=?", (study_uid,)).fetchone()[0]
            self._touch_study(c, study_uid, now, changed=False, new=False)
            c.execute("UPDATE studies SET n_quarantined=? WHERE study_uid=?", (n, study_uid))

    def _touch_study(self, c: sqlite3.Connection, study_uid: str, now: float, *, changed: bool, new: bool) -> None:
        row = c.execute("SELECT status FROM studies WHERE study_uid=?", (study_uid,)).fetchone()
        if row is None:
            c.execute(
                "INSERT INTO studies(study_uid, status, n_instances, change_seq, first_arrival, last_arrival, "
                "stable_since, updated) VALUES (?,?,?,?,?,?,?,?)",
                (study_uid, StudyStatus.RECEIVING, int(new), int(changed), now, now, now, now),
            )
            return
        status = StudyStatus(row[0])
        c.execute(
            "UPDATE studies SET n_instances=n_instances+?, change_seq=change_seq+?, last_arrival=?, "
            "stable_since=?, updated=? WHERE study_uid=?",
            (int(new), int(changed), now, now, now, study_uid),
        )
        if changed and status is not StudyStatus.RUNNING and status is not StudyStatus.RECEIVING:
            # A late or changed instance: process the study again once it is stable (one re-run).
            reset = status in (StudyStatus.DONE, StudyStatus.DEAD)
            c.execute(
                "UPDATE studies SET status=?, next_attempt_at=NULL"
                + (", attempts=0" if reset else "")
                + " WHERE study_uid=?",
                (StudyStatus.RECEIVING, study_uid),
            )

    # ------------------------------------------------------------------ scheduling
    def due_studies(self, now: float, stable_seconds: float, limit: int) -> list[StudyRow]:
        """Studies to run now, oldest first: QUEUED, RECEIVING and quiet for ``stable_seconds``, due retries."""
        rows = self._query(
            "SELECT * FROM studies WHERE status=? OR (status=? AND stable_since<=?) "
            "OR (status=? AND next_attempt_at<=?) ORDER BY COALESCE(next_attempt_at, last_arrival) LIMIT ?",
            (
                StudyStatus.QUEUED,
                StudyStatus.RECEIVING,
                now - stable_seconds,
                StudyStatus.RETRY_WAIT,
                now,
                limit,
            ),
        )
        return [_study(r) for r in rows]

    def start_run(self, study_uid: str, now: float) -> StudyRow | None:
        """Mark a due study RUNNING (attempts + 1, inputs = current ``change_seq``); None if it is not due any more."""
        with self._tx() as c:
            row = c.execute("SELECT status FROM studies WHERE study_uid=?", (study_uid,)).fetchone()
            if row is None or StudyStatus(row[0]) not in (
                StudyStatus.QUEUED,
                StudyStatus.RECEIVING,
                StudyStatus.RETRY_WAIT,
            ):
                return None
            c.execute(
                "UPDATE studies SET status=?, attempts=attempts+1, run_seq=change_seq, run_started=?, "
                "next_attempt_at=NULL, updated=? WHERE study_uid=?",
                (StudyStatus.RUNNING, now, now, study_uid),
            )
            return _study(c.execute("SELECT * FROM studies WHERE study_uid=?", (study_uid,)).fetchone())

    def finish_run(
        self,
        study_uid: str,
        *,
        ok: bool,
        error: str | None,
        out_dir: str | None,
        runtime_s: float | None,
        now: float,
        max_attempts: int,
        retry_backoff_s: float,
        retry_backoff_max_s: float,
        exports: Iterable[ExportItem] = (),
    ) -> StudyStatus | None:
        """Record the outcome of a run and, if the study is DONE, its exports (same transaction).

        Returns the new status, or None if the study was not RUNNING (purged by an operator meanwhile).
        """
        with self._tx() as c:
            row = c.execute("SELECT * FROM studies WHERE study_uid=?", (study_uid,)).fetchone()
            if row is None or StudyStatus(row[1]) is not StudyStatus.RUNNING:
                return None
            study = _study(row)
            common: dict[str, object] = dict(
                run_finished=now, runtime_s=runtime_s, updated=now, last_error=None if ok else error
            )
            if ok:
                common["out_dir"] = out_dir
            extra: dict[str, object]
            if study.change_seq != study.run_seq:
                # Instances arrived while it ran: its results are already stale. Run again once stable.
                status, extra = StudyStatus.RECEIVING, dict(attempts=0, next_attempt_at=None)
            elif ok:
                status, extra = StudyStatus.DONE, dict(runs=study.runs + 1, next_attempt_at=None)
            elif study.attempts >= max_attempts:
                status, extra = StudyStatus.DEAD, dict(next_attempt_at=None)
            else:
                delay = backoff_s(study.attempts, retry_backoff_s, retry_backoff_max_s)
                status, extra = StudyStatus.RETRY_WAIT, dict(next_attempt_at=now + delay)
            values = {"status": str(status), **common, **extra}
            c.execute(
                "UPDATE studies SET " + ", ".join(f"{k}=?" for k in values) + " WHERE study_uid=?",
                (*values.values(), study_uid),
            )
            if status is StudyStatus.DONE:
                run = study.runs + 1
                c.execute(
                    "UPDATE outbox SET status=? WHERE study_uid=? AND status=?",
                    (OutboxStatus.SUPERSEDED, study_uid, OutboxStatus.PENDING),
                )
                c.executemany(
                    "INSERT OR IGNORE INTO outbox(study_uid, run, destination, path, kind, status, next_attempt_at, "
                    "created) VALUES (?,?,?,?,?,?,?,?)",
                    [(study_uid, run, e.destination, e.path, e.kind, OutboxStatus.PENDING, now, now) for e in exports],
                )
            return status

    def due_exports(self, now: float, limit: int = 1000) -> list[OutboxRow]:
        rows = self._query(
            "SELECT * FROM outbox WHERE status=? AND next_attempt_at<=? ORDER BY id LIMIT ?",
            (OutboxStatus.PENDING, now, limit),
        )
        return [_outbox(r) for r in rows]

    def export_done(
        self,
        results: dict[int, str | None],
        *,
        now: float,
        max_attempts: int,
        retry_backoff_s: float,
        retry_backoff_max_s: float,
    ) -> None:
        """Record send attempts: ``{outbox id: None (delivered) or the error}``."""
        with self._tx() as c:
            for row_id, error in results.items():
                row = c.execute("SELECT status, attempts FROM outbox WHERE id=?", (row_id,)).fetchone()
                if row is None or OutboxStatus(row[0]) is not OutboxStatus.PENDING:
                    continue  # superseded or purged while it was being sent
                attempts = row[1] + 1
                if error is None:
                    c.execute(
                        "UPDATE outbox SET status=?, attempts=?, delivered=?, last_error=NULL WHERE id=?",
                        (OutboxStatus.DELIVERED, attempts, now, row_id),
                    )
                elif attempts >= max_attempts:
                    c.execute(
                        "UPDATE outbox SET status=?, attempts=?, last_error=? WHERE id=?",
                        (OutboxStatus.DEAD, attempts, error, row_id),
                    )
                else:
                    delay = backoff_s(attempts, retry_backoff_s, retry_backoff_max_s)
                    c.execute(
                        "UPDATE outbox SET attempts=?, last_error=?, next_attempt_at=? WHERE id=?",
                        (attempts, error, now + delay, row_id),
                    )

    # ------------------------------------------------------------------ start-up
    def recover(self, now: float) -> dict[str, int]:
        """After a restart: interrupted runs are queued again; stability clocks restart now.

        A study that was RECEIVING gets ``stable_since = now`` so a sender that was cut off by the restart has
        ``stable_seconds`` to resume before the study is processed.
        """
        with self._tx() as c:
            n_running = c.execute(
                "UPDATE studies SET status=?, updated=? WHERE status=?",
                (StudyStatus.QUEUED, now, StudyStatus.RUNNING),
            ).rowcount
            n_receiving = c.execute(
                "UPDATE studies SET stable_since=MAX(COALESCE(stable_since, 0), ?) WHERE status=?",
                (now, StudyStatus.RECEIVING),
            ).rowcount
        return {"requeued": n_running, "receiving": n_receiving}

    def requeue(self, study_uid: str, now: float) -> bool:
        """A RUNNING study whose run was interrupted by us (shutdown): QUEUED again, the attempt not counted."""
        with self._tx() as c:
            return bool(
                c.execute(
                    "UPDATE studies SET status=?, attempts=MAX(attempts-1, 0), updated=? "
                    "WHERE study_uid=? AND status=?",
                    (StudyStatus.QUEUED, now, study_uid, StudyStatus.RUNNING),
                ).rowcount
            )

    def known_paths(self) -> set[str]:
        return {r[0] for r in self._query("SELECT path FROM instances")}

    def forget_missing(self, paths: Iterable[str], now: float) -> int:
        """Drop instance rows whose file has disappeared from the spool (recounting their studies)."""
        paths = list(paths)
        with self._tx() as c:
            studies = set()
            for p in paths:
                r = c.execute("SELECT study_uid FROM instances WHERE path=?", (p,)).fetchone()
                if r:
                    studies.add(r[0])
                    c.execute("DELETE FROM instances WHERE path=?", (p,))
            for s in studies:
                c.execute(
                    "UPDATE studies SET n_instances=(SELECT COUNT(*) FROM instances WHERE study_uid=?), "
                    "change_seq=change_seq+1, updated=? WHERE study_uid=?",
                    (s, now, s),
                )
        return len(paths)

    # ------------------------------------------------------------------ operator
    def get_study(self, study_uid: str) -> StudyRow | None:
        rows = self._query("SELECT * FROM studies WHERE study_uid=?", (study_uid,))
        return _study(rows[0]) if rows else None

    def list_studies(self, status: StudyStatus | None = None) -> list[StudyRow]:
        if status is None:
            rows = self._query("SELECT * FROM studies ORDER BY first_arrival")
        else:
            rows = self._query("SELECT * FROM studies WHERE status=? ORDER BY first_arrival", (status,))
        return [_study(r) for r in rows]

    def outbox_for(self, study_uid: str) -> list[OutboxRow]:
        return [_outbox(r) for r in self._query("SELECT * FROM outbox WHERE study_uid=? ORDER BY id", (study_uid,))]

    def list_outbox(self, status: OutboxStatus | None = None) -> list[OutboxRow]:
        if status is None:
            return [_outbox(r) for r in self._query("SELECT * FROM outbox ORDER BY id")]
        return [_outbox(r) for r in self._query("SELECT * FROM outbox WHERE status=? ORDER BY id", (status,))]

    def export_counts(self) -> dict[str, dict[str, int]]:
        """``{study_uid: {outbox status: count}}`` of every study's current (not superseded) rows."""
        out: dict[str, dict[str, int]] = {}
        for uid, status, n in self._query(
            "SELECT study_uid, status, COUNT(*) FROM outbox WHERE status!=? GROUP BY study_uid, status",
            (OutboxStatus.SUPERSEDED,),
        ):
            out.setdefault(uid, {})[status] = n
        return out

    def quarantined(self, study_uid: str) -> list[tuple[str, str, str]]:
        """``(sop_uid, path, reason)`` of each quarantined instance of a study."""
        return [
            (r[0], r[1], r[2])
            for r in self._query(
                "SELECT sop_uid, path, reason FROM quarantine WHERE study_uid=? ORDER BY received", (study_uid,)
            )
        ]

    def retry_study(self, study_uid: str, now: float) -> tuple[bool, int]:
        """Operator retry: a DEAD / RETRY_WAIT study is QUEUED with fresh attempts; its DEAD exports are PENDING.

        Returns (study re-queued, number of exports re-queued).
        """
        with self._tx() as c:
            n_study = c.execute(
                "UPDATE studies SET status=?, attempts=0, next_attempt_at=NULL, updated=? "
                "WHERE study_uid=? AND status IN (?,?)",
                (StudyStatus.QUEUED, now, study_uid, StudyStatus.DEAD, StudyStatus.RETRY_WAIT),
            ).rowcount
            n_exports = c.execute(
                "UPDATE outbox SET status=?, attempts=0, next_attempt_at=? WHERE study_uid=? AND status=?",
                (OutboxStatus.PENDING, now, study_uid, OutboxStatus.DEAD),
            ).rowcount
        return bool(n_study), n_exports

    def rerun_study(self, study_uid: str, now: float) -> bool:
        """Operator re-run of a DONE study (e.g. after a configuration change)."""
        with self._tx() as c:
            return bool(
                c.execute(
                    "UPDATE studies SET status=?, attempts=0, next_attempt_at=NULL, updated=? "
                    "WHERE study_uid=? AND status=?",
                    (StudyStatus.QUEUED, now, study_uid, StudyStatus.DONE),
                ).rowcount
            )

    def retry_dead(self, now: float) -> tuple[int, int]:
        """Operator retry of every DEAD study and every DEAD export; returns the two counts."""
        with self._tx() as c:
            n_studies = c.execute(
                "UPDATE studies SET status=?, attempts=0, next_attempt_at=NULL, updated=? WHERE status=?",
                (StudyStatus.QUEUED, now, StudyStatus.DEAD),
            ).rowcount
            n_exports = c.execute(
                "UPDATE outbox SET status=?, attempts=0, next_attempt_at=? WHERE status=?",
                (OutboxStatus.PENDING, now, OutboxStatus.DEAD),
            ).rowcount
        return n_studies, n_exports

    def delete_study(self, study_uid: str) -> bool:
        with self._tx() as c:
            n = c.execute("DELETE FROM studies WHERE study_uid=?", (study_uid,)).rowcount
            for table in ("instances", "quarantine", "outbox"):
                c.execute(f"DELETE FROM {table} WHERE study_uid=?", (study_uid,))
        return bool(n)


def _study(row: tuple) -> StudyRow:
    values = dict(zip([f.name for f in fields(StudyRow)], row, strict=True))
    values["status"] = StudyStatus(values["status"])
    return StudyRow(**values)


def _outbox(row: tuple) -> OutboxRow:
    values = dict(zip([f.name for f in fields(OutboxRow)], row, strict=True))
    values["status"] = OutboxStatus(values["status"])
    return OutboxRow(**values)


def now_s() -> float:
    """Wall-clock seconds (persisted across restarts, unlike a monotonic clock)."""
    return time.time()
