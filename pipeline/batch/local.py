"""Local executor: N long-lived worker processes supervised by one thread, with real isolation.

Why not ``concurrent.futures.ProcessPoolExecutor``: when one of its workers dies (OOM killer, a crash in
native code) the whole pool breaks and every queued study fails with ``BrokenProcessPool``, and a
running task cannot be stopped at a time limit. Here each worker is its own OS process
(``python -m pipeline.batch.worker``, a fresh interpreter: no fork of a threaded parent), talking to the
supervisor over a socket. The supervisor thread

- hands queued tasks to idle workers (starting workers lazily, up to ``workers``);
- kills a worker whose study exceeds its time limit (outcome ``timeout``) or its memory limit
  (resident set size polled with psutil; outcome ``crashed``), and starts a fresh one for the next study;
- notices a worker that died (socket EOF) and turns its study into a ``crashed`` outcome;
- on ``shutdown(kill_running=True)`` kills running studies (outcome ``interrupted``).

A worker keeps its imports and the loaded configuration between studies (fast), uses one thread for
ITK / BLAS (``threads_per_worker``) and is in its own session, so Ctrl-C in a terminal reaches only the
parent, which decides. Workers die with the parent (``PR_SET_PDEATHSIG`` + watchdog).
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import contextlib
import itertools
import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from pipeline.batch.task import Status, StudyTask, TaskOutcome, run_task

logger = logging.getLogger(__name__)

TaskFn = Callable[[StudyTask], TaskOutcome]

#: Thread-count variables read by OpenMP / BLAS / ITK when a worker starts.
THREAD_ENV_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS",
)


class TaskFuture(cf.Future[TaskOutcome]):
    """A Future whose ``cancel()`` also notifies waiters at once.

    A plain ``Future.cancel()`` leaves ``concurrent.futures.wait`` waiting until the executor dequeues the
    task; cancelled studies must count as done immediately (Ctrl-C while studies are queued).
    """

    def cancel(self) -> bool:
        if super().cancel():
            with self._condition:  # an RLock: re-entered below
                if self._state == "CANCELLED":  # not yet CANCELLED_AND_NOTIFIED
                    self.set_running_or_notify_cancel()
            return True
        return False


def start_running(fut: cf.Future[TaskOutcome]) -> bool:
    """``set_running_or_notify_cancel`` that is False (not an error) for an already-notified cancellation."""
    try:
        return fut.set_running_or_notify_cancel()
    except RuntimeError:
        return False


@dataclass
class _Job:
    id: int
    task: StudyTask
    future: cf.Future[TaskOutcome]
    payload: bytes
    sent_at: float = 0.0
    started_at: float | None = None
    peak_rss_mb: float = 0.0


class _Worker:
    """One worker process and its socket (used only by the supervisor thread)."""

    def __init__(self, init: dict[str, Any], env: dict[str, str]) -> None:
        parent_sock, child_sock = socket.socketpair()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "pipeline.batch.worker", str(child_sock.fileno())],
                pass_fds=(child_sock.fileno(),),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=2,  # library chatter on stdout would mix with the batch's own output
                start_new_session=True,
            )
        finally:
            child_sock.close()
        self.conn = Connection(parent_sock.detach())
        self.conn.send(init)
        self.job: _Job | None = None
        self.n_done = 0
        self._ps: Any = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def rss_mb(self) -> float | None:
        try:
            import psutil

            if self._ps is None:
                self._ps = psutil.Process(self.proc.pid)
            return float(self._ps.memory_info().rss) / 2**20
        except Exception:  # noqa: BLE001 - process gone or psutil missing: no reading
            return None

    def kill(self) -> int:
        with contextlib.suppress(OSError):
            self.proc.kill()
        rc = self.proc.wait()
        self.conn.close()
        return rc

    def stop(self, timeout_s: float = 5.0) -> None:
        try:
            self.conn.send(None)
            self.proc.wait(timeout=timeout_s)
        except (OSError, subprocess.TimeoutExpired):
            self.kill()
            return
        self.conn.close()


class LocalExecutor:
    """Run tasks in ``workers`` isolated worker processes on this machine.

    Parameters
    ----------
    workers : int
        Number of studies processed at the same time (one process each).
    fn : callable
        What a worker runs per task, :func:`~pipeline.batch.task.run_task` by default. Must be importable
        by name (module-level function): it is pickled by reference.
    threads_per_worker : int
        Threads for ITK and BLAS in each worker (1: N workers use N cores).
    log_level : int or None
        Logging level in the workers (default: the parent's effective level for ``pipeline``).
    max_tasks_per_worker : int or None
        Replace a worker after this many studies (bounds slow leaks in a long-running service).
    start_timeout_s : float
        A worker that has not begun its first task after this long is killed (outcome ``crashed``).
    poll_interval_s : float
        How often time and memory limits are checked.
    """

    def __init__(
        self,
        workers: int = 1,
        *,
        fn: TaskFn = run_task,
        threads_per_worker: int = 1,
        log_level: int | None = None,
        max_tasks_per_worker: int | None = None,
        start_timeout_s: float = 120.0,
        poll_interval_s: float = 0.25,
        pdeathsig: bool = True,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.workers = workers
        self._fn = fn
        self._threads = threads_per_worker
        self._log_level = log_level if log_level is not None else logging.getLogger("pipeline").getEffectiveLevel()
        self._max_tasks = max_tasks_per_worker
        self._start_timeout_s = start_timeout_s
        self._poll_s = poll_interval_s
        self._pdeathsig = pdeathsig
        self._ids = itertools.count(1)
        self._queue: collections.deque[_Job] = collections.deque()
        self._lock = threading.Lock()
        self._closing = False
        self._kill_running = False
        self._pool: list[_Worker] = []
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._thread = threading.Thread(target=self._supervise, name="spine-assess-executor", daemon=True)
        self._thread.start()

    @property
    def capacity(self) -> int:
        """Studies that can run at the same time."""
        return self.workers

    # ------------------------------------------------------------------ public API
    def submit(self, task: StudyTask) -> cf.Future[TaskOutcome]:
        """Queue ``task``; the future's result is its :class:`TaskOutcome` (never an exception).

        A future cancelled before its study starts is dropped from the queue.
        """
        fut = TaskFuture()
        payload = pickle.dumps((self._fn, task))
        with self._lock:
            if self._closing:
                raise RuntimeError("submit after shutdown")
            self._queue.append(_Job(next(self._ids), task, fut, payload))
        self._wake()
        return fut

    def shutdown(self, wait: bool = True, *, cancel_pending: bool = False, kill_running: bool = False) -> None:
        """Stop accepting tasks; optionally cancel queued ones and kill running ones (outcome ``interrupted``).

        ``kill_running`` implies ``cancel_pending``.

        With ``wait`` the call returns when every remaining task has its outcome and the workers are gone.
        """
        with self._lock:
            self._closing = True
            if cancel_pending or kill_running:
                while self._queue:
                    self._queue.popleft().future.cancel()
            if kill_running:
                self._kill_running = True
        self._wake()
        if wait:
            self._thread.join()

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown(wait=True, cancel_pending=exc[0] is not None, kill_running=exc[0] is not None)

    # ------------------------------------------------------------------ supervisor thread
    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # pipe closed: the supervisor is gone
            os.write(self._wake_w, b"x")

    def _supervise(self) -> None:
        try:
            while True:
                with self._lock:
                    kill = self._kill_running
                    done = self._closing and not self._queue
                if kill:
                    for w in [w for w in self._pool if w.job]:
                        self._end(w, Status.INTERRUPTED, "stopped: the batch was interrupted; run it again", kill=True)
                self._dispatch()
                if done and not any(w.job for w in self._pool):
                    break
                conns = {w.conn: w for w in self._pool}
                ready = wait([*conns, self._wake_r], timeout=self._poll_s)
                for obj in ready:
                    if obj == self._wake_r:
                        try:
                            while os.read(self._wake_r, 4096):
                                pass
                        except BlockingIOError:
                            pass
                    elif obj in conns:
                        self._receive(conns[obj])
                self._check_limits()
        except BaseException:  # pragma: no cover - a bug here must not leave callers waiting forever
            logger.exception("batch executor failed; pending studies are marked crashed")
            with self._lock:
                self._closing = True
                pending = list(self._queue)
                self._queue.clear()
            for job in pending:
                if start_running(job.future):
                    job.future.set_result(TaskOutcome(job.task, Status.CRASHED, "internal executor error", 0.0))
            for w in list(self._pool):
                if w.job:
                    self._end(w, Status.CRASHED, "internal executor error", kill=True)
        finally:
            for w in self._pool:
                w.stop()
            self._pool.clear()
            os.close(self._wake_r)
            os.close(self._wake_w)

    def _new_worker(self) -> _Worker:
        import pipeline

        env = dict(os.environ)
        for var in THREAD_ENV_VARS:
            env[var] = str(self._threads)
        pkg_root = str(Path(pipeline.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (pkg_root, env.get("PYTHONPATH", "")) if p)
        init = {
            "sys_path": [p for p in sys.path if p],
            "log_level": self._log_level,
            "threads": self._threads,
            "parent_pid": os.getpid(),
            "pdeathsig": self._pdeathsig,
        }
        w = _Worker(init, env)
        logger.debug("started worker process %d", w.pid)
        self._pool.append(w)
        return w

    def _dispatch(self) -> None:
        while True:
            with self._lock:
                if not self._queue or self._kill_running:
                    return
                idle = next((w for w in self._pool if w.job is None), None)
                if idle is None and len(self._pool) >= self.workers:
                    return
                job = self._queue.popleft()
            if not start_running(job.future):
                continue  # cancelled while queued
            w = idle or self._new_worker()
            try:
                w.conn.send((job.id, job.payload))
            except OSError:  # the idle worker died in the meantime: replace it and try again
                self._pool.remove(w)
                w.kill()
                w = self._new_worker()
                w.conn.send((job.id, job.payload))
            job.sent_at = time.monotonic()
            w.job = job

    def _receive(self, w: _Worker) -> None:
        try:
            msg = w.conn.recv()
        except (EOFError, OSError):
            self._on_death(w)
            return
        job = w.job
        if job is None or msg[1] != job.id:  # pragma: no cover - protocol violation
            logger.error("worker %d sent an unexpected message; replacing it", w.pid)
            self._on_death(w)
            return
        kind = msg[0]
        if kind == "start":
            job.started_at = time.monotonic()
        elif kind == "error":
            self._finish(w, TaskOutcome(job.task, Status.FAILED, str(msg[2]), 0.0, worker=f"pid {w.pid}"))
        elif kind == "done":
            outcome: TaskOutcome = msg[2]
            self._finish(w, outcome)
            w.n_done += 1
            if outcome.status == Status.CRASHED or (self._max_tasks and w.n_done >= self._max_tasks):
                self._pool.remove(w)
                w.stop()

    def _finish(self, w: _Worker, outcome: TaskOutcome) -> None:
        job = w.job
        w.job = None
        if job is not None and not job.future.done():
            job.future.set_result(outcome)

    def _elapsed(self, job: _Job) -> float:
        return time.monotonic() - (job.started_at or job.sent_at)

    def _end(self, w: _Worker, status: Status, text: str, *, kill: bool) -> None:
        """Kill ``w`` (if asked) and give its study the outcome ``status``."""
        job = w.job
        if w in self._pool:
            self._pool.remove(w)
        if kill:
            w.kill()
        if job is not None:
            peak = job.peak_rss_mb or None
            self._finish(
                w,
                TaskOutcome(job.task, status, text, self._elapsed(job), worker=f"pid {w.pid}", worker_peak_rss_mb=peak),
            )

    def _on_death(self, w: _Worker) -> None:
        rc = w.kill()
        if w.job is None:
            if w in self._pool:
                self._pool.remove(w)
            logger.warning("idle worker process %d exited (status %s); it will be replaced", w.pid, rc)
            return
        if rc < 0:
            try:
                name = signal.Signals(-rc).name
            except ValueError:
                name = f"signal {-rc}"
            why = f"the worker process was killed by {name}"
            if -rc == signal.SIGKILL:
                why += " (by the system's out-of-memory killer or an operator)"
            elif -rc == signal.SIGSEGV:
                why += " (a crash in native code)"
        else:
            why = f"the worker process exited unexpectedly with status {rc}"
        logger.warning("study %s: %s", w.job.task.key or w.job.task.study_dir, why)
        self._end(w, Status.CRASHED, why, kill=False)

    def _check_limits(self) -> None:
        now = time.monotonic()
        for w in [w for w in self._pool if w.job]:
            job = w.job
            assert job is not None
            task = job.task
            if job.started_at is None:
                if now - job.sent_at > self._start_timeout_s:
                    self._end(
                        w, Status.CRASHED, f"worker process did not start in {self._start_timeout_s:g} s", kill=True
                    )
                continue
            if task.timeout_s and now - job.started_at > task.timeout_s:
                logger.warning(
                    "study %s: time limit of %g s reached; stopping it", task.key or task.study_dir, task.timeout_s
                )
                self._end(
                    w,
                    Status.TIMEOUT,
                    f"stopped after the time limit of {task.timeout_s:g} s (raise it with --timeout)",
                    kill=True,
                )
                continue
            rss = w.rss_mb()
            if rss is not None:
                job.peak_rss_mb = max(job.peak_rss_mb, rss)
                if task.memory_limit_mb and rss > task.memory_limit_mb:
                    logger.warning(
                        "study %s: memory limit of %d MB exceeded (%.0f MB); stopping it",
                        task.key or task.study_dir,
                        task.memory_limit_mb,
                        rss,
                    )
                    self._end(
                        w,
                        Status.CRASHED,
                        f"stopped at {rss:.0f} MB of memory, over the limit of {task.memory_limit_mb} MB "
                        "(raise it with --memory-limit)",
                        kill=True,
                    )
