"""Display rows for the eligibility section of the HTML report.

Reads ``report["eligibility"]`` as published in ``configs/eligibility_result.schema.json`` (the rules stage's
``EligibilityResult.to_dict()``), tolerantly: a missing key gives an empty value, never an exception, and keys
this module does not know are shown as they are. It formats; it decides nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline.model import Decision
from pipeline.report.views import parse_decision

_RESULT_WORDS = {
    # kind -> (true, false) wording; unknown is "unknown" for every kind
    "indication": ("met", "not met"),
    "absolute": ("present", "absent"),
    "relative": ("present", "absent"),
    "plan": ("applies", "does not apply"),
}
_ASKED_OF_ORDER = ("clinician", "radiologist", "imaging review")
_MAX_INPUTS_SHOWN = 12
_KNOWN_KEYS = {
    "schema_version", "disclaimer", "summary", "rules", "rule_catalogue", "clinical", "levels",
    "excluded_levels", "patient_rules", "plan", "questions", "sentences", "references",
}  # fmt: skip


def text(value: Any) -> str:
    """A readable one-line text of any JSON value."""
    if isinstance(value, Mapping):
        return "; ".join(f"{k}: {text(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(text(v) for v in value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return "" if value is None else str(value)


def _list(value: Any) -> list[Any]:
    return [v for v in value if v not in (None, "")] if isinstance(value, (list, tuple)) else []


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def source_short(src: Any, references: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """``{"seed": "001_e7f9...txt", "section": "Table 1"}`` -> ``"JNCCN 2010, Table 1"`` (the reference's short
    label; ``"001 Table 1"`` for a report without references); policies -> ``"project policy"``."""
    src = _map(src)
    if "policy" in src:
        return "project policy"
    seed = str(src.get("seed") or "")
    if not seed:
        return text(src)
    short = text(_map((references or {}).get(seed)).get("short"))
    section = text(src.get("section"))
    if short:
        return f"{short}, {section}" if section else short
    return f"{seed.split('_', 1)[0]} {section}".strip()


def reference_anchor(seed: str) -> str:
    """HTML id of a reference: ``"ref-001"`` for ``"001_e7f9...txt"``."""
    return "ref-" + "".join(c for c in seed.split("_", 1)[0] if c.isalnum())


@dataclass(frozen=True)
class SourceView:
    """One cited source of a rule: label (reference short name + section), quote, link to the full citation."""

    label: str
    quote: str
    anchor: str  # "" for a policy note


@dataclass(frozen=True)
class ReferenceView:
    anchor: str
    short: str
    citation: str
    seed: str


@dataclass(frozen=True)
class RuleRow:
    rule_id: str
    text: str
    result: str
    css: str  # "met" (indication met), "present" (contraindication present), "unknown", "neutral"
    because: str
    missing: str
    assumed: str
    sources: tuple[str, ...]


@dataclass
class TraceGroup:
    """Rule outcomes of one level (or of the patient): the rules that fired in full, the others by id.

    ``not_weighed``: the level is not indicated, so no procedure is in question and its contraindication,
    caution and technique rules are left out (an unfractured level would otherwise show a red "absolute
    contraindication present" and "kyphoplasty preferred ... applies"); they stay in report.json.
    """

    fired: list[RuleRow] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    not_met: list[str] = field(default_factory=list)
    not_weighed: int = 0


@dataclass
class LevelView:
    name: str
    in_question: bool  # a procedure is in question (any decision but "not indicated")
    decision: Decision | None
    decision_text: str
    possible: list[str]
    technique: str
    reasons: list[str]
    notes: list[str]
    deciding: str
    trace: TraceGroup


@dataclass
class LevelGroup:
    """Levels that share a decision and its reasons, shown once (``first`` stands for all of them).

    ``notes`` are each level's own imaging caveats, prefixed with the level's name when the group has several."""

    name: str
    first: LevelView
    notes: list[str]


@dataclass
class EligibilityView:
    summary: str
    disclaimer: str
    clinical: str
    levels: list[LevelView]
    groups: list[LevelGroup]
    traces: list[tuple[str, TraceGroup]]  # per level, levels with identical traces together
    patient: TraceGroup
    excluded: list[tuple[str, str]]
    plan: list[tuple[str, str]]
    questions: list[tuple[str, list[tuple[str, str]]]]
    catalogue: list[dict[str, Any]]
    references: list[ReferenceView]
    rules_info: str
    other: list[tuple[str, str]]


def _inputs(names: Sequence[Any]) -> str:
    """``["clinical.pain.vas", "imaging.genant_grade"]`` -> ``"imaging: genant_grade; clinical: pain.vas"``"""
    groups: dict[str, list[str]] = {}
    for n in names:
        src, _, rest = str(n).partition(".")
        groups.setdefault(src if rest else "", []).append(rest or src)
    shown, parts, count = 0, [], 0
    for src in (
        "imaging",
        "radiologist",
        "clinical",
        *sorted(set(groups) - {"imaging", "radiologist", "clinical"}),
    ):
        items = groups.get(src, [])
        take = items[: max(0, _MAX_INPUTS_SHOWN - shown)]
        shown += len(take)
        count += len(items)
        if take:
            parts.append(f"{src}: {', '.join(take)}" if src else ", ".join(take))
    more = count - shown
    return "; ".join(parts) + (f"; and {more} more (see the questions)" if more > 0 else "")


def _trace(
    outcomes: Any,
    catalogue: Mapping[str, Mapping[str, Any]],
    refs: Mapping[str, Mapping[str, Any]],
    in_question: bool = True,
) -> TraceGroup:
    group = TraceGroup()
    for o in _list(outcomes):
        o = _map(o)
        rule_id = str(o.get("rule") or "")
        entry = catalogue.get(rule_id, {})
        kind = str(o.get("kind") or entry.get("kind") or "")
        if not in_question and kind != "indication":
            group.not_weighed += 1
            continue
        result = str(o.get("result") or "unknown")
        assumed = text(o.get("assumed"))
        if result == "true" or assumed:
            true_word, false_word = _RESULT_WORDS.get(kind, ("yes", "no"))
            word = true_word if result == "true" else false_word if result == "false" else "unknown"
            css = "neutral"
            if result == "true":
                css = "met" if kind == "indication" else "present" if kind in ("absolute", "relative") else "neutral"
            group.fired.append(
                RuleRow(
                    rule_id=rule_id,
                    text=text(entry.get("text")) or text(o.get("sentence")) or rule_id,
                    result=word + (" (assumed)" if assumed else ""),
                    css=css,
                    because="; ".join(text(b) for b in _list(o.get("because"))),
                    missing=_inputs(_list(o.get("missing"))),
                    assumed=assumed,
                    sources=tuple(dict.fromkeys(source_short(s, refs) for s in _list(entry.get("sources")))),
                )
            )
        elif result == "false":
            group.not_met.append(rule_id)
        else:
            group.unknown.append(rule_id)
    return group


def _level(
    entry: Mapping[str, Any], catalogue: Mapping[str, Mapping[str, Any]], refs: Mapping[str, Mapping[str, Any]]
) -> LevelView:
    decision = parse_decision(entry.get("decision"))
    possible = [parse_decision(p) for p in _list(entry.get("possible_decisions"))]
    in_question = decision is not Decision.NOT_INDICATED
    technique = str(entry.get("technique") or "").replace("_", " ") if in_question else ""
    return LevelView(
        name=text(entry.get("name") or entry.get("level")) or f"vertebra #{entry.get('label', '?')}",
        in_question=in_question,
        decision=decision,
        decision_text=decision.text if decision else text(entry.get("decision")) or "not given",
        possible=[p.text for p in possible if p is not None and p is not decision],
        technique=technique,
        reasons=[text(r) for r in _list(entry.get("reasons"))],
        notes=[text(n) for n in _list(entry.get("notes"))],
        deciding=_inputs(_list(entry.get("deciding_inputs"))),
        trace=_trace(entry.get("trace"), catalogue, refs, in_question),
    )


def _groups(levels: Sequence[LevelView]) -> list[LevelGroup]:
    """One row per distinct (decision, reasons, ...), in the order of each group's first level."""
    keyed: dict[tuple[Any, ...], list[LevelView]] = {}
    for lv in levels:
        key = (lv.decision, lv.decision_text, tuple(lv.possible), lv.technique, tuple(lv.reasons), lv.deciding)
        keyed.setdefault(key, []).append(lv)
    out = []
    for members in keyed.values():
        several = len(members) > 1
        notes = [f"{m.name}: {n}" if several else n for m in members for n in m.notes]
        out.append(LevelGroup(", ".join(m.name for m in members), members[0], notes))
    return out


def _trace_groups(levels: Sequence[LevelView]) -> list[tuple[str, TraceGroup]]:
    """Levels whose trace blocks would read the same, under one title."""
    out: list[tuple[list[str], TraceGroup]] = []
    for lv in levels:
        same = next((names for names, t in out if t == lv.trace), None)
        if same is not None:
            same.append(lv.name)
        else:
            out.append(([lv.name], lv.trace))
    return [(", ".join(names), t) for names, t in out]


def _plan(plan: Mapping[str, Any]) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    sessions = [_map(s) for s in _list(plan.get("sessions"))]
    if sessions:
        rows.append(("Sessions", "; ".join(f"{s.get('session', '?')}: {text(s.get('levels'))}" for s in sessions)))
    elif "sessions" in plan:
        rows.append(("Sessions", "none (no level is a candidate at present)"))
    if plan.get("staged"):
        rows.append(("Staged", f"yes: more than {plan.get('max_levels_per_session', '?')} levels per session"))
    if _list(plan.get("pending_levels")):
        rows.append(("Pending answers", text(plan.get("pending_levels"))))
    technique = _map(plan.get("technique"))
    if technique.get("note"):
        rows.append(("Technique", text(technique.get("note"))))
    biopsy = _map(plan.get("biopsy"))
    if biopsy.get("sentence"):
        rows.append(("Biopsy", text(biopsy.get("sentence"))))
    return rows


def _questions(questions: Any) -> list[tuple[str, list[tuple[str, str]]]]:
    groups: dict[str, list[tuple[str, str]]] = {}
    for q in _list(questions):
        q = _map(q)
        levels = text(q.get("levels"))
        where = f"levels {levels}; " if levels else ""
        detail = f"{where}answer in clinical.yaml: {q['field']}" if q.get("field") else where.rstrip("; ")
        groups.setdefault(str(q.get("asked_of") or "clinician"), []).append((text(q.get("question")), detail))
    order = [a for a in _ASKED_OF_ORDER if a in groups] + sorted(set(groups) - set(_ASKED_OF_ORDER))
    return [(a, groups[a]) for a in order]


def _source_view(src: Mapping[str, Any], refs: Mapping[str, Mapping[str, Any]]) -> SourceView:
    seed = str(src.get("seed") or "")
    return SourceView(
        label=source_short(src, refs),
        quote=text(src.get("quote") or src.get("policy")),
        anchor=reference_anchor(seed) if seed in refs else "",
    )


def eligibility_view(report: Mapping[str, Any]) -> EligibilityView | None:
    """Display model of ``report["eligibility"]``, or None when the rules were not evaluated."""
    elig = report.get("eligibility")
    if not isinstance(elig, Mapping):
        return None
    catalogue = {str(c.get("id")): c for c in map(_map, _list(elig.get("rule_catalogue"))) if c.get("id")}
    refs = {str(r.get("seed")): r for r in map(_map, _list(elig.get("references"))) if r.get("seed")}
    clinical = _map(elig.get("clinical"))
    if clinical.get("provided") is True:
        clinical_text = f"clinical inputs from {clinical.get('file') or 'the clinical file'}"
    elif clinical.get("provided") is False:
        clinical_text = "imaging only: no clinical inputs were given, so every clinical question is open"
    else:
        clinical_text = ""
    rules = _map(elig.get("rules"))
    rules_info = ""
    if rules:
        sha = str(rules.get("sha256", ""))[:16]
        rules_info = f"{rules.get('file') or 'rules'} version {rules.get('version', '?')}, sha256 {sha}"
    levels = [_level(_map(e), catalogue, refs) for e in _list(elig.get("levels"))]
    return EligibilityView(
        summary=text(elig.get("summary")),
        disclaimer=text(elig.get("disclaimer")),
        clinical=clinical_text,
        levels=levels,
        groups=_groups(levels),
        traces=_trace_groups(levels),
        patient=_trace(elig.get("patient_rules"), catalogue, refs),
        excluded=[(text(_map(e).get("name")), text(_map(e).get("reason"))) for e in _list(elig.get("excluded_levels"))],
        plan=_plan(_map(elig.get("plan"))),
        questions=_questions(elig.get("questions")),
        catalogue=[
            {
                "id": rid,
                "kind": text(c.get("kind")),
                "text": text(c.get("text")),
                "note": text(c.get("note")),
                "sources": [_source_view(_map(s), refs) for s in _list(c.get("sources"))],
            }
            for rid, c in catalogue.items()
        ],
        references=[
            ReferenceView(reference_anchor(seed), text(r.get("short")), text(r.get("citation")), seed)
            for seed, r in refs.items()
        ],
        rules_info=rules_info,
        other=[(str(k), text(v)) for k, v in elig.items() if k not in _KNOWN_KEYS and v not in (None, "", [], {})],
    )
