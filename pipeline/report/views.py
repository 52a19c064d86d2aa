"""Read-only helpers over the report dictionary, shared by the overlay, HTML, SR and SC writers.

The eligibility section is produced by the rules stage; its exact keys may evolve, so everything here reads
it defensively: a missing key gives ``None`` / an empty list, never an exception.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import Enum
from typing import Any


class Decision(str, Enum):
    """Per-level eligibility decisions of the rules stage."""

    CANDIDATE = "candidate"
    CANDIDATE_WITH_CAUTIONS = "candidate_with_cautions"
    CONTRAINDICATED = "contraindicated"
    NOT_INDICATED = "not_indicated"
    INDETERMINATE = "indeterminate"

    @property
    def text(self) -> str:
        return self.value.replace("_", " ")

    @classmethod
    def parse(cls, value: Any) -> Decision | None:
        if isinstance(value, Mapping):  # e.g. {"decision": "candidate", ...} or {"value": ...}
            value = value.get("decision", value.get("value"))
        if not isinstance(value, str):
            return None
        key = value.strip().lower().replace(" ", "_").replace("-", "_")
        try:
            return cls(key)
        except ValueError:
            return None


# Keys under which the rules stage may list its per-level results (first match wins).
_LEVEL_LIST_KEYS = ("levels", "per_level", "level_decisions", "decisions")


def first_key(mapping: Mapping[str, Any] | None, keys: Iterable[str]) -> Any:
    """Value of the first of ``keys`` present (and not None) in ``mapping``."""
    if not isinstance(mapping, Mapping):
        return None
    for k in keys:
        if mapping.get(k) is not None:
            return mapping[k]
    return None


def eligibility_levels(report: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The per-level entries of ``report["eligibility"]`` (list of mappings), or ``[]``."""
    elig = report.get("eligibility")
    levels = first_key(elig, _LEVEL_LIST_KEYS)
    if isinstance(levels, Mapping):  # {"L1": {...}, ...}
        return [
            {"level": k, **v} if isinstance(v, Mapping) else {"level": k, "decision": v}
            for k, v in levels.items()
        ]
    if isinstance(levels, list):
        return [e for e in levels if isinstance(e, Mapping)]
    return []


def decisions_by_label(report: Mapping[str, Any]) -> dict[int, Decision]:
    """Eligibility decision per vertebra label (matched by ``label`` or else by level name)."""
    label_of_level = {
        v.get("level"): v.get("label") for v in report.get("vertebrae", []) if v.get("level") is not None
    }
    out: dict[int, Decision] = {}
    for entry in eligibility_levels(report):
        decision = Decision.parse(entry.get("decision", entry.get("status")))
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
