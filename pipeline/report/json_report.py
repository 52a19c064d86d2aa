"""The JSON form of each stage's result (the sections of ``report.json``, assembled by
:meth:`pipeline.report.study_report.StudyReport.to_json`), the report's precision, and the published JSON Schema.

Stages that did not run are absent from the report, never filled with invented values; a vertebra whose
measurement failed carries ``null`` plus the reason.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from enum import Enum
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
from referencing import Registry, Resource

from pipeline.errors import PipelineError
from pipeline.model import (
    EdemaPattern,
    EligibilityResult,
    Heights,
    LevelDecision,
    Question,
    Reference,
    RuleInfo,
    RuleOutcome,
    SegmentationResult,
    SeriesChoice,
    SessionPlan,
    StirAssessment,
    StirFinding,
    StirStatus,
    StudyRecord,
    Tri,
    Vec3,
    VertebraMorphometry,
    VertebraSeg,
)

SCHEMA_VERSION = "1.1.0"  # 1.1: vertebrae[].grade_state, grade_note
SCHEMA_FILE = "report.schema.json"


def jsonable(obj: Any) -> Any:
    """Convert dataclasses, enums, paths, numpy scalars/arrays and tuples to JSON types.

    Non-finite floats become ``None`` (JSON has no NaN); Volumes are never serialised.
    """
    if obj is None or isinstance(obj, (bool, str, int)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.generic):
        return jsonable(obj.item())
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(jsonable(k)): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in obj]
    raise TypeError(f"cannot serialise {type(obj).__name__} into report.json")


def _round(x: float | None, nd: int = 2) -> float | None:
    if x is None or not math.isfinite(x):
        return None
    return round(float(x), nd)


def _keep_nan(x: float, nd: int) -> float:
    """``x`` rounded; a non-finite value stays as it is (report.json writes it as null)."""
    return round(float(x), nd) if math.isfinite(x) else x


# --------------------------------------------------------------------------- the report's precision
# report.json rounds the measurements to these decimals, and every other output shows them as report.json has
# them: the writers read the rounded copies that StudyReport.vertebrae holds, made here.
def reported_seg(v: VertebraSeg) -> VertebraSeg:
    """``v`` with its numbers rounded as report.json has them."""
    x, y, z = (_keep_nan(c, 2) for c in v.centroid_lps_mm)
    return dataclasses.replace(
        v,
        level_confidence=_keep_nan(v.level_confidence, 3),
        centroid_lps_mm=(x, y, z),
        quality=_keep_nan(v.quality, 3),
        volume_mm3=_keep_nan(v.volume_mm3, 1),
    )


def reported_morphometry(m: VertebraMorphometry) -> VertebraMorphometry:
    """``m`` with its numbers rounded as report.json has them (the extra fields are reported as they are)."""
    h = m.heights
    return dataclasses.replace(
        m,
        heights=Heights(_keep_nan(h.anterior_mm, 2), _keep_nan(h.middle_mm, 2), _keep_nan(h.posterior_mm, 2))
        if h
        else None,
        reference_height_mm=_round(m.reference_height_mm, 2),
        height_loss_pct=_round(m.height_loss_pct, 1),
        wedge_angle_deg=_round(m.wedge_angle_deg, 1),
        ratios={k: _keep_nan(v, 3) for k, v in m.ratios.items()},
        slice_spread_pct=_round(m.slice_spread_pct, 1),
        landmarks_lps={k: _landmark(p) for k, p in m.landmarks_lps.items()},
    )


def _landmark(p: Vec3) -> Vec3:
    x, y, z = (_keep_nan(c, 2) for c in p)
    return (x, y, z)


def reported_finding(f: StirFinding) -> StirFinding:
    """``f`` with its numbers rounded as report.json has them (the extra fields are reported as they are)."""
    return dataclasses.replace(
        f,
        ratio=_round(f.ratio, 3),
        edema_fraction=_round(f.edema_fraction, 3),
        confidence=_keep_nan(f.confidence, 3),
    )


# --------------------------------------------------------------------------- sections
def study_section(study: StudyRecord) -> dict[str, Any]:
    return {
        "study_instance_uid": study.study_uid,
        "patient_key": study.patient_key,
        "description": study.description,
        "study_date": study.study_date,
        "n_series": len(study.series),
        "n_skipped_files": len(study.skipped),
        "skipped_files": [{"path": str(s.path), "reason": s.reason} for s in study.skipped[:50]],
    }


def series_section(study: StudyRecord, choice: SeriesChoice | None) -> list[dict[str, Any]]:
    # A series split by ingest (e.g. a 3-plane localizer) has one record and one decision per stack.
    out = []
    for s in study.series:
        d = choice.decision_for(s) if choice else None
        out.append(
            {
                "series_instance_uid": s.series_uid,
                "stack": s.stack,
                "series_number": s.series_number,
                "description": s.description,
                "modality": s.modality,
                "manufacturer": s.manufacturer,
                "role": s.role.value,
                "role_rule": s.role_rule,
                "role_confidence": _round(s.role_confidence, 3),
                "substitute": s.substitute.value if s.substitute else None,
                "orientation": s.orientation.value,
                "n_images": s.n_images,
                "rows": s.rows,
                "cols": s.cols,
                "pixel_spacing_mm": list(s.pixel_spacing_mm) if s.pixel_spacing_mm else None,
                "slice_thickness_mm": s.slice_thickness_mm,
                "repetition_time_ms": s.repetition_time_ms,
                "echo_time_ms": s.echo_time_ms,
                "inversion_time_ms": s.inversion_time_ms,
                "transfer_syntaxes": list(s.transfer_syntaxes),
                "source": s.source,
                "problems": list(s.problems),
                "used": bool(d.used) if d else False,
                "used_as": d.used_as if d else None,
                "reason": d.reason if d else "not considered",
            }
        )
    return out


def segmentation_section(seg: SegmentationResult) -> dict[str, Any]:
    return {
        "series_instance_uid": seg.series_uid,
        "n_bodies": len(seg.vertebrae),
        "sacrum_found": seg.sacrum_found,
        "labelling_method": seg.labelling_method,
        "model_sha256": seg.model_sha256,
        "column_axis_lps_mm": [[_round(c, 1) for c in p] for p in seg.column_axis_lps],
        "label_map_levels": {str(v.label): (v.level.value if v.level else None) for v in seg.vertebrae},
    }


def vertebra_entry(
    seg: VertebraSeg,
    morph: VertebraMorphometry | None,
    stir_finding: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """One element of ``report["vertebrae"]`` (contract names: level, level_confidence, centroid_lps_mm,
    heights_mm, reference_height_mm, height_loss_pct, genant_grade, morphology, stir)."""
    seg = reported_seg(seg)
    entry: dict[str, Any] = {
        "label": seg.label,
        "level": seg.level.value if seg.level else None,
        "level_confidence": seg.level_confidence,
        "is_sacrum": seg.is_sacrum,
        "centroid_lps_mm": list(seg.centroid_lps_mm),
        "mid_slice": seg.mid_slice,
        "bbox": list(seg.bbox),
        "segmentation_quality": seg.quality,
        "volume_mm3": seg.volume_mm3,
    }
    if morph is not None:
        morph = reported_morphometry(morph)
        h = morph.heights
        entry.update(
            {
                "heights_mm": (
                    {"anterior": h.anterior_mm, "middle": h.middle_mm, "posterior": h.posterior_mm} if h else None
                ),
                "reference_height_mm": morph.reference_height_mm,
                "height_loss_pct": morph.height_loss_pct,
                "genant_grade": morph.genant_grade,
                "grade_state": morph.grade_display.state.value,
                "grade_note": morph.grade_display.note,
                "morphology": morph.morphology.value,
                "wedge_angle_deg": morph.wedge_angle_deg,
                "morphometry": {
                    "assessable": morph.assessable,
                    "reason": morph.reason,
                    "reference_method": morph.reference_method,
                    "reference_labels": list(morph.reference_labels),
                    "ratios": dict(morph.ratios),
                    "slice_spread_pct": morph.slice_spread_pct,
                    "landmarks_lps_mm": {k: list(v) for k, v in morph.landmarks_lps.items()},
                    "posterior_wall": jsonable(morph.posterior_wall),
                    **{k: jsonable(v) for k, v in _extra_fields(morph, _MORPH_CORE).items()},
                },
            }
        )
    if stir_finding is not None:
        entry["stir"] = dict(stir_finding)
    return jsonable(entry)


_MORPH_CORE = frozenset(
    {
        "label",
        "level",
        "assessable",
        "reason",
        "heights",
        "reference_height_mm",
        "reference_method",
        "reference_labels",
        "height_loss_pct",
        "genant_grade",
        "morphology",
        "wedge_angle_deg",
        "ratios",
        "landmarks_lps",
        "posterior_wall",
        "slice_spread_pct",
    }
)


def _extra_fields(obj: Any, core: frozenset[str]) -> dict[str, Any]:
    """Fields a stage added to its dataclass beyond the contract: reported too, under their own names."""
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj) if f.name not in core}


def finding_entry(f: StirFinding) -> dict[str, Any]:
    """``vertebrae[].stir`` of a body the STIR stage assessed."""
    f = reported_finding(f)
    return {
        "ratio": f.ratio,
        "edema_fraction": f.edema_fraction,
        "edema": f.edema,
        "pattern": f.pattern.value,
        "confidence": f.confidence,
        "reason": f.reason,
        "t1_agrees": f.t1_agrees,
        **{k: jsonable(v) for k, v in _extra_fields(f, _STIR_FINDING_CORE).items()},
    }


def no_finding(label: int, stir: StirAssessment) -> StirFinding:
    """What is shown for a body the STIR stage gave no finding for: not assessable, with the stage's reason."""
    reason = stir.reason if stir.status != StirStatus.MEASURED else "not measured"
    return StirFinding(label, None, None, None, EdemaPattern.NOT_ASSESSABLE, 0.0, reason)


def no_finding_entry(reason: str) -> dict[str, Any]:
    """``vertebrae[].stir`` of a body the STIR stage gave no finding for (see :func:`no_finding`)."""
    return {
        "ratio": None,
        "edema_fraction": None,
        "edema": None,
        "pattern": EdemaPattern.NOT_ASSESSABLE.value,
        "confidence": 0.0,
        "reason": reason,
    }


def stir_sections(stir: StirAssessment) -> tuple[dict[str, Any], dict[int, dict[str, Any]]]:
    """(study-level ``stir`` section, per-label ``vertebrae[].stir`` entries)."""
    per_label = {f.label: finding_entry(f) for f in stir.findings}
    section = {
        "status": stir.status,
        "reason": stir.reason,
        "series_instance_uid": stir.series_uid,
        "substitute": stir.substitute.value if stir.substitute else None,
        "registration": stir.registration,
        "registration_residual_mm": registration_residual(stir),
        "reference_value": _round(stir.reference_value, 3),
        "fluid_value": _round(stir.fluid_value, 3),
        "threshold_value": _round(stir.threshold_value, 3),
        **{k: jsonable(v) for k, v in _extra_fields(stir, _STIR_CORE).items()},
    }
    return section, per_label


def registration_residual(stir: StirAssessment) -> float | None:
    """The STIR registration's residual in mm, as report.json has it."""
    return _round(stir.registration_residual_mm)


_STIR_FINDING_CORE = frozenset(
    {"label", "ratio", "edema_fraction", "edema", "pattern", "confidence", "reason", "t1_agrees"}
)
_STIR_CORE = frozenset(
    {
        "status",
        "reason",
        "series_uid",
        "substitute",
        "registration",
        "registration_residual_mm",
        "reference_value",
        "fluid_value",
        "threshold_value",
        "findings",
        "warnings",
        "stir_on_grid",
        "edema_map",
    }
)


ELIGIBILITY_VERSION = 1  # "schema_version" of the eligibility section (configs/eligibility_result.schema.json)


def eligibility_section(result: EligibilityResult) -> dict[str, Any]:
    """``report["eligibility"]``: the rules stage's result as ``configs/eligibility_result.schema.json`` has it."""
    return {
        "schema_version": ELIGIBILITY_VERSION,
        "disclaimer": result.disclaimer,
        "summary": result.summary,
        "rules": {"file": result.rules_file, "sha256": result.rules_sha256, "version": result.rules_version},
        "rule_catalogue": [_rule_info(c) for c in result.catalogue],
        "clinical": {"provided": result.clinical_provided, "file": result.clinical_file},
        "levels": [_level_decision(d) for d in result.levels],
        "excluded_levels": [{"name": n, "reason": r} for n, r in result.excluded],
        "patient_rules": [_rule_outcome(t) for t in result.patient_trace],
        "plan": _session_plan(result.plan),
        "questions": [_question(q) for q in result.questions],
        "sentences": list(result.sentences),
        "references": [_reference(r) for r in result.references],
    }


def _tri_word(v: Tri) -> str:
    return "unknown" if v is None else ("true" if v else "false")


def _rule_outcome(o: RuleOutcome) -> dict[str, Any]:
    d: dict[str, Any] = {
        "rule": o.rule,
        "kind": o.kind.value,
        "result": _tri_word(o.result),
        "inputs": dict(o.inputs),
        "missing": list(o.missing),
        "because": list(o.because),
        "sentence": o.sentence,
    }
    if o.assumed:
        d["assumed"] = o.assumed
    return d


def technique_word(kyphoplasty_preferred: Tri) -> str:
    """A candidate level's technique as report.json names it."""
    if kyphoplasty_preferred is None:
        return "undetermined"
    return "kyphoplasty_preferred" if kyphoplasty_preferred else "either"


def _level_decision(d: LevelDecision) -> dict[str, Any]:
    return {
        "level": d.level.value if d.level is not None else None,
        "label": d.label,
        "name": d.name,
        "decision": d.decision.value,
        "possible_decisions": [p.value for p in d.possible],
        "indications_met": list(d.indications_met),
        "indications_not_met": list(d.indications_not_met),
        "absolute_contraindications": list(d.absolute),
        "relative_contraindications": list(d.relative),
        "unknown_rules": list(d.unknown),
        "deciding_inputs": list(d.deciding_inputs),
        "technique": technique_word(d.kyphoplasty_preferred) if d.decision.is_candidate else None,
        "reasons": list(d.reasons),
        "notes": list(d.notes),
        "trace": [_rule_outcome(t) for t in d.trace],
    }


def _question(q: Question) -> dict[str, Any]:
    return {
        "input": q.input,
        "asked_of": q.asked_of,
        "question": q.text,
        "field": q.field,
        "levels": list(q.levels),
        "rules": list(q.rules),
    }


def _session_plan(p: SessionPlan) -> dict[str, Any]:
    return {
        "max_levels_per_session": p.max_levels_per_session,
        "priority": list(p.priority),
        "sessions": [{"session": i + 1, "levels": list(s)} for i, s in enumerate(p.sessions)],
        "staged": len(p.sessions) > 1,
        "pending_levels": list(p.pending),
        "technique": {
            "note": p.technique_note,
            "kyphoplasty_preferred": list(p.kyphoplasty_preferred),
            "either": list(p.either_technique),
            "undetermined": list(p.technique_undetermined),
        },
        "biopsy": {"recommended": p.biopsy, "sentence": p.biopsy_sentence},
    }


def _rule_info(rule: RuleInfo) -> dict[str, Any]:
    sources = [
        {"seed": s.seed, "section": s.section, "quote": s.quote} if s.seed else {"policy": s.policy}
        for s in rule.sources
    ]
    return {
        "id": rule.id,
        "kind": rule.kind.value,
        "scope": rule.scope.value,
        "text": rule.text,
        "note": rule.note,
        "sources": sources,
    }


def _reference(ref: Reference) -> dict[str, Any]:
    return {
        "seed": ref.seed,
        "short": ref.short,
        "citation": ref.citation,
        "authors": ref.authors or None,
        "title": ref.title or None,
        "published_in": ref.published_in,
        "year": ref.year,
        "not_stated": ref.not_stated or None,
    }


def load_schema() -> dict[str, Any]:
    text = resources.files("pipeline.report").joinpath(SCHEMA_FILE).read_text(encoding="utf-8")
    return json.loads(text)


ELIGIBILITY_SCHEMA_FILE = "eligibility_result.schema.json"  # in configs/: the rules stage publishes its own


def load_eligibility_schema() -> dict[str, Any]:
    from pipeline.config import default_config_dir

    return json.loads((default_config_dir() / ELIGIBILITY_SCHEMA_FILE).read_text(encoding="utf-8"))


def report_validator() -> jsonschema.Draft202012Validator:
    """Validator of report.json; ``eligibility`` is checked against the rules stage's result schema (by $id)."""
    elig = load_eligibility_schema()
    registry: Registry = Registry().with_resource(elig["$id"], Resource.from_contents(elig))
    return jsonschema.Draft202012Validator(load_schema(), registry=registry)


def validate_report(report: Mapping[str, Any]) -> None:
    """Raise :class:`PipelineError` listing the first schema violations (a bug in the pipeline, not the input)."""
    validator = report_validator()
    errors = sorted(validator.iter_errors(report), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors[:5]]
        raise PipelineError("report.json does not conform to report.schema.json: " + "; ".join(lines))


def write_json(report: Mapping[str, Any], path: Path) -> None:
    path.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n", encoding="utf-8")
