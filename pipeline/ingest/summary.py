"""Tables of studies and series for ``spine-assess inspect`` (text and JSON), and the per-series rows that
``report.json`` ``series`` can reuse (:func:`series_rows`).

Patient identity is never part of these outputs unless explicitly asked for (:func:`patient_identity`,
``inspect --show-patient``); studies are identified by StudyInstanceUID and a salted ``patient_key``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pydicom
from pydicom.uid import UID

from pipeline.ingest.attributes import string
from pipeline.ingest.headers import BoundedFile, _quiet
from pipeline.ingest.selection import series_label
from pipeline.model import SeriesChoice, SeriesDecision, SeriesRecord, SkippedFile, StudyRecord

_MAX_SKIP_EXAMPLES = 3


def series_rows(study: StudyRecord, choice: SeriesChoice) -> list[dict[str, Any]]:
    """One JSON-ready mapping per series of the study: identity, geometry, role (+ rule, confidence),
    and whether it is used, as what, and why."""
    decisions = {(d.series_uid, d.stack): d for d in choice.decisions}
    rows = []
    for s in study.series:
        d = decisions.get((s.series_uid, s.stack)) or SeriesDecision(s.series_uid, False, None, "no decision")
        rows.append(
            {
                "series_uid": s.series_uid,
                "stack": s.stack,
                "series_number": s.series_number,
                "description": s.description,
                "modality": s.modality,
                "source": s.source,
                "orientation": s.orientation.value,
                "role": s.role.value,
                "role_rule": s.role_rule,
                "role_confidence": s.role_confidence,
                "substitute": s.substitute.value if s.substitute else None,
                "n_images": s.n_images,
                "rows": s.rows,
                "cols": s.cols,
                "pixel_spacing_mm": list(s.pixel_spacing_mm) if s.pixel_spacing_mm else None,
                "slice_spacing_mm": s.slice_spacing_mm,
                "slice_thickness_mm": s.slice_thickness_mm,
                "repetition_time_ms": s.repetition_time_ms,
                "echo_time_ms": s.echo_time_ms,
                "inversion_time_ms": s.inversion_time_ms,
                "manufacturer": s.manufacturer,
                "field_strength_t": s.field_strength_t,
                "transfer_syntaxes": [{"uid": t, "name": _ts_name(t)} for t in s.transfer_syntaxes],
                "frame_of_reference_uid": s.frame_of_reference_uid,
                "problems": list(s.problems),
                "notes": list(s.notes),
                "used": d.used,
                "used_as": d.used_as,
                "reason": d.reason,
            }
        )
    return rows


def study_json(study: StudyRecord, choice: SeriesChoice, *, patient: dict[str, str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "study_uid": study.study_uid,
        "patient_key": study.patient_key,
        "description": study.description,
        "study_date": study.study_date,
        "root": str(study.root),
        "problems": list(study.problems),
        "chosen": {
            "anatomy": _key(choice.anatomy),
            "stir": _key(choice.stir),
            "t1": _key(choice.t1),
        },
        "warnings": list(choice.warnings),
        "series": series_rows(study, choice),
        "skipped": [{"path": str(s.path), "reason": s.reason} for s in study.skipped],
    }
    if patient is not None:
        out["patient"] = patient
    return out


def patient_identity(study: StudyRecord) -> dict[str, str]:
    """PatientName, PatientID, PatientBirthDate from the study's first DICOM file (``--show-patient``)."""
    for s in study.series:
        if s.source == "dicom" and s.files:
            try:
                with _quiet(), BoundedFile(s.files[0]) as fp:
                    ds = pydicom.dcmread(fp, stop_before_pixels=True, defer_size=4096, force=True)
                return {
                    "name": string(ds, "PatientName"),
                    "id": string(ds, "PatientID"),
                    "birth_date": string(ds, "PatientBirthDate"),
                }
            except Exception:  # noqa: BLE001 - best effort display only
                return {"name": "?", "id": "?", "birth_date": "?"}
    return {"name": "", "id": "", "birth_date": ""}


def format_study(study: StudyRecord, choice: SeriesChoice, *, patient: dict[str, str] | None = None) -> str:
    """Plain-text table of one study (fits ~130 columns)."""
    lines = []
    head = f"Study {study.study_uid}"
    if study.study_date:
        head += f"  date {study.study_date}"
    if study.description:
        head += f"  '{study.description}'"
    head += f"  patient key {study.patient_key or '-'}"
    lines.append(head)
    if patient is not None:
        lines.append(
            f"  patient: {patient.get('name') or '-'}  ID {patient.get('id') or '-'}  "
            f"born {patient.get('birth_date') or '-'}"
        )
    lines.append(f"  folder: {study.root}")
    for p in study.problems:
        lines.append(f"  PROBLEM: {p}")
    header = (
        "#",
        "Series",
        "Orient.",
        "Role (conf)",
        "Slices",
        "Matrix",
        "Pixel mm",
        "Pitch/thick mm",
        "Transfer syntax",
        "Used as",
    )
    table = [header]
    decisions = {(d.series_uid, d.stack): d for d in choice.decisions}
    for s in study.series:
        d = decisions.get((s.series_uid, s.stack))
        role = s.role.value + (f"/{s.substitute.value}" if s.substitute else "") + f" ({s.role_confidence:.2f})"
        ps = f"{s.pixel_spacing_mm[0]:.2f}x{s.pixel_spacing_mm[1]:.2f}" if s.pixel_spacing_mm else "-"
        pitch = f"{s.slice_spacing_mm:.2f}" if s.slice_spacing_mm else "-"
        thick = f"{s.slice_thickness_mm:.2f}" if s.slice_thickness_mm else "-"
        ts = ", ".join(_ts_short(t) for t in s.transfer_syntaxes) or s.source
        desc = (s.description or "-") + (f" [{s.stack}]" if s.stack else "")
        table.append(
            (
                str(s.series_number) if s.series_number is not None else "-",
                _clip(desc, 28),
                s.orientation.value,
                role,
                str(s.n_images),
                f"{s.rows}x{s.cols}",
                ps,
                f"{pitch}/{thick}",
                _clip(ts, 22),
                (d.used_as if d and d.used else "-") or "-",
            )
        )
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for r in table:
        lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    lines.append("  Why:")
    for s in study.series:
        d = decisions.get((s.series_uid, s.stack))
        lines.append(f"    {series_label(s)}: {d.reason if d else 'no decision'}")
        lines.append(f"      role: {s.role_rule}")
        for n in s.notes:
            lines.append(f"      note: {n}")
    if choice.warnings:
        lines.append("  Warnings:")
        lines.extend(f"    - {w}" for w in choice.warnings)
    return "\n".join(lines)


def format_skipped(skipped: Sequence[SkippedFile], *, root: Path | None = None) -> str:
    """Count of skipped files and their reasons, grouped (a few example paths per reason)."""
    if not skipped:
        return "Skipped files: 0"
    groups: dict[str, list[Path]] = {}
    for s in skipped:
        groups.setdefault(_reason_group(s.reason), []).append(s.path)
    lines = [f"Skipped files: {len(skipped)}"]
    for reason, n in Counter({k: len(v) for k, v in groups.items()}).most_common():
        examples = groups[reason][:_MAX_SKIP_EXAMPLES]
        shown = ", ".join(_rel(p, root) for p in examples) + (", ..." if n > len(examples) else "")
        lines.append(f"  {n} x {reason}: {shown}")
    return "\n".join(lines)


def _reason_group(reason: str) -> str:
    """Group skip reasons without their per-file details (numbers, paths, UIDs)."""
    import re

    text = re.sub(r"\(e\.g\..*?\)|\b[\d.]{6,}\b|/\S+", "", reason)
    text = re.sub(r"\d+", "N", text)
    return " ".join(text.split())[:140]


def _rel(path: Path, root: Path | None) -> str:
    if root is not None:
        try:
            return str(path.relative_to(root))
        except ValueError:
            pass
    return str(path)


def _key(s: SeriesRecord | None) -> dict[str, str] | None:
    return None if s is None else {"series_uid": s.series_uid, "stack": s.stack, "label": series_label(s)}


def _ts_name(uid: str) -> str:
    try:
        return UID(uid).name
    except Exception:  # noqa: BLE001
        return uid


_SHORT = {
    "1.2.840.10008.1.2": "Implicit LE",
    "1.2.840.10008.1.2.1": "Explicit LE",
    "1.2.840.10008.1.2.1.99": "Deflated LE",
    "1.2.840.10008.1.2.2": "Explicit BE",
    "1.2.840.10008.1.2.4.50": "JPEG baseline",
    "1.2.840.10008.1.2.4.51": "JPEG extended",
    "1.2.840.10008.1.2.4.57": "JPEG lossless",
    "1.2.840.10008.1.2.4.70": "JPEG lossless SV1",
    "1.2.840.10008.1.2.4.80": "JPEG-LS lossless",
    "1.2.840.10008.1.2.4.81": "JPEG-LS near-lossless",
    "1.2.840.10008.1.2.4.90": "JPEG 2000 lossless",
    "1.2.840.10008.1.2.4.91": "JPEG 2000",
    "1.2.840.10008.1.2.5": "RLE",
}


def _ts_short(uid: str) -> str:
    return _SHORT.get(uid) or _ts_name(uid)


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "~"
