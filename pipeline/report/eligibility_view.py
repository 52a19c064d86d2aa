"""Display rows for the eligibility section of the HTML report, from the rules stage's typed result.

It formats; it decides nothing: levels that share a decision and its reasons are shown once, and the rules that
weigh a procedure (contraindications, cautions, technique) are left out of the trace of a level where no
procedure is in question.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline.model import (
    Decision,
    EligibilityResult,
    Kind,
    LevelDecision,
    Reference,
    RuleInfo,
    RuleOutcome,
    SessionPlan,
    Source,
)
from pipeline.report.json_report import technique_word

_RESULT_WORDS = {
    # kind -> (true, false) wording; unknown is "unknown" for every kind
    Kind.INDICATION: ("met", "not met"),
    Kind.ABSOLUTE: ("present", "absent"),
    Kind.RELATIVE: ("present", "absent"),
    Kind.PLAN: ("applies", "does not apply"),
}
_ASKED_OF_ORDER = ("clinician", "radiologist", "imaging review")
_MAX_INPUTS_SHOWN = 12


def _present(items: Iterable[str]) -> list[str]:
    return [s for s in items if s]


def source_short(src: Source, references: Mapping[str, Reference]) -> str:
    """A source as ``"JNCCN 2010, Table 1"`` (the reference's short label; ``"001 Table 1"`` without a reference);
    a policy as ``"project policy"``."""
    if not src.seed:
        return "project policy"
    ref = references.get(src.seed)
    if ref is not None and ref.short:
        return f"{ref.short}, {src.section}" if src.section else ref.short
    return f"{src.seed.split('_', 1)[0]} {src.section}".strip()


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
class CatalogueRow:
    id: str
    kind: str
    text: str
    note: str
    sources: list[SourceView]


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
    decision: Decision
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
    catalogue: list[CatalogueRow]
    references: list[ReferenceView]
    rules_info: str


def _inputs(names: Sequence[str]) -> str:
    """``["clinical.pain.vas", "imaging.genant_grade"]`` -> ``"imaging: genant_grade; clinical: pain.vas"``"""
    groups: dict[str, list[str]] = {}
    for n in names:
        src, _, rest = n.partition(".")
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
    outcomes: Sequence[RuleOutcome],
    catalogue: Mapping[str, RuleInfo],
    refs: Mapping[str, Reference],
    in_question: bool = True,
) -> TraceGroup:
    group = TraceGroup()
    for o in outcomes:
        if not in_question and o.kind is not Kind.INDICATION:
            group.not_weighed += 1
            continue
        if o.result is True or o.assumed:
            true_word, false_word = _RESULT_WORDS[o.kind]
            word = {True: true_word, False: false_word, None: "unknown"}[o.result]
            css = "neutral"
            if o.result is True and o.kind is not Kind.PLAN:
                css = "met" if o.kind is Kind.INDICATION else "present"
            info = catalogue.get(o.rule)
            group.fired.append(
                RuleRow(
                    rule_id=o.rule,
                    text=(info.text if info else "") or o.sentence or o.rule,
                    result=word + (" (assumed)" if o.assumed else ""),
                    css=css,
                    because="; ".join(_present(o.because)),
                    missing=_inputs(_present(o.missing)),
                    assumed=o.assumed,
                    sources=tuple(dict.fromkeys(source_short(s, refs) for s in info.sources)) if info else (),
                )
            )
        elif o.result is False:
            group.not_met.append(o.rule)
        else:
            group.unknown.append(o.rule)
    return group


def _level(d: LevelDecision, catalogue: Mapping[str, RuleInfo], refs: Mapping[str, Reference]) -> LevelView:
    in_question = d.decision is not Decision.NOT_INDICATED  # a procedure is in question
    return LevelView(
        name=d.name,
        decision=d.decision,
        decision_text=d.decision.text,
        possible=[p.text for p in d.possible if p is not d.decision],
        technique=technique_word(d.kyphoplasty_preferred).replace("_", " ") if d.decision.is_candidate else "",
        reasons=_present(d.reasons),
        notes=_present(d.notes),
        deciding=_inputs(_present(d.deciding_inputs)),
        trace=_trace(d.trace, catalogue, refs, in_question),
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


def _plan(plan: SessionPlan) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    if plan.sessions:
        rows.append(("Sessions", "; ".join(f"{i + 1}: {', '.join(s)}" for i, s in enumerate(plan.sessions))))
    else:
        rows.append(("Sessions", "none (no level is a candidate at present)"))
    if len(plan.sessions) > 1:
        rows.append(("Staged", f"yes: more than {plan.max_levels_per_session} levels per session"))
    if plan.pending:
        rows.append(("Pending answers", ", ".join(plan.pending)))
    if plan.technique_note:
        rows.append(("Technique", plan.technique_note))
    if plan.biopsy_sentence:
        rows.append(("Biopsy", plan.biopsy_sentence))
    return rows


def _questions(result: EligibilityResult) -> list[tuple[str, list[tuple[str, str]]]]:
    groups: dict[str, list[tuple[str, str]]] = {}
    for q in result.questions:
        levels = ", ".join(q.levels)
        where = f"levels {levels}; " if levels else ""
        detail = f"{where}answer in clinical.yaml: {q.field}" if q.field else where.rstrip("; ")
        groups.setdefault(q.asked_of or "clinician", []).append((q.text, detail))
    order = [a for a in _ASKED_OF_ORDER if a in groups] + sorted(set(groups) - set(_ASKED_OF_ORDER))
    return [(a, groups[a]) for a in order]


def _source_view(src: Source, refs: Mapping[str, Reference]) -> SourceView:
    return SourceView(
        label=source_short(src, refs),
        quote=src.quote if src.seed else src.policy,
        anchor=reference_anchor(src.seed) if src.seed in refs else "",
    )


def eligibility_view(result: EligibilityResult | None) -> EligibilityView | None:
    """Display model of the rules stage's result, or None when the rules were not evaluated."""
    if result is None:
        return None
    catalogue = {c.id: c for c in result.catalogue if c.id}
    refs = {r.seed: r for r in result.references if r.seed}
    if result.clinical_provided:
        clinical = f"clinical inputs from {result.clinical_file or 'the clinical file'}"
    else:
        clinical = "imaging only: no clinical inputs were given, so every clinical question is open"
    levels = [_level(d, catalogue, refs) for d in result.levels]
    return EligibilityView(
        summary=result.summary,
        disclaimer=result.disclaimer,
        clinical=clinical,
        levels=levels,
        groups=_groups(levels),
        traces=_trace_groups(levels),
        patient=_trace(result.patient_trace, catalogue, refs),
        excluded=list(result.excluded),
        plan=_plan(result.plan),
        questions=_questions(result),
        catalogue=[
            CatalogueRow(c.id, c.kind.value, c.text, c.note, [_source_view(s, refs) for s in c.sources])
            for c in catalogue.values()
        ],
        references=[ReferenceView(reference_anchor(seed), r.short, r.citation, seed) for seed, r in refs.items()],
        rules_info=f"{result.rules_file or 'rules'} version {result.rules_version}, sha256 {result.rules_sha256[:16]}",
    )
