"""Study jobs of the listener run on the batch executor (:mod:`pipeline.batch`), nothing of their own.

The same :func:`pipeline.batch.run_task` as ``spine-assess batch`` runs every study, in local worker processes
by default or on a Dask cluster (``processing.dask_scheduler``), with the executor's per-study timeout and
memory guard. This module only translates the listener's settings into a :class:`pipeline.batch.StudyTask`; a
run's outcome is a :class:`pipeline.batch.Status`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.listener.config import ProcessingConfig


def make_job_executor(cfg: ProcessingConfig) -> Any:
    """The batch executor (``submit(task) -> Future[TaskOutcome]``, ``shutdown(wait)``) for these settings."""
    from pipeline.batch import make_executor

    return make_executor(workers=cfg.workers, dask_scheduler=cfg.dask_scheduler or None)


def study_task(
    *,
    study_uid: str,
    study_dir: Path,
    out_dir: Path,
    cfg: ProcessingConfig,
    config_sha256: str | None,
) -> Any:
    """The :class:`pipeline.batch.StudyTask` that assesses one spooled study into ``out_dir``."""
    from pipeline.batch import StudyTask

    return StudyTask(
        study_dir=Path(study_dir),
        out_dir=Path(out_dir),
        study_uid=study_uid,
        outputs=frozenset(cfg.output_kinds),
        config_dir=Path(cfg.config_dir).resolve() if cfg.config_dir else None,
        timeout_s=cfg.timeout_s,
        memory_limit_mb=cfg.memory_limit_mb or None,
        config_sha256=config_sha256,
        key=study_uid,
    )
