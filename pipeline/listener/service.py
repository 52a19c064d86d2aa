"""The listener service: SCP threads + one scheduler thread + the batch executor + export threads.

Threads and processes of a running listener::

    pynetdicom server     one thread per association: C-ECHO, C-STORE -> spool (fsync) -> state DB -> status
    scheduler (1 thread)  every trigger.poll_seconds:
                            1. collects finished jobs -> DONE (+ outbox rows) / RETRY_WAIT / DEAD / RECEIVING
                            2. starts due studies (quiet for stable_seconds, queued, due retries) on the executor,
                               at most processing.workers at a time
                            3. collects finished exports -> outbox rows DELIVERED / retry later / DEAD
                            4. starts due exports on the export thread pool (one association / request per
                               study x destination)
    batch executor        pipeline.batch local worker processes (or a Dask cluster) running run_task
    export pool           export.threads threads running send_files (C-STORE or STOW-RS)

Everything that must survive a crash is in the spool and the state database before it is acknowledged or
acted upon, so :meth:`Listener.start` after a kill -9 resumes where it left off: temporary files are
removed, instances on disk but not in the database are recorded (:func:`reconcile`), runs that were
interrupted are queued again and the outbox sends what it had not sent.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections import defaultdict
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from pydicom import dcmread

from pipeline.batch.task import Status
from pipeline.errors import BUG, INPUT, RESOURCE, InputError
from pipeline.listener import jobs
from pipeline.listener.config import ListenerConfig
from pipeline.listener.export import send_files
from pipeline.listener.scp import Receiver, start_server
from pipeline.listener.spool import InstanceKey, Spool, clean_uid, sha256_file
from pipeline.listener.state import ExportItem, OutboxRow, StateDB, StudyStatus, now_s

logger = logging.getLogger(__name__)


def reconcile(spool: Spool, state: StateDB, now: float | None = None) -> dict[str, int]:
    """Bring the database in line with the spool after a restart (see the module docstring).

    Returns counts: ``temp_removed``, ``recorded`` (files found on disk that the database did not know),
    ``forgotten`` (database rows whose file is gone), ``quarantined`` (unreadable files found on disk),
    ``requeued`` (interrupted runs) and ``receiving``.
    """
    now = now_s() if now is None else now
    counts = {"temp_removed": spool.remove_temp_files(), "recorded": 0, "forgotten": 0, "quarantined": 0}
    known = state.known_paths()
    seen: set[str] = set()
    for study_uid, series_uid, sop_uid, path in spool.scan():
        seen.add(str(path))
        if str(path) in known:
            continue
        try:
            ds = dcmread(path, stop_before_pixels=True)
            uids = tuple(clean_uid(ds.get(k), k) for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"))
            if uids != (study_uid, series_uid, sop_uid):
                raise InputError(f"its UIDs {uids} do not match its place in the spool")
            sop_class = str(ds.get("SOPClassUID", ""))
        except Exception as exc:
            reason = f"found in the spool at start-up but unreadable: {type(exc).__name__}: {exc}"
            moved = spool.move_to_quarantine(InstanceKey(study_uid, series_uid, sop_uid), path, reason)
            state.record_quarantine(study_uid=study_uid, sop_uid=sop_uid, path=str(moved), reason=reason, now=now)
            logger.warning("study %s: instance %s quarantined at start-up: %s", study_uid, sop_uid, reason)
            counts["quarantined"] += 1
            continue
        state.record_instance(
            study_uid=study_uid,
            series_uid=series_uid,
            sop_uid=sop_uid,
            sop_class_uid=sop_class,
            path=str(path),
            sha256=sha256_file(path),
            size_bytes=path.stat().st_size,
            calling_ae="(recovered)",
            now=now,
        )
        counts["recorded"] += 1
    missing = known - seen
    if missing:
        counts["forgotten"] = state.forget_missing(missing, now)
    counts.update(state.recover(now))
    return counts


class Listener:
    """A running listener (see the module docstring). ``start()``, then ``stop()``; or use as a context manager.

    Parameters
    ----------
    cfg : ListenerConfig
        Validated settings (:func:`pipeline.listener.config.load_listener_config`).
    executor : optional
        A :mod:`pipeline.batch` executor; default :func:`pipeline.listener.jobs.make_job_executor`.
    """

    def __init__(self, cfg: ListenerConfig, *, executor: Any = None) -> None:
        self.cfg = cfg
        self.spool = Spool(cfg.spool_dir)
        self.state = StateDB(self.spool.db_path)
        self.receiver = Receiver(cfg, self.spool, self.state)
        self._executor = executor
        self._own_executor = executor is None
        self._server: Any = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._jobs: dict[str, Future[Any]] = {}
        self._exports: dict[Future[dict[Path, str | None]], list[OutboxRow]] = {}
        self._export_pool: ThreadPoolExecutor | None = None
        self._destinations = {d.name: d for d in cfg.export.destinations}
        self._config_sha256: str | None = None
        self._space_warned_at: float | None = None
        self._unrecorded: set[str] = set()  # finished runs whose outcome the database did not take yet (logged once)

    # ------------------------------------------------------------------ lifecycle
    @property
    def port(self) -> int:
        """The TCP port the SCP listens on (the one chosen by the system with ``network.port: 0``)."""
        return int(self._server.server_address[1]) if self._server else self.cfg.network.port

    def start(self) -> Listener:
        from pipeline.run import load_pipeline_config

        self.spool.lock()  # one listener per spool: two would process the same studies
        pcfg = load_pipeline_config(Path(self.cfg.processing.config_dir) if self.cfg.processing.config_dir else None)
        self._config_sha256 = pcfg.sha256
        counts = reconcile(self.spool, self.state)
        logger.info(
            "spool %s: %d temporary files removed, %d instances recovered, %d quarantined, %d runs re-queued",
            self.spool.root,
            counts["temp_removed"],
            counts["recorded"],
            counts["quarantined"],
            counts["requeued"],
        )
        if self._executor is None:
            self._executor = jobs.make_job_executor(self.cfg.processing)
        self._export_pool = ThreadPoolExecutor(self.cfg.export.threads, thread_name_prefix="spine-assess-export")
        try:
            self._server = start_server(self.cfg, self.receiver)
        except BaseException:
            self.stop()
            raise
        self._thread = threading.Thread(target=self._loop, name="spine-assess-scheduler", daemon=True)
        self._thread.start()
        return self

    def stop(self, *, wait_for_jobs: bool = False) -> None:
        """Stop accepting associations, stop scheduling; running jobs are interrupted unless ``wait_for_jobs``.

        A study whose run is interrupted is queued again (without using up an attempt) for the next start.
        """
        self._stop.set()
        self._wake.set()
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._export_pool is not None:
            self._export_pool.shutdown(wait=True, cancel_futures=True)
            self._collect_exports(block=True)
            self._export_pool = None
        if self._executor is not None:
            if wait_for_jobs:
                self._collect_jobs(block=True)
            if self._own_executor:
                # Running studies are stopped (their futures resolve "interrupted") and queued again below.
                self._executor.shutdown(wait=True, cancel_pending=True, kill_running=True)
            self._collect_jobs()  # a run that finished meanwhile is recorded as finished
            self._requeue_interrupted()
        self.state.close()
        self.spool.unlock()

    def __enter__(self) -> Listener:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wake(self) -> None:
        """Run the scheduler now instead of at the next poll (tests, operator commands)."""
        self._wake.set()

    # ------------------------------------------------------------------ scheduler
    def _loop(self) -> None:
        poll = self.cfg.trigger.poll_seconds
        db_error_logged_at: float | None = None
        while not self._stop.is_set():
            try:
                self.tick()
                if db_error_logged_at is not None:
                    logger.info("scheduler: state database written again; carrying on")
                    db_error_logged_at = None
            except (sqlite3.Error, OSError) as exc:
                # A full disk or an I/O error: nothing is lost (every step is one transaction, done again at the
                # next pass), but a traceback at every poll flooded the log (found by benchmarks/faults.py).
                now = now_s()
                if db_error_logged_at is None or now - db_error_logged_at >= 60.0:
                    logger.error(
                        "scheduler: cannot write the state database %s (%s); trying again every %.1f s",
                        self.spool.db_path,
                        exc,
                        poll,
                    )
                    db_error_logged_at = now
            except Exception:
                logger.exception("scheduler: unexpected error (continuing)")
            self._wake.wait(poll)
            self._wake.clear()

    def tick(self) -> None:
        """One scheduler pass (see the module docstring)."""
        self._collect_jobs()
        if not self._stop.is_set():
            self._start_jobs()
        self._collect_exports()
        if not self._stop.is_set():
            self._start_exports()

    def _start_jobs(self) -> None:
        proc = self.cfg.processing
        free = proc.workers - len(self._jobs)
        if free <= 0:
            return
        if not self._enough_space():
            return
        now = now_s()
        for row in self.state.due_studies(now, self.cfg.trigger.stable_seconds, limit=free + len(self._jobs)):
            if free <= 0:
                break
            if row.study_uid in self._jobs:
                continue
            started = self.state.start_run(row.study_uid, now)
            if started is None:
                continue
            task = jobs.study_task(
                study_uid=row.study_uid,
                study_dir=self.spool.study_dir(row.study_uid),
                out_dir=self.spool.results_dir(row.study_uid),
                cfg=proc,
                config_sha256=self._config_sha256,
            )
            logger.info(
                "study %s: processing (%d instances, attempt %d of %d)",
                row.study_uid,
                started.n_instances,
                started.attempts,
                proc.max_attempts,
            )
            try:
                fut = self._executor.submit(task)
            except Exception as exc:
                fut = Future()
                fut.set_exception(exc)
            fut.add_done_callback(lambda _f: self._wake.set())
            self._jobs[row.study_uid] = fut
            free -= 1

    def _enough_space(self) -> bool:
        """Free-space guard before a run starts: below ``storage.min_free_mb`` no study is started (they wait, they
        do not fail); logged when it starts and ends, and at most once a minute in between."""
        try:
            free_mb = self.spool.free_mb()
        except OSError as exc:
            free_mb, why = 0.0, f"cannot read free space ({exc.strerror or exc})"
        else:
            why = f"{free_mb:.0f} MiB free, below storage.min_free_mb={self.cfg.storage.min_free_mb:g}"
        low = free_mb < self.cfg.storage.min_free_mb
        now = now_s()
        if low and (self._space_warned_at is None or now - self._space_warned_at >= 60.0):
            logger.warning("spool %s: %s; no study is started until space is freed", self.spool.root, why)
            self._space_warned_at = now
        elif not low and self._space_warned_at is not None:
            logger.info("spool %s: free space is back (%.0f MiB); starting studies again", self.spool.root, free_mb)
            self._space_warned_at = None
        return not low

    def _collect_jobs(self, *, block: bool = False) -> None:
        for uid, fut in list(self._jobs.items()):
            if not fut.done() and not block:
                continue
            kind: str | None
            try:
                outcome = fut.result()
                status, error, runtime = Status(outcome.status), outcome.error, float(outcome.runtime_s)
                kind = outcome.kind
            except Exception as exc:  # the executor itself failed (e.g. lost Dask scheduler): retryable
                status, error, runtime = Status.CRASHED, f"executor error: {type(exc).__name__}: {exc}", None
                kind = RESOURCE
            try:
                self._finish(uid, status, error, runtime, kind=kind)
            except (sqlite3.Error, OSError) as exc:
                # The state database cannot be written (a full disk fills it too): keep the outcome and record it
                # at the next pass. Dropping it left the study 'running', never retried nor exported, until a
                # restart (found by benchmarks/faults.py). Meanwhile the study keeps its worker slot.
                if uid not in self._unrecorded:
                    logger.error(
                        "study %s: run ended but its outcome cannot be recorded yet (%s); will retry", uid, exc
                    )
                    self._unrecorded.add(uid)
                continue
            self._unrecorded.discard(uid)
            del self._jobs[uid]

    def _finish(
        self, study_uid: str, status: Status, error: str | None, runtime_s: float | None, *, kind: str | None = None
    ) -> None:
        proc = self.cfg.processing
        ok = status is Status.OK
        out_dir = self.spool.results_dir(study_uid)
        if status is Status.INTERRUPTED:
            self.state.requeue(study_uid, now_s())
            logger.info("study %s: run interrupted; queued again", study_uid)
            return
        # How often a failed run is tried (issue 19): a study the pipeline refused (bad or unusable data, invalid
        # configuration: kind "input") gives the same answer when run again on the same data, so it is dead at
        # once. Resource errors (disk full, I/O errors, out of memory, crashes, timeouts) are retried with back-off
        # up to processing.max_attempts; an unexpected exception (a bug) is retried once and logged as one.
        if kind is None:
            kind = INPUT if status is Status.FAILED else RESOURCE
        max_attempts = {INPUT: 1, BUG: 2}.get(kind, proc.max_attempts)
        if kind == BUG and not ok:
            logger.error(
                "study %s: unexpected error in the pipeline (a bug; please report it, the worker log has the trace): "
                "%s",
                study_uid,
                error,
            )
        label: str = status if kind != BUG else "failed (bug)"
        if kind == RESOURCE and status is Status.FAILED:
            label = "failed (resource)"
        new = self.state.finish_run(
            study_uid,
            ok=ok,
            error=None if ok else f"{label}: {error or 'no error text'}",
            out_dir=str(out_dir) if ok else None,
            runtime_s=runtime_s,
            now=now_s(),
            max_attempts=max_attempts,
            retry_backoff_s=proc.retry_backoff_s,
            retry_backoff_max_s=proc.retry_backoff_max_s,
            exports=self._export_items(out_dir) if ok else (),
        )
        row = self.state.get_study(study_uid)
        if new is StudyStatus.DONE:
            n = len(self.state.outbox_for(study_uid))
            logger.info("study %s: done in %.1f s; %d exports queued", study_uid, runtime_s or 0.0, n)
        elif new is StudyStatus.RECEIVING:
            logger.info("study %s: new instances arrived during the run; it will run again once stable", study_uid)
        elif new is StudyStatus.RETRY_WAIT and row is not None:
            logger.warning(
                "study %s: attempt %d %s (%s); retry in %.0f s",
                study_uid,
                row.attempts,
                status,
                error,
                (row.next_attempt_at or 0) - now_s(),
            )
        elif new is StudyStatus.DEAD and row is not None:
            logger.error(
                "study %s: %s after %d attempt(s) (%s); dead letter - see 'spine-assess queue show %s'",
                study_uid,
                status,
                row.attempts,
                error,
                study_uid,
            )

    def _export_items(self, out_dir: Path) -> list[ExportItem]:
        """Result files x destinations, from the outputs listed in the run's report.json."""
        try:
            outputs = json.loads((out_dir / "report.json").read_text(encoding="utf-8")).get("outputs") or {}
        except (OSError, ValueError) as exc:
            logger.error("%s: report.json unreadable (%s); nothing to export", out_dir, exc)
            return []
        files: dict[str, list[str]] = {}
        for kind in ("sr", "seg", "sc"):
            value = outputs.get(kind)
            rels = value if isinstance(value, list) else ([value] if value else [])
            files[kind] = [str(out_dir / r) for r in rels]
        return [
            ExportItem(dest.name, path, kind)
            for dest in self.cfg.export.destinations
            for kind in dest.send
            for path in files.get(kind, [])
        ]

    def _requeue_interrupted(self) -> None:
        now = now_s()
        for uid in list(self._jobs):
            try:
                self.state.requeue(uid, now)
            except (sqlite3.Error, OSError) as exc:  # still 'running' in the database: re-queued at the next start
                logger.error("study %s: cannot record that its run was interrupted (%s)", uid, exc)
                continue
            logger.info("study %s: run interrupted by the shutdown; it will run at the next start", uid)
        self._jobs.clear()

    # ------------------------------------------------------------------ export
    def _start_exports(self) -> None:
        pool = self._export_pool
        if pool is None:
            return
        busy = {r.id for rows in self._exports.values() for r in rows}
        groups: dict[tuple[str, str], list[OutboxRow]] = defaultdict(list)
        for row in self.state.due_exports(now_s()):
            if row.id not in busy:
                groups[(row.destination, row.study_uid)].append(row)
        for (dest_name, _study), rows in groups.items():
            if len(self._exports) >= self.cfg.export.threads * 2:
                break
            dest = self._destinations.get(dest_name)
            fut: Future[dict[Path, str | None]]
            if dest is None:
                fut = Future()
                fut.set_result({Path(r.path): f"destination {dest_name!r} is no longer configured" for r in rows})
            else:
                paths = [Path(r.path) for r in rows]
                fut = pool.submit(send_files, dest, paths, calling_ae_title=self.cfg.network.ae_title)
                fut.add_done_callback(lambda _f: self._wake.set())
            self._exports[fut] = rows

    def _collect_exports(self, *, block: bool = False) -> None:
        exp = self.cfg.export
        for fut, rows in list(self._exports.items()):
            if not fut.done() and not block:
                continue
            try:
                by_path = fut.result()
            except Exception as exc:  # cancelled at shutdown, or a bug: retried later
                by_path = {Path(r.path): f"not sent: {type(exc).__name__}: {exc}" for r in rows}
            del self._exports[fut]
            results = {r.id: by_path.get(Path(r.path), "no result") for r in rows}
            self.state.export_done(
                results,
                now=now_s(),
                max_attempts=exp.max_attempts,
                retry_backoff_s=exp.retry_backoff_s,
                retry_backoff_max_s=exp.retry_backoff_max_s,
            )
            ok = sum(1 for e in results.values() if e is None)
            study = rows[0].study_uid
            if ok == len(rows):
                logger.info("study %s: %d result file(s) delivered to %s", study, ok, rows[0].destination)
            else:
                first = next(e for e in results.values() if e is not None)
                logger.warning(
                    "study %s: %d of %d result file(s) not delivered to %s (%s); will retry",
                    study,
                    len(rows) - ok,
                    len(rows),
                    rows[0].destination,
                    first,
                )


def serve(cfg: ListenerConfig, stop: threading.Event) -> None:
    """Run a listener until ``stop`` is set (the CLI sets it on SIGINT / SIGTERM)."""
    listener = Listener(cfg).start()
    try:
        while not stop.wait(1.0):
            pass
    finally:
        listener.stop()


__all__ = ["Listener", "reconcile", "serve"]
