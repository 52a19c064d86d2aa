"""Self-contained HTML report (inline CSS, PNG overlays as ``data:`` URIs, no network), from the report dict.

The page is rendered from ``templates/report.html.j2`` with Jinja2 autoescaping, so every text that comes
from DICOM headers, configuration or the rules stage is escaped. This module only turns the report into
display rows (formatting, "not assessable" with the reason); it computes nothing new.

No patient name, ID or birth date appears unless the report carries a ``patient`` section (written only when
the deployment asks for it); the study is identified by its UID and the salted patient key.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import jinja2

from pipeline.errors import PipelineError
from pipeline.model import EdemaPattern, GradeState
from pipeline.report.eligibility_view import eligibility_view
from pipeline.report.json_report import SCHEMA_VERSION, registration_residual
from pipeline.report.overlay import ordered
from pipeline.report.study_report import StudyReport, VertebraReport

DISCLAIMER = (
    "This report supports a clinician's decision; it does not replace it. The measurements and the "
    "eligibility rules are computed automatically from the images and the clinical inputs given, may be "
    "wrong, and must be checked against the images and the patient by the treating team."
)

_OVERLAY_CAPTIONS = {
    "sagittal.png": (
        "Sagittal anatomy: outline colour = Genant grade; white marker = eligibility decision (legend under the "
        "picture); landmarks and heights (Ha, Hm, Hp)"
    ),
    "stir.png": "STIR on the anatomy grid with the oedema map (red)",
    "planes.png": "The central plane and its neighbours: is each body segmented consistently across planes?",
}

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("pipeline.report", "templates"),
    autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


@dataclass(frozen=True)
class Cell:
    """One table cell: text, optional second line (a reason), CSS class, column span."""

    text: str
    note: str = ""
    css: str = ""
    span: int = 1


@dataclass
class VertebraRow:
    level: str
    cells: list[Cell] = field(default_factory=list)


def _num(value: float | None, nd: int = 1, unit: str = "") -> str | None:
    if value is None or not math.isfinite(value):
        return None
    return f"{float(value):.{nd}f}{unit}"


def _value_cell(
    value: float | None, nd: int = 1, unit: str = "", *, missing: str = "not measured", css: str = "num"
) -> Cell:
    text = _num(value, nd, unit)
    return Cell(text, css=css) if text is not None else Cell(missing, css="na")


def _morph_cells(v: VertebraReport) -> list[Cell]:
    """Heights | reference | loss | Genant | morphology | wedge angle (6 columns)."""
    morph = v.morphometry
    h = morph.heights if morph is not None else None
    if v.is_sacrum and h is None:
        return [Cell("sacrum: reference for level counting, not measured", css="na", span=6)]
    if morph is None:
        return [Cell("not measured", "the morphometry stage did not run", css="na", span=6)]
    if not morph.assessable or h is None:
        return [Cell("not assessable", morph.reason or "no reason given", css="na", span=6)]
    heights = " / ".join(_num(x) or "n/a" for x in (h.anterior_mm, h.middle_mm, h.posterior_mm))
    confidence = _num(morph.confidence, 2)
    spread = _num(morph.slice_spread_pct, 1)
    loss = _value_cell(morph.height_loss_pct, unit=" %", missing="n/a")
    if spread is not None and loss.css == "num":
        loss = Cell(loss.text, f"\u00b1{spread} % over slices", css="num")
    return [
        Cell(heights, f"confidence {confidence}" if confidence else "", css="num"),
        _value_cell(morph.reference_height_mm, missing="n/a"),
        loss,
        _grade_cell(v),
        Cell(morph.morphology.value.replace("_", " ")),
        _value_cell(morph.wedge_angle_deg, unit="\u00b0", missing="n/a"),
    ]


def _grade_cell(v: VertebraReport) -> Cell:
    """The Genant grade as :attr:`VertebraReport.grade` shows it (``2``, ``0?``, ``n/a``)."""
    g = v.grade
    if g.grade is None:
        return Cell("n/a", g.note, css="na")
    if g.state is GradeState.UNCERTAIN:
        return Cell(f"{g.short} uncertain", g.note, css=f"grade grade{g.grade} uncertain")
    return Cell(g.short, css=f"grade grade{g.grade}")


def _stir_cells(v: VertebraReport) -> list[Cell]:
    """STIR ratio | oedema fraction | oedema (3 columns)."""
    s = v.stir
    if s is None:
        return [Cell("not measured", "no STIR assessment in this report", css="na", span=3)]
    if s.edema is None:
        return [Cell("not assessable", s.reason or "no reason given", css="na", span=3)]
    frac = s.edema_fraction
    shown = s.edema and s.pattern not in (EdemaPattern.NONE, EdemaPattern.NOT_ASSESSABLE)
    parts = [s.pattern.value] if shown else []
    conf = _num(s.confidence, 2)
    if conf is not None:
        parts.append(f"conf. {conf}")
    note = ", ".join(parts)
    return [
        _value_cell(s.ratio, 2, missing="n/a"),
        _value_cell(None if frac is None else float(frac) * 100.0, 0, " %", missing="n/a"),
        Cell("yes" if s.edema else "no", note, css="flag-yes" if s.edema else "flag-no"),
    ]


def _canal_cell(v: VertebraReport) -> Cell:
    if v.morphometry is None:
        return Cell("not measured", css="na")
    wall = v.morphometry.posterior_wall
    if not wall.assessable:
        return Cell("not assessable", wall.reason or "no reason given", css="na")
    pct = _num(wall.canal_compromise_pct, 0, " %")
    bulge = _num(wall.bulge_mm, 1, " mm")
    return Cell(pct or "n/a", f"wall bulge {bulge}" if bulge else "", css="num")


# Shown under the vertebra table: what the number under each level name means.
LEVEL_CONFIDENCE_NOTE = (
    "Level confidence (under each level name, 0-1): how sure the program is of the level's name, not of its "
    "measurements. It comes from how clearly the sacrum (S1) was recognised and how far the level is counted up "
    "from it (high when the levels come from a user anchor). Below 0.60 the name is marked 'check the level': "
    "confirm the level on the images before any intervention."
)
LOW_LEVEL_CONFIDENCE = 0.6


def _level_cell(v: VertebraReport) -> Cell:
    conf = v.seg.level_confidence
    if v.level is None or not conf > 0:  # no level, or no confidence to show
        return Cell(v.name, "", css="level")
    check = " - check the level" if conf < LOW_LEVEL_CONFIDENCE else ""
    return Cell(v.name, f"level confidence {conf:.2f}{check}", css="level")


def vertebra_rows(report: StudyReport) -> list[VertebraRow]:
    rows = []
    for v in report.vertebrae:
        row = VertebraRow(v.name)
        row.cells.append(_level_cell(v))
        row.cells += _morph_cells(v)
        row.cells += _stir_cells(v)
        row.cells.append(_canal_cell(v))
        row.cells.append(_value_cell(v.seg.quality, 2, missing="n/a"))
        d = v.decision
        row.cells.append(Cell(d.text, css=f"decision {d.value}") if d else Cell("-", css="na"))
        rows.append(row)
    return rows


def _images(overlays: Mapping[str, bytes]) -> list[dict[str, str]]:
    out = []
    for name in ordered(list(overlays)):
        data = overlays[name]
        if not data.startswith(b"\x89PNG\r\n\x1a\n"):
            raise PipelineError(f"overlay {name!r} is not a PNG image; pass the output of render_overlays()")
        out.append(
            {
                "name": name,
                "caption": _OVERLAY_CAPTIONS.get(name, name),
                "uri": "data:image/png;base64," + base64.b64encode(data).decode("ascii"),
            }
        )
    return out


def _date(value: str | None) -> str:
    s = value or ""
    return f"{s[:4]}-{s[4:6]}-{s[6:8]}" if len(s) == 8 and s.isdigit() else s


def _series_rows(report: StudyReport) -> list[dict[str, str]]:
    rows = []
    for s in report.study.series:
        d = report.series_decision(s)
        used = d is not None and d.used
        spacing = s.pixel_spacing_mm
        geometry = " x ".join(_num(x, 2) or "?" for x in spacing) + " mm" if spacing else ""
        if s.slice_thickness_mm:
            geometry += f", {(_num(s.slice_thickness_mm, 1))} mm slices"
        rows.append(
            {
                "number": "" if s.series_number is None else str(s.series_number),
                "description": s.description,
                "role": s.role.value + (f" (substitute: {s.substitute.value})" if s.substitute else ""),
                "orientation": s.orientation.value.lower(),
                "images": str(s.n_images),
                "geometry": geometry,
                "used": (d.used_as or "") if d is not None and used else "not used",
                "used_css": "used" if used else "unused",
                "reason": d.reason if d is not None else "not considered",
                "problems": ", ".join(s.problems),
            }
        )
    return rows


def _patient(report: StudyReport) -> list[tuple[str, str]]:
    """Identity lines, only from an explicit ``patient`` section of the report."""
    if report.patient is None:
        return []
    p = {k: str(v) for k, v in report.patient.items() if v not in (None, "")}
    names = {"name": "Patient", "id": "Patient ID", "birth_date": "Birth date", "sex": "Sex"}
    return [(names[k], _date(p[k]) if k == "birth_date" else p[k]) for k in names if p.get(k)]


def render_html(report: StudyReport, overlays: Mapping[str, bytes]) -> str:
    """Render the report as one self-contained HTML page.

    Parameters
    ----------
    report : StudyReport
        The study's report (any stage may be absent).
    overlays : mapping
        File name -> PNG bytes from :func:`pipeline.report.overlay.render_overlays` (may be empty).

    Returns
    -------
    str
        The HTML document (UTF-8 text); it loads nothing from the network.
    """
    study, seg = report.study, report.segmentation
    stir = report.stir if seg is not None else None  # report.json has a STIR section only with a segmentation
    context = {
        "disclaimer": DISCLAIMER,
        "pipeline": {
            "version": report.pipeline_version,
            "config": report.config_sha256 or "not recorded",
            "generated_at": report.generated_at,
            "schema": SCHEMA_VERSION,
        },
        "patient": _patient(report),
        "study": {
            "description": study.description or "(no description)",
            "date": _date(study.study_date) or "unknown",
            "uid": study.study_uid,
            "patient_key": study.patient_key,
            "n_series": str(len(study.series)),
            "n_skipped": len(study.skipped),
        },
        "series": _series_rows(report),
        "segmentation": None
        if seg is None
        else {
            "n_bodies": str(len(seg.vertebrae)),
            "method": seg.labelling_method,
            "sacrum": "found" if seg.sacrum_found else "not found (level names are less certain)",
        },
        "stir": stir,
        "stir_residual_mm": registration_residual(stir) if stir is not None else None,
        "has_vertebrae": seg is not None,
        "rows": vertebra_rows(report),
        "chips": [(v.name, v.decision) for v in report.vertebrae if v.decision is not None],
        "images": _images(overlays),
        "eligibility": eligibility_view(report.eligibility),
        "clinical_given": report.clinical_inputs is not None,
        "warnings": list(report.warnings),
        "level_confidence_note": LEVEL_CONFIDENCE_NOTE,
        "timings": [(k, _num(v, 0) or "") for k, v in report.timings_ms.items()],
        "outputs": [(k, ", ".join(v) if isinstance(v, tuple) else v) for k, v in report.outputs.written()],
    }
    return _ENV.get_template("report.html.j2").render(**context)
