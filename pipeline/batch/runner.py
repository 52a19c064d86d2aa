"""Running a planned batch: what to (re)do, scheduling, the ledger, summaries, and stopping cleanly.

Durability (see docs/batch.md): every study's output folder is written by ``run_study`` into a temporary
sibling and renamed into place, together with ``job.json`` holding the input fingerprint. So a study
is finished exactly when ``DIR/<study>/job.json`` exists with the planned fingerprint: ``--resume`` trusts
that, not the ledger, and a study whose output landed just before a crash (before its ledger line) is not
redone. The ledger adds what the folders cannot say (failures, run times); the summaries are rebuilt from
both. Leftover temporary folders of killed runs are deleted before anything starts (the batch holds
``DIR/.batch.lock``, so nobody else is writing there).
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import logging
import shutil
import signal
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from pipeline import __version__
from pipeline.batch.executor import Executor
from pipeline.batch.ledger import LEDGER_FILE, LOCK_FILE, Ledger
from pipeline.batch.plan import RESERVED_NAMES, BatchPlan, PlannedStudy, plan_json
from pipeline.batch.progress import Progress
from pipeline.batch.summary import (
    INDEX_HTML,
    PENDING,
    SUMMARY_CSV,
    SUMMARY_JSON,
    counts,
    make_row,
    remove_stale_summary_temporaries,
    write_summary,
)
from pipeline.batch.task import RETRYABLE, Status, StudyTask, TaskOutcome, summarize_report_json
from pipeline.errors import BUG, INPUT, RESOURCE, ConfigError
from pipeline.outdir import check_not_overlapping

if TYPE_CHECKING:
    from pipeline.report.outputs import OutputKind
    from pipeline.segment import Anchor

logger = logging.getLogger("pipeline.batch")

SUMMARY_INTERVAL_S = 2.0
# Files the batch writes at the top of DIR (besides the ledger and the lock): never over someone else's.
BATCH_ROOT_FILES = frozenset({SUMMARY_CSV, SUMMARY_JSON, INDEX_HTML})


class Mode(StrEnum):
    NEW = "new"  # the output folder holds no batch results yet
    RESUME = "resume"  # keep finished studies whose inputs did not change
    FORCE = "force"  # redo everything


@dataclass(frozen=True)
class BatchSettings:
    """What every study of the batch is run with (part of each study's fingerprint, with the version)."""

    outputs: frozenset[OutputKind]
    anchor: Anchor | None
    config_dir: Path
    config_sha256: str
    timeout_s: float | None
    memory_limit_mb: int | None


@dataclass
class StopRequest:
    """Set from a signal handler: 1st request = finish running studies, 2nd (or ``now``) = kill them."""

    count: int = 0
    signum: int | None = None
    now: bool = False

    def request(self, signum: int | None = None, *, now: bool = False) -> None:
        self.count += 1
        self.signum = self.signum or signum
        self.now = self.now or now


@dataclass
class BatchResult:
    rows: list[dict[str, Any]]
    interrupted: bool
    elapsed_s: float
    exit_code: int
    counts: dict[str, int] = field(default_factory=dict)


# --------------------------------------------------------------------------- the output folder
def check_folders(root: Path, out_root: Path) -> None:
    """Refuse overlapping ROOT and DIR (outputs contain DICOM files that would be read as studies): the one rule of
    :func:`pipeline.outdir.check_not_overlapping`, which raises a ConfigError (usage error, exit 2)."""
    check_not_overlapping(root, out_root)


def prepare_out_dir(out_root: Path, mode: Mode) -> None:
    """Create DIR, or check that ``mode`` fits what is already in it (ConfigError with the fix otherwise)."""
    out_root = Path(out_root)
    if out_root.exists() and not out_root.is_dir():
        raise ConfigError(f"--out {out_root} is a file; give a folder")
    if out_root.is_dir():
        entries = [p for p in out_root.iterdir() if p.name != LOCK_FILE]
        is_batch = (out_root / LEDGER_FILE).is_file()
        if is_batch and mode is Mode.NEW:
            done = sum(1 for r in Ledger(out_root).last_study_records().values() if r.get("status") == Status.OK)
            raise ConfigError(
                f"{out_root} already holds the results of a batch ({done} studies finished); add --resume to "
                "continue it (finished studies are kept, changed or unfinished ones are run), or --force to redo "
                "every study"
            )
        if entries and not is_batch and mode is not Mode.FORCE:
            raise ConfigError(
                f"{out_root} is not empty and was not made by spine-assess batch; choose a new or empty folder, or add "
                "--force to write into it anyway (earlier spine-assess outputs in study folders with the same names "
                "are replaced; files spine-assess did not write are never removed)"
            )
        clash = sorted(p.name for p in entries if p.name in BATCH_ROOT_FILES)
        if clash and not is_batch:
            raise ConfigError(
                f"{out_root} holds {', '.join(clash)}, which spine-assess batch did not write and would overwrite; "
                "choose a new or empty folder"
            )
    out_root.mkdir(parents=True, exist_ok=True)


def remove_leftovers(out_root: Path, studies: Iterable[PlannedStudy]) -> int:
    """Delete temporary folders / files of killed runs in DIR and beside every planned output folder."""
    from pipeline.run import remove_stale_temporaries

    out_root = Path(out_root)
    remove_stale_summary_temporaries(out_root)
    parents = {out_root} | {(out_root / s.key).parent for s in studies}
    removed = [p for d in sorted(parents) for p in remove_stale_temporaries(d)]
    for p in removed:
        logger.info("removed %s (left by an interrupted run)", p)
    return len(removed)


# --------------------------------------------------------------------------- what to do
def _job_fingerprint(out_dir: Path) -> str | None:
    from pipeline.run import JOB_FILE

    try:
        job = json.loads((out_dir / JOB_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not (out_dir / "report.json").is_file():
        return None
    fp = job.get("fingerprint") if isinstance(job, dict) else None
    return fp if isinstance(fp, str) else None


def select_work(
    plan: BatchPlan, out_root: Path, mode: Mode, *, retry_failed: bool = False
) -> tuple[list[PlannedStudy], dict[str, dict[str, Any]]]:
    """Split the planned studies into those to run and the rows of those kept from earlier runs.

    With ``Mode.RESUME`` a study is kept when its output folder's ``job.json`` has the planned fingerprint
    (finished with the same inputs), or when its last ledger record is ``failed`` with the same fingerprint
    (the same inputs would fail the same way; ``retry_failed`` runs them again). Timeouts, crashes and
    interrupted or never-finished studies always run again.
    """
    if mode is not Mode.RESUME:
        return list(plan.studies), {}
    last = Ledger(out_root).last_study_records()
    todo: list[PlannedStudy] = []
    kept: dict[str, dict[str, Any]] = {}
    for s in plan.studies:
        rec = last.get(s.key)
        same = rec is not None and rec.get("fingerprint") == s.fingerprint
        out_dir = Path(out_root) / s.key
        if _job_fingerprint(out_dir) == s.fingerprint:
            if same and rec is not None and rec.get("status") == Status.OK:
                summary, runtime = rec.get("summary") or {}, rec.get("runtime_s")
            else:  # finished, but the ledger line was lost (crash right after the rename): read the report
                try:
                    report = json.loads((out_dir / "report.json").read_text(encoding="utf-8"))
                    summary = summarize_report_json(report)
                    runtime = (summary.get("timings_ms") or {}).get("total", 0.0) / 1000.0
                except (OSError, ValueError):
                    todo.append(s)
                    continue
            kept[s.key] = _row(s, Status.OK, summary, runtime, None, from_previous_run=True)
        elif (
            same
            and rec is not None
            and rec.get("status") == Status.FAILED
            and rec.get("error_kind", INPUT) == INPUT  # resource errors and bugs are worth another run
            and not retry_failed
        ):
            kept[s.key] = _row(s, Status.FAILED, {}, rec.get("runtime_s"), rec.get("error"), from_previous_run=True)
        else:
            todo.append(s)
    return todo, kept


def _row(
    s: PlannedStudy,
    status: str,
    summary: dict[str, Any],
    runtime_s: float | None,
    error: str | None,
    *,
    from_previous_run: bool = False,
) -> dict[str, Any]:
    return make_row(
        study=s.key,
        folder=s.folder,
        study_uid=s.study_uid,
        status=status,
        summary=summary,
        runtime_s=runtime_s,
        error=error,
        from_previous_run=from_previous_run,
    )


def make_task(s: PlannedStudy, out_root: Path, settings: BatchSettings) -> StudyTask:
    return StudyTask(
        study_dir=s.study_dir,
        out_dir=(Path(out_root) / s.key).resolve(),
        study_uid=s.study_uid,
        outputs=settings.outputs,
        clinical_path=s.clinical_path,
        anchor=settings.anchor,
        config_dir=settings.config_dir,
        timeout_s=settings.timeout_s,
        memory_limit_mb=settings.memory_limit_mb,
        config_sha256=settings.config_sha256,
        fingerprint=s.fingerprint,
        key=s.key,
    )


# --------------------------------------------------------------------------- running
def run_batch(
    plan: BatchPlan,
    out_root: Path,
    *,
    executor: Executor,
    settings: BatchSettings,
    mode: Mode = Mode.NEW,
    retry_failed: bool = False,
    progress_tty: bool | None = None,
    progress_stream: TextIO | None = None,
    stop: StopRequest | None = None,
    workers_label: str = "",
    retry: RetryPolicy | None = None,
) -> BatchResult:
    """Run the studies of ``plan`` that need running; keep ledger and summaries up to date.

    The caller holds the batch lock (:func:`pipeline.batch.ledger.batch_lock`) and has called
    :func:`prepare_out_dir`. Progress goes to ``progress_stream`` (stderr), as a bar when ``progress_tty``
    (default: when the stream is a terminal), else as log lines. ``stop`` is polled: the first request
    stops scheduling and lets the running studies finish, the second (or ``now``) kills them (outcome
    ``interrupted``, not recorded as finished).
    The executor is shut down before returning.

    A study that fails for a resource reason (disk full, I/O error) or with an unexpected exception (a bug) is
    run again in the same batch after a back-off (``retry``); one whose data is the problem is not. No study is
    started while the output folder's disk has less than ``retry.min_free_mb`` free: the batch waits.

    Returns
    -------
    BatchResult
        ``exit_code`` 0 when every row is ok, 1 when any study failed / timed out / crashed (or a folder had
        no usable study), 130 (SIGINT) or 143 (SIGTERM) when stopped.
    """
    t0 = time.monotonic()
    out_root = Path(out_root)
    stop = stop or StopRequest()
    ledger = Ledger(out_root)
    remove_leftovers(out_root, plan.studies)
    todo, kept = select_work(plan, out_root, mode, retry_failed=retry_failed)
    rows: dict[str, dict[str, Any]] = {}
    for s in plan.studies:
        rows[s.key] = kept.get(s.key) or _row(s, PENDING, {}, None, None)
    extra = [
        make_row(study="", folder=u.folder, study_uid=None, status=Status.FAILED, error=u.error)
        for u in plan.unreadable
    ]
    started_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    meta: dict[str, Any] = {
        "root": str(plan.root),
        "out": str(out_root.resolve()),
        "started_at": started_at,
        "version": __version__,
        "config_sha256": settings.config_sha256,
        "outputs": sorted(settings.outputs),
        "workers": workers_label,
        "mode": mode.value,
        "files_looked_at": plan.n_files,
        "files_skipped": plan.n_skipped,
    }
    ledger.append({"event": "start", **meta, **plan_json(plan), "to_run": len(todo), "kept": len(kept)})

    def all_rows() -> list[dict[str, Any]]:
        return list(rows.values()) + extra

    def flush(final: bool = False, interrupted: bool = False) -> None:
        r = all_rows()
        meta.update(
            {
                "updated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "finished": final and not interrupted,
                "interrupted": interrupted,
                "counts": counts(r),
            }
        )
        write_summary(out_root, r, meta)

    flush()
    logger.info(
        "%d stud%s found under %s (%d to run%s), %s",
        len(plan.studies),
        "y" if len(plan.studies) == 1 else "ies",
        plan.root,
        len(todo),
        f", {len(kept)} kept from earlier runs" if kept else "",
        workers_label or f"{getattr(executor, 'capacity', 1)} worker(s)",
    )
    if kept:
        logger.info("--resume: %d studies kept from earlier runs, %d to run", len(kept), len(todo))
    for w in plan.warnings:
        logger.warning("%s", w)
    progress = Progress(len(plan.studies), already_done=len(kept), stream=progress_stream, tty=progress_tty)
    progress.__enter__()
    for u in plan.unreadable:
        progress.line(f"failed  {u.folder}: {u.error}", warning=True)

    capacity = max(1, int(getattr(executor, "capacity", 1)))
    window = 2 * capacity
    retry = retry or RetryPolicy()
    pending = deque(todo)
    waiting: list[tuple[float, PlannedStudy]] = []  # (when, study): failed runs to try again after a back-off
    attempts: dict[str, int] = {}
    in_flight: dict[cf.Future[TaskOutcome], PlannedStudy] = {}
    announced = killed = False
    last_flush = time.monotonic()
    space = _SpaceGuard(out_root, retry.min_free_mb)
    try:
        while pending or in_flight or waiting:
            now = time.monotonic()
            for item in [w for w in waiting if w[0] <= now]:
                waiting.remove(item)
                pending.append(item[1])
            if stop.count == 0:
                while pending and len(in_flight) < window and space.ok():
                    s = pending.popleft()
                    attempts[s.key] = attempts.get(s.key, 0) + 1
                    in_flight[executor.submit(make_task(s, out_root, settings))] = s
            elif not announced:
                announced = True
                pending.clear()
                waiting.clear()
                for f in in_flight:
                    f.cancel()  # only those not started yet
                running = sum(1 for f in in_flight if not f.cancelled())
                progress.line(
                    f"stopping: no new studies; waiting for {running} running (press Ctrl-C again to stop them now)"
                    if not stop.now
                    else "stopping now"
                )
            if (stop.count >= 2 or stop.now) and not killed:
                killed = True
                executor.shutdown(wait=False, cancel_pending=True, kill_running=True)  # type: ignore[call-arg]
            progress.running = min(len(in_flight), capacity)
            if in_flight:
                done, _ = cf.wait(list(in_flight), timeout=0.25, return_when=cf.FIRST_COMPLETED)
            else:  # only back-offs or the free-space guard to wait for
                done = set()
                time.sleep(0.25)
            for f in done:
                s = in_flight.pop(f)
                if f.cancelled():
                    continue
                outcome = f.result()
                delay = retry.delay_s(outcome, attempts.get(s.key, 1))
                if delay is not None and stop.count == 0:
                    progress.line(
                        f"retry   {s.key} in {delay:.0f} s (attempt {attempts[s.key]} failed, {outcome.kind} "
                        f"error: {outcome.error})",
                        warning=True,
                    )
                    waiting.append((time.monotonic() + delay, s))
                    continue
                _record(outcome, s, rows, ledger, progress)
            if time.monotonic() - last_flush > SUMMARY_INTERVAL_S:
                flush()
                last_flush = time.monotonic()
            progress.tick()
    finally:
        executor.shutdown(wait=True)
        interrupted = stop.count > 0
        flush(final=True, interrupted=interrupted)
        c = counts(all_rows())
        ledger.append({"event": "end", "interrupted": interrupted, "counts": c})
        progress.close()
    if interrupted:
        code = 143 if stop.signum == signal.SIGTERM else 130
    else:
        code = 0 if all(r["status"] == Status.OK for r in all_rows()) else 1
    return BatchResult(all_rows(), interrupted, time.monotonic() - t0, code, c)


@dataclass(frozen=True)
class RetryPolicy:
    """Retrying failed studies within one batch (issue 19: transient faults are retried, the data's are not).

    ``resource_attempts`` runs in all for a study that failed for a resource reason (ENOSPC, EIO, a file that
    vanished: :data:`pipeline.errors.RESOURCE`), ``bug_attempts`` for an unexpected exception; a study refused for
    its data is never retried. Timeouts and crashed workers are not retried within the batch (they would hold a
    worker for another ``--timeout``); ``--resume`` runs them again. The back-off doubles from ``backoff_s`` up to
    ``backoff_max_s``. No study starts while the output folder's disk has less than ``min_free_mb`` free.
    """

    resource_attempts: int = 3
    bug_attempts: int = 2
    backoff_s: float = 15.0
    backoff_max_s: float = 300.0
    min_free_mb: float = 100.0

    def delay_s(self, outcome: TaskOutcome, attempt: int) -> float | None:
        """Seconds to wait before running the study again, or None to record the outcome as final."""
        if outcome.status != Status.FAILED:
            return None
        limit = {RESOURCE: self.resource_attempts, BUG: self.bug_attempts}.get(outcome.kind or INPUT, 1)
        if attempt >= limit:
            return None
        return min(self.backoff_max_s, self.backoff_s * 2 ** (attempt - 1))


class _SpaceGuard:
    """``ok()`` is False while the disk of ``folder`` has less than ``min_free_mb`` free (logged once a minute)."""

    def __init__(self, folder: Path, min_free_mb: float) -> None:
        self.folder = Path(folder)
        self.min_free_mb = min_free_mb
        self._warned_at: float | None = None

    def free_mb(self) -> float:
        return shutil.disk_usage(self.folder).free / (1024 * 1024)

    def ok(self) -> bool:
        if self.min_free_mb <= 0:
            return True
        try:
            free = self.free_mb()
        except OSError:
            free = 0.0
        now = time.monotonic()
        if free < self.min_free_mb:
            if self._warned_at is None or now - self._warned_at >= 60.0:
                logger.warning(
                    "%s: %.0f MiB free, below %.0f MiB: no new study is started until space is freed",
                    self.folder,
                    free,
                    self.min_free_mb,
                )
                self._warned_at = now
            return False
        if self._warned_at is not None:
            logger.info("%s: free space is back (%.0f MiB); starting studies again", self.folder, free)
            self._warned_at = None
        return True


def _record(
    outcome: TaskOutcome,
    s: PlannedStudy,
    rows: dict[str, dict[str, Any]],
    ledger: Ledger,
    progress: Progress,
) -> None:
    status = Status(outcome.status)
    if status is not Status.INTERRUPTED:
        ledger.append(
            {
                "event": "study",
                "key": s.key,
                "folder": s.folder,
                "study_uid": outcome.study_uid or s.study_uid,
                "fingerprint": s.fingerprint,
                "status": status.value,
                "error": outcome.error,
                "runtime_s": round(outcome.runtime_s, 3),
                "worker": outcome.worker,
                "worker_peak_rss_mb": outcome.worker_peak_rss_mb,
                "error_kind": outcome.kind,
                "summary": outcome.summary,
            }
        )
    rows[s.key] = _row(s, status, outcome.summary, outcome.runtime_s, outcome.error)
    if status is Status.INTERRUPTED:
        progress.line(f"interrupted {s.key} (will run again with --resume)", warning=True)
        return
    if status in RETRYABLE:
        logger.debug("study %s: %s (will run again on --resume)", s.key, status.value)
    progress.study_done(s.key, status.value, outcome.runtime_s, outcome.error)


__all__ = [
    "BatchResult",
    "BatchSettings",
    "Mode",
    "RetryPolicy",
    "StopRequest",
    "check_folders",
    "make_task",
    "prepare_out_dir",
    "remove_leftovers",
    "run_batch",
    "select_work",
    "RESERVED_NAMES",
    "SUMMARY_CSV",
    "SUMMARY_JSON",
]
