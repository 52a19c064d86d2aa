"""Batch processing: many studies, each in an isolated worker process, locally or on a Dask cluster.

The executor API (shared with the PACS listener)::

    from pipeline.batch import StudyTask, make_executor

    ex = make_executor(workers=2)                     # or make_executor(dask_scheduler="tcp://host:8786")
    fut = ex.submit(StudyTask(study_dir, out_dir, timeout_s=900, memory_limit_mb=4096))
    outcome = fut.result()                            # TaskOutcome: status ok/failed/timeout/crashed/interrupted
    ex.shutdown()

Modules: :mod:`.task` (StudyTask, TaskOutcome, run_task), :mod:`.local` (isolated worker processes),
:mod:`.worker` (the worker process), :mod:`.dask_executor`, :mod:`.executor` (Protocol + factory),
:mod:`.plan` (discovery -> studies, output names, clinical files, fingerprints), :mod:`.ledger`,
:mod:`.runner` (resume, scheduling, stopping), :mod:`.summary`, :mod:`.progress`. The command is
``spine-assess batch`` (docs/batch.md).
"""

from pipeline.batch.executor import Executor, make_executor
from pipeline.batch.local import LocalExecutor, TaskFuture
from pipeline.batch.task import (
    DEFAULT_MEMORY_LIMIT_MB,
    DEFAULT_TIMEOUT_S,
    Status,
    StudyTask,
    TaskOutcome,
    run_task,
    summarize_report,
)

__all__ = [
    "DEFAULT_MEMORY_LIMIT_MB",
    "DEFAULT_TIMEOUT_S",
    "Executor",
    "LocalExecutor",
    "Status",
    "StudyTask",
    "TaskFuture",
    "TaskOutcome",
    "make_executor",
    "run_task",
    "summarize_report",
]
