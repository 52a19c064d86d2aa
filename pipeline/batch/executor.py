"""The executor contract shared by ``spine-assess batch`` and the PACS listener, and its factory."""

from __future__ import annotations

import concurrent.futures as cf
import logging
from typing import Protocol, runtime_checkable

from pipeline.batch.local import LocalExecutor, TaskFn
from pipeline.batch.task import StudyTask, TaskOutcome, run_task


@runtime_checkable
class Executor(Protocol):
    """Runs :class:`StudyTask` s; each future resolves to a :class:`TaskOutcome` (never to an exception).

    Both implementations also take ``shutdown(wait, *, cancel_pending=False, kill_running=False)`` and have
    a ``capacity`` (studies that can run at the same time).
    """

    def submit(self, task: StudyTask) -> cf.Future[TaskOutcome]: ...

    def shutdown(self, wait: bool = True) -> None: ...


def make_executor(
    *,
    workers: int = 1,
    dask_scheduler: str | None = None,
    fn: TaskFn = run_task,
    threads_per_worker: int = 1,
    log_level: int | None = None,
    max_tasks_per_worker: int | None = None,
    dask_connect_timeout_s: float = 15.0,
) -> Executor:
    """A local pool of ``workers`` isolated worker processes, or a Dask client when a scheduler is given.

    Parameters
    ----------
    workers : int
        Local worker processes (ignored with ``dask_scheduler``: the cluster decides).
    dask_scheduler : str or None
        ``tcp://HOST:PORT`` of a running Dask scheduler.
    fn : callable
        The per-task function (default :func:`run_task`); tests pass their own.
    threads_per_worker, log_level, max_tasks_per_worker
        See :class:`~pipeline.batch.local.LocalExecutor`.
    dask_connect_timeout_s : float
        How long to try to reach the Dask scheduler.

    Raises
    ------
    ConfigError
        The Dask scheduler cannot be reached, or distributed is not installed.
    """
    if dask_scheduler:
        from pipeline.batch.dask_executor import DaskExecutor

        return DaskExecutor(dask_scheduler, fn=fn, connect_timeout_s=dask_connect_timeout_s)
    return LocalExecutor(
        workers,
        fn=fn,
        threads_per_worker=threads_per_worker,
        log_level=log_level if log_level is not None else logging.getLogger("pipeline").getEffectiveLevel(),
        max_tasks_per_worker=max_tasks_per_worker,
    )
