"""The words of an eligibility result: rule sentences, per-level reasons, the plan's notes, the questions, the
summary and the plain-language sentences of the HTML report.

Everything here formats what :mod:`pipeline.eligibility.engine` decided; nothing here decides.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from enum import Enum
from typing import Any

from pipeline.eligibility.inputs import INPUTS, InputSpec, InputType, Origin
from pipeline.eligibility.rules import Rule, RuleSet
from pipeline.levels import Level
from pipeline.model import (
    Decision,
    EligibilityResult,
    Kind,
    LevelDecision,
    Question,
    RuleOutcome,
    SessionPlan,
    Tri,
)

DISCLAIMER = (
    "Decision support only: this assessment supports, and never replaces, the decision of the treating "
    "clinician and the spine/interventional team. Check the images, the measurements and the clinical "
    "inputs before acting on it."
)

_ASKED_OF = {Origin.CLINICAL: "clinician", Origin.RADIOLOGIST: "radiologist", Origin.IMAGING: "imaging review"}


# --------------------------------------------------------------------------- values
def join(names: Iterable[str]) -> str:
    """``"L1"``, ``"L1 and L2"``, ``"T12, L1 and L2"``."""
    names = list(names)
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


def fmt(spec: InputSpec, v: Any) -> str:
    """An input value in words: ``"yes"``, ``"35 %"``, ``"not known"``."""
    if v is None:
        return "not known"
    if spec.type is InputType.BOOL:
        return "yes" if v else "no"
    if spec.type is InputType.NUMBER:
        unit = {"%": " %", "": ""}.get(spec.unit, f" {spec.unit}")
        return f"{float(v):.4g}{unit}"
    return str(v.value if isinstance(v, Enum) else v)


def shown_value(v: Any) -> Any:
    """An input value as the rule trace records it (enums by value, numbers to 3 decimals)."""
    if isinstance(v, Enum):
        return v.value
    if isinstance(v, float):
        return round(v, 3)
    return v


def parameters(params: Mapping[str, Any]) -> str:
    """A parameter-only rule's settings: ``"max_levels 3, priority a, b"``."""
    return ", ".join(f"{k} {', '.join(v) if isinstance(v, tuple) else v}" for k, v in params.items())


def input_order(names: Iterable[str]) -> tuple[str, ...]:
    """Inputs in registry order (imaging, clinical, radiologist), for stable, readable lists."""
    order = {name: i for i, name in enumerate(INPUTS)}
    return tuple(sorted(names, key=lambda n: order[n]))


def _level_sort(name: str) -> tuple[int, str]:
    try:
        return Level.parse(name).ordinal, name
    except ValueError:
        return 99, name


# --------------------------------------------------------------------------- rules and levels
def rule_sentence(
    rule: Rule, where: str | None, result: Tri, why: Sequence[str], missing: Iterable[str], assumed: str
) -> str:
    """``"L1: <rule text> - yes (<why>)."``, or what would decide it when unknown."""
    prefix = f"{where}: " if where else ""
    word = {True: "yes", False: "no", None: "unknown"}[result]
    s = f"{prefix}{rule.text.rstrip('.')} - {word}"
    missing = input_order(missing)
    if assumed:
        s += f"; assumed {word} because {assumed.rstrip('.')}"
    if result is not None and why and not assumed:
        s += f" ({'; '.join(why)})"
    elif missing:
        s += f"; would be decided by: {', '.join(INPUTS[m].label for m in missing)}"
    return s + "."


def level_reasons(
    decision: Decision,
    possible: tuple[Decision, ...],
    groups: Mapping[Kind, list[RuleOutcome]],
    by_rule: Mapping[str, RuleOutcome],
    rules: RuleSet,
    deciding: Iterable[str],
) -> tuple[str, ...]:
    """Plain-language reasons for one level's decision (without the level name)."""

    def explained(kind: Kind, value: Tri) -> list[str]:
        out = []
        for o in groups[kind]:
            if o.result is value:
                text = rules.rule(o.rule).text.rstrip(".")
                out.append(f"{text} ({'; '.join(o.because)})" if o.because and value is not None else text)
        return out

    out = []
    if decision is Decision.NOT_INDICATED:
        # no procedure is in question: its contraindications (e.g. "prophylactic augmentation" on every
        # unfractured level) are listed in absolute_contraindications, not repeated as reasons
        out.append(f"Not indicated; not met: {'; '.join(explained(Kind.INDICATION, False))}.")
    elif decision is Decision.CONTRAINDICATED:
        out.append(f"Contraindicated: {'; '.join(explained(Kind.ABSOLUTE, True))}.")
        if any(o.result is None for o in groups[Kind.INDICATION]):
            out.append("The indication was not fully assessed (inputs missing); no answer can change this.")
    elif decision.is_candidate:
        met = [rules.rule(o.rule).text.rstrip(".") for o in groups[Kind.INDICATION]]
        out.append(f"{decision.text.capitalize()}: indications met: {'; '.join(met)}.")
        cautions = explained(Kind.RELATIVE, True)
        if cautions:
            out.append(f"Cautions (relative contraindications): {'; '.join(cautions)}.")
        else:
            out.append("No absolute or relative contraindication found.")
        open_ = explained(Kind.RELATIVE, None)
        if open_:
            out.append(f"Cautions not yet assessed: {'; '.join(open_)}.")
        for o in by_rule.values():
            if o.assumed:
                out.append(
                    f"{rules.rule(o.rule).text.rstrip('.')}: assumed {'yes' if o.result else 'no'} "
                    f"({o.assumed.rstrip('.')})."
                )
    else:
        words = " or ".join(p.text for p in possible)
        deciding = input_order(deciding)
        if len(deciding) > 8:
            by = f"{len(deciding)} missing inputs (see the questions)"
        else:
            by = ", ".join(INPUTS[i].label for i in deciding)
        out.append(f"Indeterminate: could be {words}; would be decided by: {by}.")
        cautions = explained(Kind.RELATIVE, True)
        if cautions:
            out.append(f"Cautions if treated (relative contraindications): {'; '.join(cautions)}.")
    return tuple(out)


# --------------------------------------------------------------------------- plan and questions
def technique_note(
    treat: Sequence[LevelDecision], kp: Sequence[str], either: Sequence[str], undetermined: Sequence[str]
) -> str:
    """The technique per candidate level, with why kyphoplasty is preferred where it is."""
    if not treat:
        return "No level is a candidate at present; no technique to choose."
    parts = []
    if kp:
        why = {d.name: "; ".join(d.trace_of("plan.prefer_kyphoplasty").because) for d in treat}
        parts.append("balloon kyphoplasty preferred at " + join([f"{n} ({why[n]})" for n in kp]))
    if either:
        parts.append(f"vertebroplasty or kyphoplasty at {join(either)}")
    if undetermined:
        parts.append(f"technique undetermined at {join(undetermined)} (inputs missing)")
    return "Technique: " + "; ".join(parts) + "."


def biopsy_sentence(outcome: RuleOutcome, rule: Rule) -> str:
    """The biopsy recommendation and why, or the questions that would decide it."""
    text = rule.text.rstrip(".")
    if outcome.result is not None:
        verdict = "recommended" if outcome.result else "not called for by the rules"
        return f"{text}: {verdict} ({'; '.join(outcome.because)})."
    return "Biopsy recommendation undetermined; answer: " + "; ".join(INPUTS[m].question for m in outcome.missing) + "."


def question(inp: str, levels: Iterable[str], rules: Iterable[str]) -> Question:
    """The question that asks for input ``inp`` at ``levels`` (for ``rules``)."""
    spec = INPUTS[inp]
    lv = tuple(sorted(levels, key=_level_sort))
    text = spec.question.replace("{level}", join(lv) if lv else "the level")
    fld = spec.field.replace("{level}", lv[0] if len(lv) == 1 else "<level>")
    return Question(inp, _ASKED_OF[spec.origin], text, fld, lv, tuple(sorted(rules)))


# --------------------------------------------------------------------------- the result
def summary(
    decisions: Sequence[LevelDecision], plan: SessionPlan, have_clinical: bool, questions: Sequence[Question]
) -> str:
    """One paragraph: the levels per decision, the sessions, whether clinical inputs were given, the questions."""
    if not decisions:
        return "No vertebral body could be evaluated."
    by: dict[Decision, list[str]] = {d: [] for d in Decision}
    for d in decisions:
        by[d.decision].append(d.name)
    parts = []
    for dec in (
        Decision.CANDIDATE,
        Decision.CANDIDATE_WITH_CAUTIONS,
        Decision.INDETERMINATE,
        Decision.CONTRAINDICATED,
    ):
        if by[dec]:
            parts.append(f"{dec.text}: {join(by[dec])}")
    if by[Decision.NOT_INDICATED]:
        parts.append(f"not indicated: {len(by[Decision.NOT_INDICATED])} level(s)")
    s = "; ".join(parts)
    s = s[:1].upper() + s[1:] + "."
    if plan.sessions:
        n = len(plan.sessions)
        s += f" Plan: {n} session{'s' if n > 1 else ''} (at most {plan.max_levels_per_session} levels each)."
    if not have_clinical:
        s += " Imaging only: no clinical inputs were given."
    if questions:
        s += f" {len(questions)} question(s) to answer."
    return s


def sentences(r: EligibilityResult) -> tuple[str, ...]:
    """The result in plain language, for the HTML report: summary, levels, plan, questions, disclaimer."""
    out = [r.summary]
    grouped: dict[tuple[str, ...], list[str]] = {}  # identical reasons of not-indicated levels, said once
    for d in r.levels:
        if d.decision is Decision.NOT_INDICATED:
            grouped.setdefault(d.reasons, []).append(d.name)
        else:
            out.extend(f"{d.name}: {reason}" for reason in d.reasons)
    for reasons, names in grouped.items():
        out.extend(f"{join(names)}: {reason}" for reason in reasons)
    for name, reason in r.excluded:
        out.append(f"{name}: not evaluated; {reason}")
    p = r.plan
    for i, s in enumerate(p.sessions):
        out.append(f"Session {i + 1}: {join(s)}.")
    if len(p.sessions) > 1:
        out.append(f"More than {p.max_levels_per_session} levels: staged over {len(p.sessions)} sessions.")
    if p.pending:
        out.append(f"Pending answers: {join(p.pending)} could become candidate(s).")
    if p.sessions or p.pending:
        out.append(p.technique_note)
        out.append(p.biopsy_sentence)
    for q in r.questions:
        out.append(f"Question for the {q.asked_of}: {q.text}")
    out.append(r.disclaimer)
    return tuple(out)
