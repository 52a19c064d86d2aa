"""Read-only helpers over the report dictionary, shared by the overlay, HTML, SR and SC writers.

The eligibility section is the rules stage's result (``configs/eligibility_result.schema.json``); it is read
defensively: a missing or malformed key gives ``None`` / an empty list, never an exception.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipeline.model import Decision, GradeDisplay, GradeState, grade_display


def parse_decision(value: Any) -> Decision | None:
    """``"Not indicated"`` -> ``Decision.NOT_INDICATED``; anything else -> None."""
    if not isinstance(value, str):
        return None
    key = value.strip().lower().replace(" ", "_").replace("-", "_")
    try:
        return Decision(key)
    except ValueError:
        return None


def eligibility_levels(report: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The per-level entries of ``report["eligibility"]["levels"]`` (mappings only), or ``[]``."""
    elig = report.get("eligibility")
    levels = elig.get("levels") if isinstance(elig, Mapping) else None
    return [e for e in levels if isinstance(e, Mapping)] if isinstance(levels, list) else []


def decisions_by_label(report: Mapping[str, Any]) -> dict[int, Decision]:
    """Eligibility decision per vertebra label (matched by ``label`` or else by level name)."""
    label_of_level = {v.get("level"): v.get("label") for v in report.get("vertebrae", []) if v.get("level") is not None}
    out: dict[int, Decision] = {}
    for entry in eligibility_levels(report):
        decision = parse_decision(entry.get("decision"))
        if decision is None:
            continue
        label = entry.get("label")
        if not isinstance(label, int) or isinstance(label, bool):
            label = label_of_level.get(entry.get("level"))
        if isinstance(label, int):
            out[label] = decision
    return out


def level_name(vertebra: Mapping[str, Any]) -> str:
    """``"L1"``, ``"S1 (sacrum)"`` or ``"body 3 (level unknown)"``."""
    level = vertebra.get("level")
    if level is None:
        return f"body {vertebra.get('label', '?')} (level unknown)"
    return f"{level} (sacrum)" if vertebra.get("is_sacrum") and level != "S1" else str(level)


def vertebra_grade(vertebra: Mapping[str, Any]) -> GradeDisplay:
    """The displayed grade state of one ``report["vertebrae"]`` entry: its ``grade_state`` / ``grade_note``
    (written by :func:`pipeline.model.grade_display`), or, for a report without them, the same function applied
    to the morphometry fields. Every writer shows the grade through this."""
    grade = vertebra.get("genant_grade")
    grade = grade if isinstance(grade, int) and not isinstance(grade, bool) else None
    state = vertebra.get("grade_state")
    if isinstance(state, str) and state in GradeState.__members__.values():
        st = GradeState(state)
        return GradeDisplay(
            st, None if st is GradeState.NOT_ASSESSABLE else grade, str(vertebra.get("grade_note") or "")
        )
    morph = vertebra.get("morphometry")
    morph = morph if isinstance(morph, Mapping) else {}
    loss = vertebra.get("height_loss_pct")
    return grade_display(
        assessable=bool(morph.get("assessable", grade is not None)),
        genant_grade=grade,
        low_confidence=bool(morph.get("low_confidence")),
        grade_uncertain=bool(morph.get("grade_uncertain")),
        height_loss_pct=float(loss) if isinstance(loss, (int, float)) and not isinstance(loss, bool) else None,
        reason=str(morph.get("reason") or ""),
        reliability_notes=[str(n) for n in morph.get("reliability_notes") or ()],
    )
