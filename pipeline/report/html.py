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
from typing import Any

import jinja2

from pipeline.errors import PipelineError
from pipeline.model import GradeState
from pipeline.report.eligibility_view import eligibility_view
from pipeline.report.eligibility_view import text as _text
from pipeline.report.overlay import ordered
from pipeline.report.views import Decision, decisions_by_label, level_name, vertebra_grade

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


def _num(value: Any, nd: int = 1, unit: str = "") -> str | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(f):
        return None
    return f"{f:.{nd}f}{unit}"


def _value_cell(value: Any, nd: int = 1, unit: str = "", *, missing: str = "not measured", css: str = "num") -> Cell:
    text = _num(value, nd, unit)
    return Cell(text, css=css) if text is not None else Cell(missing, css="na")


def _morph_cells(v: Mapping[str, Any]) -> list[Cell]:
    """Heights | reference | loss | Genant | morphology | wedge angle (6 columns)."""
    morph = v.get("morphometry")
    if v.get("is_sacrum") and not v.get("heights_mm"):
        return [Cell("sacrum: reference for level counting, not measured", css="na", span=6)]
    if morph is None:
        return [Cell("not measured", "the morphometry stage did not run", css="na", span=6)]
    if not morph.get("assessable") or not v.get("heights_mm"):
        return [Cell("not assessable", str(morph.get("reason") or "no reason given"), css="na", span=6)]
    h = v["heights_mm"]
    heights = " / ".join(_num(h.get(k)) or "n/a" for k in ("anterior", "middle", "posterior"))
    confidence = _num(morph.get("confidence"), 2)
    spread = _num(morph.get("slice_spread_pct"), 1)
    loss = _value_cell(v.get("height_loss_pct"), unit=" %", missing="n/a")
    if spread is not None and loss.css == "num":
        loss = Cell(loss.text, f"\u00b1{spread} % over slices", css="num")
    return [
        Cell(heights, f"confidence {confidence}" if confidence else "", css="num"),
        _value_cell(v.get("reference_height_mm"), missing="n/a"),
        loss,
        _grade_cell(v),
        Cell(str(v.get("morphology") or "n/a").replace("_", " ")),
        _value_cell(v.get("wedge_angle_deg"), unit="\u00b0", missing="n/a"),
    ]


def _grade_cell(v: Mapping[str, Any]) -> Cell:
    """The Genant grade as :func:`pipeline.report.views.vertebra_grade` decides it (``2``, ``0?``, ``n/a``)."""
    g = vertebra_grade(v)
    if g.grade is None:
        return Cell("n/a", g.note, css="na")
    if g.state is GradeState.UNCERTAIN:
        return Cell(f"{g.short} uncertain", g.note, css=f"grade grade{g.grade} uncertain")
    return Cell(g.short, css=f"grade grade{g.grade}")


def _stir_cells(v: Mapping[str, Any], stir_section: Mapping[str, Any] | None) -> list[Cell]:
    """STIR ratio | oedema fraction | oedema (3 columns)."""
    s = v.get("stir")
    if s is None:
        reason = "no STIR assessment in this report" if stir_section is None else str(stir_section.get("reason") or "")
        return [Cell("not measured", reason, css="na", span=3)]
    edema = s.get("edema")
    if edema is None:
        return [Cell("not assessable", str(s.get("reason") or "no reason given"), css="na", span=3)]
    frac = s.get("edema_fraction")
    pattern = s.get("pattern")
    parts = [str(pattern)] if edema and pattern not in (None, "none", "not_assessable") else []
    conf = _num(s.get("confidence"), 2)
    if conf is not None:
        parts.append(f"conf. {conf}")
    note = ", ".join(parts)
    return [
        _value_cell(s.get("ratio"), 2, missing="n/a"),
        _value_cell(None if frac is None else float(frac) * 100.0, 0, " %", missing="n/a"),
        Cell("yes" if edema else "no", note, css="flag-yes" if edema else "flag-no"),
    ]


def _canal_cell(v: Mapping[str, Any]) -> Cell:
    morph = v.get("morphometry")
    if morph is None:
        return Cell("not measured", css="na")
    wall = morph.get("posterior_wall") or {}
    if not wall.get("assessable"):
        return Cell("not assessable", str(wall.get("reason") or "no reason given"), css="na")
    pct = _num(wall.get("canal_compromise_pct"), 0, " %")
    bulge = _num(wall.get("bulge_mm"), 1, " mm")
    return Cell(pct or "n/a", f"wall bulge {bulge}" if bulge else "", css="num")


# Shown under the vertebra table: what the number under each level name means.
LEVEL_CONFIDENCE_NOTE = (
    "Level confidence (under each level name, 0-1): how sure the program is of the level's name, not of its "
    "measurements. It comes from how clearly the sacrum (S1) was recognised and how far the level is counted up "
    "from it (high when the levels come from a user anchor). Below 0.60 the name is marked 'check the level': "
    "confirm the level on the images before any intervention."
)
LOW_LEVEL_CONFIDENCE = 0.6


def _level_cell(v: Mapping[str, Any]) -> Cell:
    conf = v.get("level_confidence")
    if not isinstance(conf, (int, float)) or isinstance(conf, bool) or v.get("level") is None or conf <= 0:
        return Cell(level_name(v), "", css="level")
    check = " - check the level" if conf < LOW_LEVEL_CONFIDENCE else ""
    return Cell(level_name(v), f"level confidence {conf:.2f}{check}", css="level")


def vertebra_rows(report: Mapping[str, Any], decisions: Mapping[int, Decision]) -> list[VertebraRow]:
    rows = []
    for v in report.get("vertebrae", []):
        row = VertebraRow(level_name(v))
        row.cells.append(_level_cell(v))
        row.cells += _morph_cells(v)
        row.cells += _stir_cells(v, report.get("stir"))
        row.cells.append(_canal_cell(v))
        row.cells.append(_value_cell(v.get("segmentation_quality"), 2, missing="n/a"))
        d = decisions.get(int(v.get("label", -1)))
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


def _date(value: Any) -> str:
    s = str(value or "")
    return f"{s[:4]}-{s[4:6]}-{s[6:8]}" if len(s) == 8 and s.isdigit() else s


def _series_rows(report: Mapping[str, Any]) -> list[dict[str, str]]:
    rows = []
    for s in report.get("series", []):
        spacing = s.get("pixel_spacing_mm")
        geometry = " x ".join(_num(x, 2) or "?" for x in spacing) + " mm" if spacing else ""
        if s.get("slice_thickness_mm"):
            geometry += f", {(_num(s['slice_thickness_mm'], 1))} mm slices"
        rows.append(
            {
                "number": _text(s.get("series_number")),
                "description": _text(s.get("description")),
                "role": _text(s.get("role")) + (f" (substitute: {s['substitute']})" if s.get("substitute") else ""),
                "orientation": _text(s.get("orientation")).lower(),
                "images": _text(s.get("n_images")),
                "geometry": geometry,
                "used": _text(s.get("used_as")) if s.get("used") else "not used",
                "used_css": "used" if s.get("used") else "unused",
                "reason": _text(s.get("reason")),
                "problems": _text(s.get("problems")),
            }
        )
    return rows


def _patient(report: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Identity lines, only from an explicit ``patient`` section of the report."""
    p = report.get("patient")
    if not isinstance(p, Mapping):
        return []
    names = {"name": "Patient", "id": "Patient ID", "birth_date": "Birth date", "sex": "Sex"}
    return [(names[k], _date(p[k]) if k == "birth_date" else _text(p[k])) for k in names if p.get(k)]


def render_html(report: Mapping[str, Any], overlays: Mapping[str, bytes]) -> str:
    """Render the report as one self-contained HTML page.

    Parameters
    ----------
    report : mapping
        The report from :func:`pipeline.report.json_report.build_report` (any stage may be absent).
    overlays : mapping
        File name -> PNG bytes from :func:`pipeline.report.overlay.render_overlays` (may be empty).

    Returns
    -------
    str
        The HTML document (UTF-8 text); it loads nothing from the network.
    """
    decisions = decisions_by_label(report)
    study = report.get("study", {})
    pipeline = report.get("pipeline", {})
    seg = report.get("segmentation")
    context = {
        "disclaimer": DISCLAIMER,
        "pipeline": {
            "version": _text(pipeline.get("version")),
            "config": _text(pipeline.get("config_sha256")) or "not recorded",
            "generated_at": _text(pipeline.get("generated_at")),
            "schema": _text(report.get("schema_version")),
        },
        "patient": _patient(report),
        "study": {
            "description": _text(study.get("description")) or "(no description)",
            "date": _date(study.get("study_date")) or "unknown",
            "uid": _text(study.get("study_instance_uid")),
            "patient_key": _text(study.get("patient_key")),
            "n_series": _text(study.get("n_series")),
            "n_skipped": int(study.get("n_skipped_files") or 0),
        },
        "series": _series_rows(report),
        "segmentation": None
        if not seg
        else {
            "n_bodies": _text(seg.get("n_bodies")),
            "method": _text(seg.get("labelling_method")),
            "sacrum": "found" if seg.get("sacrum_found") else "not found (level names are less certain)",
        },
        "stir": report.get("stir"),
        "has_vertebrae": "vertebrae" in report,
        "rows": vertebra_rows(report, decisions),
        "chips": [
            (level_name(v), decisions[int(v["label"])])
            for v in report.get("vertebrae", [])
            if int(v.get("label", -1)) in decisions
        ],
        "images": _images(overlays),
        "eligibility": eligibility_view(report),
        "clinical_given": "clinical_inputs" in report,
        "warnings": [_text(w) for w in report.get("warnings", [])],
        "level_confidence_note": LEVEL_CONFIDENCE_NOTE,
        "timings": [(k, _num(v, 0) or "") for k, v in (report.get("timings_ms") or {}).items()],
        "outputs": [(k, _text(v)) for k, v in (report.get("outputs") or {}).items()],
    }
    return _ENV.get_template("report.html.j2").render(**context)
