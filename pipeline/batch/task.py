"""One unit of batch work: :class:`StudyTask` in, :class:`TaskOutcome` out, :func:`run_task` in between.

``run_task`` is what every worker executes, whichever executor runs it (local worker process, a Dask
worker, the PACS listener). It never raises: every problem becomes an outcome with a status and one
line of error text, so one bad study cannot stop the others.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the worker imports this module; the heavy pipeline modules load on the first task
    from pipeline.report.outputs import OutputKind
    from pipeline.report.study_report import StudyReport
    from pipeline.run import PipelineConfig
    from pipeline.segment import Anchor

logger = logging.getLogger(__name__)

#: Default per-study limits (a 3-series study takes seconds and well under 1 GB; these catch runaways).
DEFAULT_TIMEOUT_S = 900.0
DEFAULT_MEMORY_LIMIT_MB = 4096


class Status(StrEnum):
    """How a study ended. ``Status.OK == "ok"``, so plain strings compare equal."""

    OK = "ok"
    FAILED = "failed"  # the pipeline refused the study (bad data, invalid clinical file) or raised
    TIMEOUT = "timeout"  # killed after StudyTask.timeout_s
    CRASHED = "crashed"  # the worker process died (signal, OOM killer) or exceeded memory_limit_mb
    INTERRUPTED = "interrupted"  # killed because the batch / service was stopped; run it again


#: Statuses that mean "this study needs to run again" (not a property of the study's data).
RETRYABLE = frozenset({Status.TIMEOUT, Status.CRASHED, Status.INTERRUPTED})


def _default_outputs() -> frozenset[OutputKind]:
    from pipeline.report.outputs import DEFAULT_OUTPUTS  # the registry only: no writer library is loaded

    return DEFAULT_OUTPUTS


@dataclass(frozen=True)
class StudyTask:
    """Everything a worker needs to assess one study (picklable, paths absolute for remote workers).

    Attributes
    ----------
    study_dir : Path
        Folder holding the study (or a folder shared with other studies: then set ``study_uid``).
    out_dir : Path
        This study's output folder, replaced atomically by :func:`pipeline.run.run_study`.
    study_uid : str or None
        StudyInstanceUID to pick out of ``study_dir``. With it, a ``clinical.yaml`` in ``study_dir`` is not
        picked up automatically (pass ``clinical_path``).
    outputs : frozenset of OutputKind
        What to write (:func:`pipeline.report.outputs.parse_outputs`).
    clinical_path : Path or None
        Clinical-input file; None: the one beside the study, if any (only without ``study_uid``).
    anchor : Anchor or None
        Level anchor, as parsed from the user's text (:func:`pipeline.segment.parse_anchor_option`), so that a
        bad one is refused before any study starts; a frozen dataclass of plain values, picklable for workers.
    config_dir : Path or None
        Configuration folder; None: the installed ``configs/``.
    config_sha256 : str or None
        Hash of the configuration the caller validated; a worker whose configuration differs refuses the
        study (a Dask worker with other config files must not produce silently different results).
    timeout_s, memory_limit_mb : float / int or None
        Per-study limits enforced by the executor (None: no limit). Memory is the worker's resident size.
    fingerprint : str or None
        The caller's fingerprint of the inputs; written into ``job.json`` in the output folder.
    key : str
        The caller's name for the study (batch: the output folder relative to the batch folder).
    """

    study_dir: Path
    out_dir: Path
    study_uid: str | None = None
    outputs: frozenset[OutputKind] = field(default_factory=_default_outputs)
    clinical_path: Path | None = None
    anchor: Anchor | None = None
    config_dir: Path | None = None
    timeout_s: float | None = DEFAULT_TIMEOUT_S
    memory_limit_mb: int | None = DEFAULT_MEMORY_LIMIT_MB
    config_sha256: str | None = None
    fingerprint: str | None = None
    key: str = ""


@dataclass(frozen=True)
class TaskOutcome:
    """The result of one :class:`StudyTask`.

    Attributes
    ----------
    status : str
        A :class:`Status` value: ``ok``, ``failed``, ``timeout``, ``crashed`` or ``interrupted``.
    error : str or None
        One line: the :class:`~pipeline.errors.PipelineError` message, or the exception type and message
        (never patient identifiers: messages carry paths and UIDs only).
    runtime_s : float
        Wall time of the study in the worker, without the worker's one-off imports and configuration loading
        (for timeouts and crashes: from the start of the task until it was killed).
    summary : dict
        For ``ok`` runs, the headline of report.json (:func:`summarize_report`); else empty.
    study_uid : str or None
        StudyInstanceUID (from the report; the task's when the run failed early).
    worker : str
        ``host:pid`` of the process that ran the study.
    worker_peak_rss_mb : float or None
        Peak resident memory of that worker process so far (all its tasks), when known.
    """

    task: StudyTask
    status: str
    error: str | None
    runtime_s: float
    summary: dict[str, Any] = field(default_factory=dict)
    study_uid: str | None = None
    worker: str = ""
    worker_peak_rss_mb: float | None = None
    # For FAILED: pipeline.errors.INPUT (the data; never retried), RESOURCE (disk full, I/O error: retried with
    # back-off) or BUG (an unexpected exception: retried at least once, reported). TIMEOUT / CRASHED are RESOURCE.
    error_kind: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == Status.OK

    @property
    def kind(self) -> str | None:
        """How to treat a run that did not succeed: ``input``, ``resource`` or ``bug`` (None when ok)."""
        from pipeline.errors import INPUT, RESOURCE

        if self.status == Status.OK:
            return None
        if self.status in (Status.TIMEOUT, Status.CRASHED, Status.INTERRUPTED):
            return RESOURCE
        return self.error_kind or INPUT


# --------------------------------------------------------------------------- the worker's function
_config_cache: dict[tuple[str, str | None], PipelineConfig] = {}
_config_lock = threading.Lock()


def _config(config_dir: Path | None) -> PipelineConfig:
    """The pipeline configuration, loaded once per worker process and folder (re-read if a file changed)."""
    from pipeline.config import default_config_dir, file_sha256
    from pipeline.run import CONFIG_FILES, load_pipeline_config

    d = Path(config_dir) if config_dir else default_config_dir()
    present = [d / name for name in CONFIG_FILES if (d / name).is_file()]
    key = (str(d.resolve()), file_sha256(*present))
    with _config_lock:
        cfg = _config_cache.get(key)
        if cfg is None:
            cfg = load_pipeline_config(d)
            _config_cache[key] = cfg
        return cfg


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def run_task(task: StudyTask) -> TaskOutcome:
    """Assess one study with :func:`pipeline.run.run_study`; never raises.

    Returns
    -------
    TaskOutcome
        ``ok`` with the report's headline, or ``failed`` with one line of error text. A ``MemoryError``
        gives ``crashed`` (the executor then replaces the worker process). Timeouts and memory limits are
        enforced by the executor, not here.
    """
    t0 = time.perf_counter()
    try:
        from pipeline.errors import ConfigError
        from pipeline.run import RunOptions, run_study

        config = _config(task.config_dir)
        t0 = time.perf_counter()  # the study's own time: not the worker's one-off imports and config loading
        if task.config_sha256 and config.sha256 != task.config_sha256:
            raise ConfigError(
                f"{config.config_dir}: this worker's configuration (sha256 {config.sha256[:12]}) differs from the "
                f"one the batch checked ({task.config_sha256[:12]}); give every worker the same config files"
            )
        job = {
            "key": task.key,
            "fingerprint": task.fingerprint,
            "study_dir": str(task.study_dir),
            "study_uid": task.study_uid,
            "clinical_path": str(task.clinical_path) if task.clinical_path else None,
            "config_sha256": config.sha256,
            "worker": worker_name(),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        options = RunOptions(
            outputs=task.outputs,
            clinical_path=task.clinical_path,
            anchor=task.anchor,
            study_uid=task.study_uid,
            job=job,
            force=True,  # the batch owns DIR (pipeline.batch.runner.prepare_out_dir); foreign files stay refused
        )
        result = run_study(task.study_dir, task.out_dir, config=config, options=options)
        return TaskOutcome(
            task,
            Status.OK,
            None,
            time.perf_counter() - t0,
            summarize_report(result.report),
            study_uid=result.study_uid,
            worker=worker_name(),
        )
    except MemoryError:
        return _failure(task, Status.CRASHED, "out of memory (MemoryError) while assessing the study", t0, "resource")
    except Exception as exc:  # noqa: BLE001 - the point of a worker: one study's error is its outcome
        from pipeline.errors import BUG, INPUT, PipelineError, error_kind

        kind = error_kind(exc)
        who = task.key or task.study_dir
        if kind == INPUT:
            text = str(exc)
            logger.warning("study %s failed: %s", who, text)
        elif kind == BUG:
            text = f"{type(exc).__name__}: {exc}"
            logger.error(
                "study %s: unexpected error (a bug; please report it with this trace)\n%s", who, traceback.format_exc()
            )
        else:
            text = str(exc) if isinstance(exc, PipelineError) else f"{type(exc).__name__}: {exc}"
            logger.warning("study %s: resource error, worth retrying later: %s", who, text)
        return _failure(task, Status.FAILED, text, t0, kind)


def _failure(task: StudyTask, status: Status, text: str, t0: float, kind: str | None = None) -> TaskOutcome:
    return TaskOutcome(
        task,
        status,
        one_line(text),
        time.perf_counter() - t0,
        study_uid=task.study_uid,
        worker=worker_name(),
        error_kind=kind,
    )


def one_line(text: str, limit: int = 500) -> str:
    """Collapse whitespace (error messages go into one CSV cell) and cap the length."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


# --------------------------------------------------------------------------- report headline
@dataclass(frozen=True)
class _Body:
    """What the headline says of one vertebral body."""

    name: str  # level, or "?<label>" when the level is unknown
    is_sacrum: bool
    genant_grade: int | None
    height_loss_pct: float | None
    morphology: str | None
    grade_state: str
    edema: bool | None


def summarize_report(report: StudyReport) -> dict[str, Any]:
    """The headline of a study's report for batch summaries (JSON-able; no patient identifiers).

    Keys: ``study_uid``, ``levels`` (labelled bodies cranial to caudal, ``"?"`` when the level is unknown),
    ``fractures`` (``[{"level", "genant_grade", "height_loss_pct", "morphology", "grade_state"}]`` for Genant >= 1;
    ``grade_state`` "uncertain" when the fracture status is unknown, see :func:`pipeline.model.grade_display`),
    ``edema_levels``, ``edema_unknown_levels`` (not assessable), ``candidate_levels``,
    ``indeterminate_levels``, ``contraindicated_levels``, ``decision`` (the eligibility summary sentence),
    ``n_warnings``, ``timings_ms``.
    """
    bodies = [
        _Body(
            v.level.value if v.level is not None else f"?{v.label}",
            v.is_sacrum,
            v.morphometry.genant_grade if v.morphometry is not None else None,
            v.morphometry.height_loss_pct if v.morphometry is not None else None,
            v.morphometry.morphology.value if v.morphometry is not None else None,
            v.grade.state.value,
            v.stir.edema if v.stir is not None else None,
        )
        for v in report.vertebrae
    ]
    elig = report.eligibility
    decisions = [(d.decision.value, d.name) for d in elig.levels] if elig is not None else []
    return _headline(
        report.study.study_uid,
        bodies,
        decisions,
        elig.summary if elig is not None else None,
        len(report.warnings),
        report.timings_ms,
    )


def summarize_report_json(report: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`summarize_report` of a report.json read back from disk (``--resume`` of a study whose ledger line
    was lost): the few keys the headline needs, as report.schema.json names them."""
    from pipeline.model import GradeState

    bodies = [
        _Body(
            str(v.get("level") or f"?{v.get('label')}"),
            bool(v.get("is_sacrum")),
            v.get("genant_grade"),
            v.get("height_loss_pct"),
            v.get("morphology"),
            # reports before schema 1.1 have no grade_state: every grade they carry was a definite one
            str(v.get("grade_state") or GradeState.DEFINITE.value),
            (v.get("stir") or {}).get("edema"),
        )
        for v in report.get("vertebrae") or []
    ]
    elig = report.get("eligibility") or {}
    decisions = [(str(lv.get("decision")), str(lv.get("name") or lv.get("level"))) for lv in elig.get("levels") or []]
    return _headline(
        (report.get("study") or {}).get("study_instance_uid"),
        bodies,
        decisions,
        elig.get("summary"),
        len(report.get("warnings") or []),
        report.get("timings_ms") or {},
    )


def _headline(
    study_uid: str | None,
    bodies: list[_Body],
    decisions: list[tuple[str, str]],
    summary: str | None,
    n_warnings: int,
    timings_ms: Mapping[str, float],
) -> dict[str, Any]:
    by_decision: dict[str, list[str]] = {}
    for decision, name in decisions:
        by_decision.setdefault(decision, []).append(name)
    return {
        "study_uid": study_uid,
        "levels": [b.name for b in bodies],
        "fractures": [
            {
                "level": b.name,
                "genant_grade": b.genant_grade,
                "height_loss_pct": b.height_loss_pct,
                "morphology": b.morphology,
                "grade_state": b.grade_state,
            }
            for b in bodies
            if (b.genant_grade or 0) >= 1
        ],
        "edema_levels": [b.name for b in bodies if b.edema is True],
        "edema_unknown_levels": [b.name for b in bodies if not b.is_sacrum and b.edema is None],
        "candidate_levels": by_decision.get("candidate", []) + by_decision.get("candidate_with_cautions", []),
        "indeterminate_levels": by_decision.get("indeterminate", []),
        "contraindicated_levels": by_decision.get("contraindicated", []),
        "decision": summary,
        "n_warnings": n_warnings,
        "timings_ms": dict(timings_ms),
    }
