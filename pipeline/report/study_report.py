"""The report of one study: every stage's typed result, made once by :func:`pipeline.run.run_study`.

Every output is derived from it: ``report.json`` through :meth:`StudyReport.to_json` (the only place the
report's JSON is assembled; schema ``report.schema.json``), and the HTML page, the overlays, DICOM SEG / SR / SC,
the batch summary and the terminal summary through its attributes. :attr:`StudyReport.vertebrae` joins, per
vertebral body, its segmentation, morphometry, STIR finding and eligibility decision, with the numbers rounded as
report.json has them, so that every output shows the same numbers.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from pipeline import __version__
from pipeline.levels import Level
from pipeline.model import (
    Decision,
    EligibilityResult,
    GradeDisplay,
    SegmentationResult,
    SeriesChoice,
    SeriesDecision,
    SeriesRecord,
    StirAssessment,
    StirFinding,
    StudyRecord,
    VertebraMorphometry,
    VertebraSeg,
    grade_display,
)
from pipeline.report.json_report import (
    SCHEMA_VERSION,
    eligibility_section,
    finding_entry,
    jsonable,
    no_finding,
    no_finding_entry,
    reported_finding,
    reported_morphometry,
    reported_seg,
    segmentation_section,
    series_section,
    stir_sections,
    study_section,
    vertebra_entry,
)


@dataclass(frozen=True)
class ClinicalInputsUsed:
    """Whether the clinical rules had the clinical file (report.json ``clinical_inputs``)."""

    file: str | None  # its name; None when none was given or found
    provided: bool


@dataclass(frozen=True)
class OutputFiles:
    """The files written for a study, relative to its output folder (report.json ``outputs``)."""

    labels: str | None = None
    overlays: tuple[str, ...] = ()
    seg: str | None = None
    sr: str | None = None
    sc: tuple[str, ...] = ()
    html: str | None = None

    def written(self) -> list[tuple[str, str | tuple[str, ...]]]:
        """(name, file or files) of the outputs written, in this order."""
        items = (
            ("labels", self.labels),
            ("overlays", self.overlays),
            ("seg", self.seg),
            ("sr", self.sr),
            ("sc", self.sc),
            ("html", self.html),
        )
        return [(k, v) for k, v in items if v]

    def to_json(self) -> dict[str, Any]:
        """report.json ``outputs``: an output not written is left out."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.written()}


@dataclass(frozen=True)
class VertebraReport:
    """One vertebral body as every output shows it; numbers rounded as report.json has them.

    ``morphometry`` is None when the morphometry stage did not measure this body; ``stir`` is None when the
    STIR stage did not run, and a not-assessable finding with the stage's reason when it ran without a finding
    for this body (``stir_placeholder``).
    """

    seg: VertebraSeg
    morphometry: VertebraMorphometry | None = None
    stir: StirFinding | None = None
    stir_placeholder: bool = False
    decision: Decision | None = None  # None: not evaluated by the rules

    @property
    def label(self) -> int:
        return self.seg.label

    @property
    def level(self) -> Level | None:
        return self.seg.level

    @property
    def is_sacrum(self) -> bool:
        return self.seg.is_sacrum

    @property
    def name(self) -> str:
        """``"L1"``, ``"S1"``, ``"L5 (sacrum)"`` (a sacrum named otherwise) or ``"body 3 (level unknown)"``."""
        if self.level is None:
            return f"body {self.label} (level unknown)"
        level = self.level.value
        return f"{level} (sacrum)" if self.is_sacrum and level != "S1" else level

    @property
    def grade(self) -> GradeDisplay:
        """How the Genant grade is shown (:func:`pipeline.model.grade_display`); not assessable when not measured."""
        if self.morphometry is None:
            return grade_display(assessable=False, genant_grade=None)
        return self.morphometry.grade_display


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class StudyReport:
    """Everything known about one assessed study. Stages that did not run are None.

    ``patient`` (name, id, birth_date, sex) is set only when a deployment explicitly asks for patient identity
    in its reports (the HTML then shows it); by default the study is identified by its UID and the salted
    ``patient_key`` only.
    """

    study: StudyRecord
    choice: SeriesChoice | None = None
    segmentation: SegmentationResult | None = None
    morphometry: tuple[VertebraMorphometry, ...] | None = None
    stir: StirAssessment | None = None
    eligibility: EligibilityResult | None = None
    clinical_inputs: ClinicalInputsUsed | None = None
    warnings: tuple[str, ...] = ()  # without repeats
    outputs: OutputFiles = OutputFiles()
    timings_ms: Mapping[str, float] = field(default_factory=dict)  # ms (0.1) per stage, then "total"
    config_sha256: str = ""
    patient: Mapping[str, str] | None = None
    pipeline_version: str = __version__
    generated_at: str = field(default_factory=_now)  # UTC, ISO 8601

    def __post_init__(self) -> None:
        # frozen: normalised through object.__setattr__, once, before anyone reads them
        object.__setattr__(self, "warnings", tuple(dict.fromkeys(self.warnings)))
        object.__setattr__(self, "timings_ms", {k: round(float(v), 1) for k, v in self.timings_ms.items()})
        if self.morphometry is not None:
            object.__setattr__(self, "morphometry", tuple(self.morphometry))

    @cached_property
    def vertebrae(self) -> tuple[VertebraReport, ...]:
        """Every segmented body, cranial to caudal, with its measurements and decision (empty: no segmentation)."""
        if self.segmentation is None:
            return ()
        morph = {m.label: m for m in self.morphometry or ()}
        findings = {f.label: f for f in self.stir.findings} if self.stir is not None else {}
        out = []
        for v in self.segmentation.vertebrae:
            m = morph.get(v.label)
            f = findings.get(v.label)
            out.append(
                VertebraReport(
                    seg=reported_seg(v),
                    morphometry=reported_morphometry(m) if m is not None else None,
                    stir=reported_finding(f)
                    if f is not None
                    else (no_finding(v.label, self.stir) if self.stir else None),
                    stir_placeholder=self.stir is not None and f is None,
                    decision=self.eligibility.decision_of(v.label) if self.eligibility is not None else None,
                )
            )
        return tuple(out)

    def series_decision(self, series: SeriesRecord) -> SeriesDecision | None:
        """Why ``series`` was or was not used (None: not considered)."""
        return self.choice.decision_for(series) if self.choice is not None else None

    def used_series(self, used_as: str) -> SeriesRecord | None:
        """The first series used as ``"anatomy"``, ``"stir"`` or ``"t1"``."""
        for s in self.study.series:
            d = self.series_decision(s)
            if d is not None and d.used_as == used_as:
                return s
        return None

    def to_json(self) -> dict[str, Any]:
        """``report.json`` (``report.schema.json``): the only place the report's JSON is made."""
        report: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "pipeline": {
                "name": "spine-assess",
                "version": self.pipeline_version,
                "config_sha256": self.config_sha256,
                "generated_at": self.generated_at,
            },
            "study": study_section(self.study),
            "series": series_section(self.study, self.choice),
        }
        if self.segmentation is not None:
            report["segmentation"] = segmentation_section(self.segmentation)
            if self.stir is not None:
                report["stir"] = stir_sections(self.stir)[0]
            report["vertebrae"] = [vertebra_entry(v.seg, v.morphometry, _stir_json(v)) for v in self.vertebrae]
        if self.patient is not None:
            report["patient"] = {k: str(v) for k, v in self.patient.items() if v not in (None, "")}
        if self.clinical_inputs is not None:
            report["clinical_inputs"] = {"file": self.clinical_inputs.file, "provided": self.clinical_inputs.provided}
        if self.eligibility is not None:
            report["eligibility"] = eligibility_section(self.eligibility)
        report["outputs"] = self.outputs.to_json()
        report["warnings"] = list(self.warnings)
        report["timings_ms"] = dict(self.timings_ms)
        return jsonable(report)


def _stir_json(v: VertebraReport) -> dict[str, Any] | None:
    if v.stir is None:
        return None
    return no_finding_entry(v.stir.reason) if v.stir_placeholder else finding_entry(v.stir)


class StageTimer:
    """Wall-clock time per pipeline stage, as report.json ``timings_ms`` records it."""

    def __init__(self) -> None:
        self._t0 = time.perf_counter()
        self._ms: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Add the time spent in the ``with`` block to stage ``name``."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self._ms[name] = self._ms.get(name, 0.0) + (time.perf_counter() - t0) * 1000.0

    def timings_ms(self) -> dict[str, float]:
        """Every stage so far in ms (0.1 ms), then ``total``: the time since the timer was made."""
        out = {k: round(v, 1) for k, v in self._ms.items()}
        out["total"] = round((time.perf_counter() - self._t0) * 1000.0, 1)
        return out
