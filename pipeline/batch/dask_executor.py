"""Dask executor: the same tasks on an existing Dask distributed cluster (``--dask-scheduler tcp://HOST:PORT``).

Each study is one Dask task running :func:`run_isolated` on a Dask worker, which hands it to a
:class:`~pipeline.batch.local.LocalExecutor` living inside that Dask worker process. So a study still runs
in its own child process with the same time and memory limits as locally, and a study that crashes
kills only that child, not the Dask worker (Dask would otherwise retry the task on other workers and
finally raise ``KilledWorker``). The child stays alive between studies (imports and configuration loaded
once), as with the local executor.

Workers need the package installed (same version and configuration files) and the study and output
paths visible under the same names (a shared filesystem); see docs/batch.md.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import logging
import re
import threading
import uuid
from functools import partial
from typing import Any

from pipeline.batch.local import LocalExecutor, TaskFn, TaskFuture, start_running
from pipeline.batch.task import Status, StudyTask, TaskOutcome, run_task
from pipeline.errors import ConfigError

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------- on the Dask worker
_worker_executors: dict[TaskFn, LocalExecutor] = {}
_worker_lock = threading.Lock()


def _dask_worker_threads() -> int:
    try:
        from distributed import get_worker

        w = get_worker()
        state = getattr(w, "state", None)
        return max(1, int(getattr(state, "nthreads", None) or getattr(w, "nthreads", 1) or 1))
    except (ImportError, ValueError, AttributeError):
        return 1


def run_isolated(task: StudyTask, fn: TaskFn = run_task) -> TaskOutcome:
    """Run ``fn(task)`` in a child process of this (Dask worker) process, with the task's limits.

    One :class:`LocalExecutor` per Dask worker process (as many child processes as the Dask worker has
    threads), created on the first study and kept for the next ones.
    """
    with _worker_lock:
        ex = _worker_executors.get(fn)
        if ex is None:
            ex = LocalExecutor(_dask_worker_threads(), fn=fn, log_level=logging.WARNING)
            _worker_executors[fn] = ex
    return ex.submit(task).result()


# --------------------------------------------------------------------------- on the client
class _DaskFuture(TaskFuture):
    """A concurrent.futures.Future fed by a Dask future; cancelling it cancels the Dask task."""

    def __init__(self, task: StudyTask) -> None:
        super().__init__()
        self.task = task
        self.dask_future: Any = None

    def cancel(self) -> bool:
        if super().cancel():
            if self.dask_future is not None:
                self.dask_future.cancel()
            return True
        return False


class DaskExecutor:
    """Submit tasks to a Dask distributed scheduler.

    Parameters
    ----------
    scheduler : str
        Scheduler address, e.g. ``tcp://10.0.0.5:8786``.
    fn : callable
        What runs per task (module-level, importable on the workers).
    connect_timeout_s : float
        How long to try to reach the scheduler.

    Raises
    ------
    ConfigError
        distributed is not installed, or the scheduler cannot be reached.
    """

    def __init__(self, scheduler: str, *, fn: TaskFn = run_task, connect_timeout_s: float = 15.0) -> None:
        try:
            from distributed import Client
        except ImportError:
            raise ConfigError("--dask-scheduler needs Dask distributed: pip install 'spine-assess[dask]'") from None
        try:
            self._client = Client(scheduler, timeout=connect_timeout_s, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as exc:
            raise ConfigError(
                f"cannot reach the Dask scheduler at {scheduler} ({exc}); start one with `dask scheduler` and "
                "workers with `dask worker ADDRESS --nthreads 1 --nworkers N` (docs/batch.md)"
            ) from None
        self.scheduler = scheduler
        self._fn = fn
        self._outstanding: set[_DaskFuture] = set()
        self._lock = threading.Lock()
        self._closed = False

    @property
    def capacity(self) -> int:
        """Worker threads in the cluster now (at least 1)."""
        try:
            workers = self._client.scheduler_info().get("workers", {})
            return max(1, sum(int(w.get("nthreads", 1)) for w in workers.values()))
        except Exception:  # noqa: BLE001 - informational only
            return 1

    def submit(self, task: StudyTask) -> cf.Future[TaskOutcome]:
        if self._closed:
            raise RuntimeError("submit after shutdown")
        fut = _DaskFuture(task)
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", task.key or task.study_dir.name)[:80]
        dfut = self._client.submit(
            run_isolated, task, self._fn, pure=False, key=f"spine-assess-{name}-{uuid.uuid4().hex[:8]}"
        )
        fut.dask_future = dfut
        with self._lock:
            self._outstanding.add(fut)
        fut.add_done_callback(self._forget)
        dfut.add_done_callback(partial(_transfer, fut, task))
        return fut

    def _forget(self, fut: cf.Future[TaskOutcome]) -> None:
        with self._lock:
            self._outstanding.discard(fut)

    def shutdown(self, wait: bool = True, *, cancel_pending: bool = False, kill_running: bool = False) -> None:
        """Close the connection to the cluster.

        ``cancel_pending`` / ``kill_running`` cancel the outstanding Dask tasks; Dask cannot stop a task
        that is already running, so such a study may still finish and write its (complete, atomic) output
        folder; the batch ledger does not count it, and ``--resume`` recognises it by its ``job.json``.
        """
        self._closed = True
        with self._lock:
            outstanding = list(self._outstanding)
        if cancel_pending or kill_running:
            for f in outstanding:
                if f.cancel():
                    continue
                if kill_running and not f.done():
                    f.dask_future.cancel()
                    with contextlib.suppress(cf.InvalidStateError):  # unless the Dask result came first
                        f.set_result(TaskOutcome(f.task, Status.INTERRUPTED, "stopped: the batch was interrupted", 0.0))
        elif wait:
            cf.wait(outstanding)
        self._client.close()


def _transfer(fut: _DaskFuture, task: StudyTask, dfut: Any) -> None:
    """Copy a finished Dask future's result into ``fut`` (runs in a Dask client thread)."""
    if fut.done():
        return
    start_running(fut)  # a running future (the result is set below) is not cancellable any more
    try:
        status = dfut.status
        if status == "finished":
            fut.set_result(dfut.result())
        elif status == "cancelled":
            fut.set_result(TaskOutcome(task, Status.INTERRUPTED, "cancelled on the Dask cluster", 0.0))
        else:
            exc = dfut.exception()
            fut.set_result(TaskOutcome(task, Status.CRASHED, f"Dask: {type(exc).__name__}: {exc}", 0.0))
    except Exception as exc:  # noqa: BLE001 - the outcome must always arrive
        fut.set_result(TaskOutcome(task, Status.CRASHED, f"Dask: {type(exc).__name__}: {exc}", 0.0))
