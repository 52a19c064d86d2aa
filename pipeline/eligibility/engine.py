"""Evaluation of the eligibility rules: three-valued operators, per-level decisions, the session plan.

Every rule gives true, false or unknown (Kleene logic: ``all`` is false as soon as one operand is false,
``any`` is true as soon as one is true, otherwise unknown if any operand is unknown). An unknown result
carries the inputs that would decide it.

Decision per level (the aggregation is engine logic; the rules themselves are data):

- indication = every indication rule true (level rules and patient rules);
- absolute = any absolute contraindication true; relative = any relative contraindication true;
- with all three known: indication false -> ``not_indicated``; else absolute -> ``contraindicated``;
  else relative -> ``candidate_with_cautions``; else ``candidate``;
- with unknowns, every completion of the unknown groups is tried. One possible decision -> that one.
  Only ``not_indicated`` / ``contraindicated`` possible -> ``contraindicated`` (an absolute
  contraindication is certain, so no answer can make the level a candidate). Otherwise
  ``indeterminate``, with the possible decisions and exactly the inputs that would decide it.

Session plan: candidate levels (with or without cautions) ordered by ``plan.max_levels_per_session``'s
``priority`` inputs and cut into sessions of at most ``max_levels``; technique per level from
``plan.prefer_kyphoplasty``; biopsy from ``plan.biopsy``.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import Any, NamedTuple

from pipeline.eligibility.clinical import ClinicalInputs
from pipeline.eligibility.facts import LevelFacts
from pipeline.eligibility.inputs import INPUTS, InputSpec, InputType, Origin, Scope
from pipeline.eligibility.rules import (
    AllOf,
    Compare,
    Condition,
    Definition,
    FirstKnown,
    InSet,
    Is,
    Kind,
    Not,
    Ref,
    Rule,
    RuleSet,
)
from pipeline.levels import Level

logger = logging.getLogger(__name__)

Tri = bool | None

DISCLAIMER = (
    "Decision support only: this assessment supports, and never replaces, the decision of the treating "
    "clinician and the spine/interventional team. Check the images, the measurements and the clinical "
    "inputs before acting on it."
)
RESULT_SCHEMA_VERSION = 1


class Decision(StrEnum):
    CANDIDATE = "candidate"
    CANDIDATE_WITH_CAUTIONS = "candidate_with_cautions"
    CONTRAINDICATED = "contraindicated"
    NOT_INDICATED = "not_indicated"
    INDETERMINATE = "indeterminate"


_POSITIVE = (Decision.CANDIDATE, Decision.CANDIDATE_WITH_CAUTIONS)
_WORDS = {
    Decision.CANDIDATE: "candidate",
    Decision.CANDIDATE_WITH_CAUTIONS: "candidate with cautions",
    Decision.CONTRAINDICATED: "contraindicated",
    Decision.NOT_INDICATED: "not indicated",
    Decision.INDETERMINATE: "indeterminate",
}


# --------------------------------------------------------------------------- results
@dataclass(frozen=True)
class RuleOutcome:
    """One rule evaluated at one level (``level`` None for a patient rule)."""

    rule: str
    kind: Kind
    level: str | None
    result: Tri
    inputs: Mapping[str, Any]  # input name -> JSON-able value (None = missing)
    missing: tuple[str, ...]  # inputs that would decide an unknown result
    sentence: str
    assumed: str = ""  # when_missing assumption applied (its reason), else ""
    because: tuple[str, ...] = ()  # the facts that decided a known result, in words

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "rule": self.rule,
            "kind": self.kind.value,
            "result": _tri_word(self.result),
            "inputs": dict(self.inputs),
            "missing": list(self.missing),
            "because": list(self.because),
            "sentence": self.sentence,
        }
        if self.assumed:
            d["assumed"] = self.assumed
        return d


@dataclass(frozen=True)
class LevelDecision:
    label: int
    level: Level | None
    name: str
    decision: Decision
    possible: tuple[Decision, ...]  # more than one only when indeterminate
    indications_met: tuple[str, ...]
    indications_not_met: tuple[str, ...]
    absolute: tuple[str, ...]  # absolute contraindications that hold
    relative: tuple[str, ...]  # relative contraindications (cautions) that hold
    unknown: tuple[str, ...]  # rules (any kind) left unknown
    deciding_inputs: tuple[str, ...]  # inputs that would decide an indeterminate level
    kyphoplasty_preferred: Tri
    reasons: tuple[str, ...]  # plain-language sentences
    trace: tuple[RuleOutcome, ...]  # level-scope rules at this level
    notes: tuple[str, ...] = ()  # imaging caveats (why facts are unknown)

    def trace_of(self, rule_id: str) -> RuleOutcome:
        """This level's outcome of a level-scope rule."""
        for o in self.trace:
            if o.rule == rule_id:
                return o
        raise KeyError(rule_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "level": self.level.value if self.level is not None else None,
            "label": self.label,
            "name": self.name,
            "decision": self.decision.value,
            "possible_decisions": [d.value for d in self.possible],
            "indications_met": list(self.indications_met),
            "indications_not_met": list(self.indications_not_met),
            "absolute_contraindications": list(self.absolute),
            "relative_contraindications": list(self.relative),
            "unknown_rules": list(self.unknown),
            "deciding_inputs": list(self.deciding_inputs),
            "technique": _technique_word(self.kyphoplasty_preferred) if self.decision in _POSITIVE else None,
            "reasons": list(self.reasons),
            "notes": list(self.notes),
            "trace": [t.to_dict() for t in self.trace],
        }


@dataclass(frozen=True)
class Question:
    """An input whose answer would change or complete the assessment."""

    input: str
    asked_of: str  # "clinician", "radiologist" or "imaging review"
    text: str
    field: str  # where to write the answer in the clinical file ("" for imaging)
    levels: tuple[str, ...]
    rules: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "input": self.input,
            "asked_of": self.asked_of,
            "question": self.text,
            "field": self.field,
            "levels": list(self.levels),
            "rules": list(self.rules),
        }


@dataclass(frozen=True)
class SessionPlan:
    max_levels_per_session: int
    priority: tuple[str, ...]
    sessions: tuple[tuple[str, ...], ...]  # level names, by priority
    pending: tuple[str, ...]  # indeterminate levels that could still become candidates
    kyphoplasty_preferred: tuple[str, ...]
    either_technique: tuple[str, ...]
    technique_undetermined: tuple[str, ...]
    biopsy: Tri
    biopsy_sentence: str
    technique_note: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_levels_per_session": self.max_levels_per_session,
            "priority": list(self.priority),
            "sessions": [{"session": i + 1, "levels": list(s)} for i, s in enumerate(self.sessions)],
            "staged": len(self.sessions) > 1,
            "pending_levels": list(self.pending),
            "technique": {
                "note": self.technique_note,
                "kyphoplasty_preferred": list(self.kyphoplasty_preferred),
                "either": list(self.either_technique),
                "undetermined": list(self.technique_undetermined),
            },
            "biopsy": {"recommended": self.biopsy, "sentence": self.biopsy_sentence},
        }


@dataclass(frozen=True)
class EligibilityResult:
    """Per-level decisions, the patient's plan, the full rule trace and the open questions."""

    levels: tuple[LevelDecision, ...]
    excluded: tuple[tuple[str, str], ...]  # (level name, reason) not evaluated
    patient_trace: tuple[RuleOutcome, ...]
    plan: SessionPlan
    questions: tuple[Question, ...]
    summary: str
    clinical_provided: bool
    clinical_file: str | None
    rules_file: str | None
    rules_sha256: str
    rules_version: int
    catalogue: tuple[Mapping[str, Any], ...] = ()  # every rule: id, kind, scope, text, note, sources
    references: tuple[Mapping[str, Any], ...] = ()  # full citation of every seed document the rules cite
    disclaimer: str = DISCLAIMER
    sentences: tuple[str, ...] = field(default=())

    def level(self, name: str) -> LevelDecision:
        """The decision for ``"L1"`` (or ``"vertebra #3"``)."""
        for d in self.levels:
            if d.name == name:
                return d
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form, for ``report.json["eligibility"]``."""
        return {
            "schema_version": RESULT_SCHEMA_VERSION,
            "disclaimer": self.disclaimer,
            "summary": self.summary,
            "rules": {"file": self.rules_file, "sha256": self.rules_sha256, "version": self.rules_version},
            "rule_catalogue": [dict(c) for c in self.catalogue],
            "clinical": {"provided": self.clinical_provided, "file": self.clinical_file},
            "levels": [d.to_dict() for d in self.levels],
            "excluded_levels": [{"name": n, "reason": r} for n, r in self.excluded],
            "patient_rules": [t.to_dict() for t in self.patient_trace],
            "plan": self.plan.to_dict(),
            "questions": [q.to_dict() for q in self.questions],
            "sentences": list(self.sentences),
            "references": [dict(r) for r in self.references],
        }


# --------------------------------------------------------------------------- operators
def _tri_all(values: Sequence[Tri]) -> Tri:
    if any(v is False for v in values):
        return False
    return True if all(v is True for v in values) else None


def _tri_any(values: Sequence[Tri]) -> Tri:
    if any(v is True for v in values):
        return True
    return False if all(v is False for v in values) else None


class Eval(NamedTuple):
    """Result of a condition: value, the inputs that would decide it if unknown, and why (plain words)."""

    value: Tri
    missing: frozenset[str]
    why: tuple[str, ...]


def evaluate_condition(cond: Condition, values: Mapping[str, Any], definitions: Mapping[str, Definition]) -> Eval:
    """Evaluate a condition on resolved input values (``None`` = missing), in three-valued logic.

    ``why`` lists the leaves that decided a known result (e.g. ``"height loss 35 % (threshold > 66.67 %)"``);
    ``missing`` lists, for an unknown result, the inputs that would decide it.
    """
    if isinstance(cond, Compare | Is | InSet):
        v = values.get(cond.input)
        spec = INPUTS[cond.input]
        if v is None:
            return Eval(None, frozenset({cond.input}), ())
        if isinstance(cond, Compare):
            x, t = float(v), cond.value
            res = {">=": x >= t, ">": x > t, "<": x < t, "<=": x <= t, "==": x == t}[cond.op]
            return Eval(res, frozenset(), (f"{spec.label} {_fmt(spec, v)}, threshold {cond.op} {_fmt(spec, t)}",))
        if isinstance(cond, Is):
            return Eval(bool(v) is cond.value, frozenset(), (f"{spec.label}: {_fmt(spec, v)}",))
        key = v.value if isinstance(v, Enum) else v
        res = key in cond.values
        return Eval(res, frozenset(), (f"{spec.label} {key}, {'' if res else 'not '}in {', '.join(cond.values)}",))
    if isinstance(cond, Not):
        r = evaluate_condition(cond.item, values, definitions)
        return Eval(None if r.value is None else not r.value, r.missing, r.why)
    if isinstance(cond, Ref):
        d = definitions[cond.name]
        r = evaluate_condition(d.when, values, definitions)
        if r.value is None:
            return r
        text = d.text.split(" (")[0]
        return Eval(r.value, r.missing, (f"{text}: {'yes' if r.value else 'no'} ({'; '.join(r.why)})",))
    results = [evaluate_condition(c, values, definitions) for c in cond.items]
    if isinstance(cond, FirstKnown):
        for r in results:
            if r.value is not None:
                return r
        return Eval(None, frozenset().union(*(r.missing for r in results)), ())
    vals = [r.value for r in results]
    combined = _tri_all(vals) if isinstance(cond, AllOf) else _tri_any(vals)
    if combined is None:
        return Eval(None, frozenset().union(*(r.missing for r in results if r.value is None)), ())
    # the operands that decided: all -> the false ones (or, if true, every one); any -> the true ones
    # (or, if false, every one). In each case those whose value equals the combined value.
    deciding = [r for r in results if r.value is combined]
    return Eval(combined, frozenset(), tuple(w for r in deciding for w in r.why))


# --------------------------------------------------------------------------- evaluation
def evaluate(facts: Sequence[LevelFacts], clinical: ClinicalInputs | None, rules: RuleSet) -> EligibilityResult:
    """Evaluate every rule per level and per patient, decide each level and plan the sessions.

    Parameters
    ----------
    facts : sequence of LevelFacts
        From :func:`~pipeline.eligibility.facts.imaging_facts`, one per vertebral body.
    clinical : ClinicalInputs or None
        ``None`` for an imaging-only run: every clinical input is unknown, imaging rules are still
        evaluated and the questions to answer are listed.
    rules : RuleSet
        From :func:`~pipeline.eligibility.rules.load_rules`.
    """
    patient_trace = tuple(evaluate_rule(r, None, clinical, rules) for r in rules.rules if r.scope is Scope.PATIENT)
    by_rule_patient = {o.rule: o for o in patient_trace}

    decisions: list[LevelDecision] = []
    excluded: list[tuple[str, str]] = []
    for f in facts:
        if f.level is not None and f.level in rules.settings.excluded_levels:
            excluded.append((f.name, rules.settings.excluded_reason))
            continue
        level_trace = tuple(evaluate_rule(r, f, clinical, rules) for r in rules.rules if r.scope is Scope.LEVEL)
        decisions.append(_decide_level(f, level_trace, by_rule_patient, rules))

    plan = _plan(decisions, facts, clinical, rules, by_rule_patient)
    questions = _questions(decisions, patient_trace)
    summary = _summary(decisions, plan, clinical is not None, questions)
    result = EligibilityResult(
        levels=tuple(decisions),
        excluded=tuple(excluded),
        patient_trace=patient_trace,
        plan=plan,
        questions=questions,
        summary=summary,
        clinical_provided=clinical is not None,
        clinical_file=clinical.source.name if clinical is not None and clinical.source is not None else None,
        rules_file=rules.path.name if rules.path is not None else None,
        rules_sha256=rules.sha256,
        rules_version=rules.version,
        catalogue=tuple(_catalogue_entry(r) for r in rules.rules),
        references=tuple(ref.to_dict() for ref in rules.cited_references()),
    )
    sentences = _sentences(result)
    logger.info("eligibility: %s", summary)
    return dataclasses.replace(result, sentences=sentences)


def _catalogue_entry(rule: Rule) -> dict[str, Any]:
    """A rule as the report shows it next to the trace: what it says and where it comes from."""
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


def evaluate_rule(rule: Rule, f: LevelFacts | None, clinical: ClinicalInputs | None, rules: RuleSet) -> RuleOutcome:
    """Evaluate one rule at one level (``f``; ``None`` for a patient-scope rule)."""
    where = f.name if f is not None else None
    if rule.when is None:  # a parameter-only plan rule: applied by the engine (session planning)
        params = ", ".join(f"{k} {', '.join(v) if isinstance(v, tuple) else v}" for k, v in rule.parameters.items())
        return RuleOutcome(
            rule.id,
            rule.kind,
            where,
            True,
            {},
            (),
            f"{rule.text.rstrip('.')} - applied ({params}).",
            because=(params,),
        )
    values = {name: INPUTS[name].value(f, clinical) for name in rule.inputs}
    result, missing, why = evaluate_condition(rule.when, values, rules.definitions)
    assumed = ""
    if result is None and rule.when_missing.assume is not None:
        result, assumed = rule.when_missing.assume, rule.when_missing.because
        # the missing inputs are still reported, so the assumption can be replaced by an answer
    shown = {name: _jsonable(v) for name, v in values.items()}
    return RuleOutcome(
        rule=rule.id,
        kind=rule.kind,
        level=where,
        result=result,
        inputs=shown,
        missing=_input_order(missing),
        sentence=_rule_sentence(rule, where, result, why, missing, assumed),
        because=why,
        assumed=assumed,
    )


def _decide_level(
    f: LevelFacts, trace: tuple[RuleOutcome, ...], patient: Mapping[str, RuleOutcome], rules: RuleSet
) -> LevelDecision:
    by_rule = {**patient, **{o.rule: o for o in trace}}
    groups: dict[Kind, list[RuleOutcome]] = {k: [] for k in Kind}
    for r in rules.rules:
        groups[r.kind].append(by_rule[r.id])
    ind = _tri_all([o.result for o in groups[Kind.INDICATION]])
    ab = _tri_any([o.result for o in groups[Kind.ABSOLUTE]])
    rel = _tri_any([o.result for o in groups[Kind.RELATIVE]])

    decision, possible, matters = aggregate(ind, ab, rel)
    deciding: set[str] = set()
    if decision is Decision.INDETERMINATE:
        for kind in matters:
            for o in groups[kind]:
                if o.result is None:
                    deciding.update(o.missing)

    def ids(kind: Kind, value: Tri) -> tuple[str, ...]:
        return tuple(o.rule for o in groups[kind] if o.result is value)

    kypho = by_rule["plan.prefer_kyphoplasty"].result
    unknown = tuple(o.rule for o in by_rule.values() if o.result is None)
    reasons = _level_reasons(decision, possible, groups, by_rule, rules, deciding)
    return LevelDecision(
        label=f.label,
        level=f.level,
        name=f.name,
        decision=decision,
        possible=possible,
        indications_met=ids(Kind.INDICATION, True),
        indications_not_met=ids(Kind.INDICATION, False),
        absolute=ids(Kind.ABSOLUTE, True),
        relative=ids(Kind.RELATIVE, True),
        unknown=tuple(sorted(unknown)),
        deciding_inputs=_input_order(deciding),
        kyphoplasty_preferred=kypho,
        reasons=reasons,
        trace=trace,
        notes=f.notes,
    )


def aggregate(ind: Tri, ab: Tri, rel: Tri) -> tuple[Decision, tuple[Decision, ...], set[Kind]]:
    """Decide a level from its three groups (each true / false / unknown).

    Parameters
    ----------
    ind : bool or None
        All indications hold.
    ab : bool or None
        Some absolute contraindication holds.
    rel : bool or None
        Some relative contraindication holds.

    Returns
    -------
    decision, possible decisions, groups whose unknown value would change the decision
    """
    possible = _possible(ind, ab, rel)
    if len(possible) == 1:
        return possible[0], possible, set()
    if set(possible) <= {Decision.NOT_INDICATED, Decision.CONTRAINDICATED}:
        # an absolute contraindication is certain: whatever the indication, the level is not to be treated
        return Decision.CONTRAINDICATED, (Decision.CONTRAINDICATED,), set()
    return Decision.INDETERMINATE, possible, _groups_that_matter(ind, ab, rel)


def _base(ind: bool, ab: bool, rel: bool) -> Decision:
    if not ind:
        return Decision.NOT_INDICATED
    if ab:
        return Decision.CONTRAINDICATED
    return Decision.CANDIDATE_WITH_CAUTIONS if rel else Decision.CANDIDATE


def _options(v: Tri) -> tuple[bool, ...]:
    return (True, False) if v is None else (v,)


def _possible(ind: Tri, ab: Tri, rel: Tri) -> tuple[Decision, ...]:
    found = {_base(i, a, r) for i, a, r in itertools.product(_options(ind), _options(ab), _options(rel))}
    return tuple(d for d in Decision if d in found)


def _groups_that_matter(ind: Tri, ab: Tri, rel: Tri) -> set[Kind]:
    out = set()
    for kind, value in ((Kind.INDICATION, ind), (Kind.ABSOLUTE, ab), (Kind.RELATIVE, rel)):
        if value is not None:
            continue
        fixed = {}
        for choice in (True, False):
            args = {Kind.INDICATION: ind, Kind.ABSOLUTE: ab, Kind.RELATIVE: rel, kind: choice}
            fixed[choice] = set(_possible(args[Kind.INDICATION], args[Kind.ABSOLUTE], args[Kind.RELATIVE]))
        if fixed[True] != fixed[False]:
            out.add(kind)
    return out


# --------------------------------------------------------------------------- plan
def _plan(
    decisions: Sequence[LevelDecision],
    facts: Sequence[LevelFacts],
    clinical: ClinicalInputs | None,
    rules: RuleSet,
    patient: Mapping[str, RuleOutcome],
) -> SessionPlan:
    params = rules.rule("plan.max_levels_per_session").parameters
    max_levels: int = params["max_levels"]
    priority: tuple[str, ...] = params["priority"]
    facts_by_label = {f.label: f for f in facts}

    def key(d: LevelDecision) -> tuple[float, ...]:
        f = facts_by_label[d.label]
        out: list[float] = []
        for name in priority:
            spec = INPUTS[name]
            v = spec.value(f if spec.scope is Scope.LEVEL else None, clinical)
            if spec.type is InputType.BOOL:
                out.append({True: 0.0, None: 1.0, False: 2.0}[v])
            else:
                out.append(float("inf") if v is None else -float(v))
        out.append(float(d.label))
        return tuple(out)

    treat = sorted((d for d in decisions if d.decision in _POSITIVE), key=key)
    names = [d.name for d in treat]
    sessions = tuple(tuple(names[i : i + max_levels]) for i in range(0, len(names), max_levels))
    pending = tuple(
        d.name for d in decisions if d.decision is Decision.INDETERMINATE and any(p in _POSITIVE for p in d.possible)
    )
    kp = tuple(d.name for d in treat if d.kyphoplasty_preferred is True)
    either = tuple(d.name for d in treat if d.kyphoplasty_preferred is False)
    undetermined = tuple(d.name for d in treat if d.kyphoplasty_preferred is None)

    if not treat:
        note = "No level is a candidate at present; no technique to choose."
    else:
        parts = []
        if kp:
            why = {d.name: "; ".join(d.trace_of("plan.prefer_kyphoplasty").because) for d in treat}
            parts.append("balloon kyphoplasty preferred at " + _join([f"{n} ({why[n]})" for n in kp]))
        if either:
            parts.append(f"vertebroplasty or kyphoplasty at {_join(either)}")
        if undetermined:
            parts.append(f"technique undetermined at {_join(undetermined)} (inputs missing)")
        note = "Technique: " + "; ".join(parts) + "."

    bio = patient["plan.biopsy"]
    bio_text = rules.rule("plan.biopsy").text.rstrip(".")
    if bio.result is not None:
        verdict = "recommended" if bio.result else "not called for by the rules"
        bio_sentence = f"{bio_text}: {verdict} ({'; '.join(bio.because)})."
    else:
        bio_sentence = (
            "Biopsy recommendation undetermined; answer: " + "; ".join(INPUTS[m].question for m in bio.missing) + "."
        )
    return SessionPlan(
        max_levels, priority, sessions, pending, kp, either, undetermined, bio.result, bio_sentence, note
    )


# --------------------------------------------------------------------------- questions and words
def _questions(decisions: Sequence[LevelDecision], patient_trace: Sequence[RuleOutcome]) -> tuple[Question, ...]:
    wanted: dict[str, tuple[set[str], set[str]]] = {}  # input -> (levels, rules)

    def add(inp: str, level: str | None, rule: str, labelled: bool = True) -> None:
        if not labelled and INPUTS[inp].scope is Scope.LEVEL and INPUTS[inp].origin is not Origin.IMAGING:
            inp = "imaging.level"  # clinical answers need a level name: the labelling must be fixed first
        levels, rls = wanted.setdefault(inp, (set(), set()))
        if level is not None and INPUTS[inp].scope is Scope.LEVEL:
            levels.add(level)
        rls.add(rule)

    # levels still in play: candidates (open cautions, technique) and indeterminate levels (which always
    # include a candidate among their possible decisions)
    open_levels = [d for d in decisions if d.decision in _POSITIVE or d.decision is Decision.INDETERMINATE]
    patient_by_rule = {o.rule: o for o in patient_trace}
    for d in open_levels:
        for o in {**patient_by_rule, **{o.rule: o for o in d.trace}}.values():
            if o.result is not None and not o.assumed:
                continue
            if o.kind in (Kind.RELATIVE, Kind.PLAN):
                take = o.missing
            else:
                take = tuple(m for m in o.missing if m in d.deciding_inputs)
            for m in take:
                add(m, d.name, o.rule, labelled=d.level is not None)
    order = {name: i for i, name in enumerate(INPUTS)}
    out = []
    for inp in sorted(wanted, key=lambda n: order[n]):
        levels, rls = wanted[inp]
        spec = INPUTS[inp]
        lv = tuple(sorted(levels, key=_level_sort))
        text = spec.question.replace("{level}", _join(lv) if lv else "the level")
        fld = spec.field.replace("{level}", lv[0] if len(lv) == 1 else "<level>")
        asked = {
            Origin.CLINICAL: "clinician",
            Origin.RADIOLOGIST: "radiologist",
            Origin.IMAGING: "imaging review",
        }[spec.origin]
        out.append(Question(inp, asked, text, fld, lv, tuple(sorted(rls))))
    return tuple(out)


def _level_sort(name: str) -> tuple[int, str]:
    try:
        return Level.parse(name).ordinal, name
    except ValueError:
        return 99, name


def _input_order(names: set[str] | frozenset[str]) -> tuple[str, ...]:
    """Inputs in registry order (imaging, clinical, radiologist), for stable, readable lists."""
    order = {name: i for i, name in enumerate(INPUTS)}
    return tuple(sorted(names, key=lambda n: order[n]))


def _join(names: Sequence[str]) -> str:
    names = list(names)
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


def _tri_word(v: Tri) -> str:
    return "unknown" if v is None else ("true" if v else "false")


def _technique_word(v: Tri) -> str:
    return "undetermined" if v is None else ("kyphoplasty_preferred" if v else "either")


def _jsonable(v: Any) -> Any:
    if isinstance(v, Enum):
        return v.value
    if isinstance(v, float):
        return round(v, 3)
    return v


def _fmt(spec: InputSpec, v: Any) -> str:
    if v is None:
        return "not known"
    if spec.type is InputType.BOOL:
        return "yes" if v else "no"
    if spec.type is InputType.NUMBER:
        unit = {"%": " %", "": ""}.get(spec.unit, f" {spec.unit}")
        return f"{float(v):.4g}{unit}"
    return str(v.value if isinstance(v, Enum) else v)


def _rule_sentence(
    rule: Rule, where: str | None, result: Tri, why: Sequence[str], missing: frozenset[str], assumed: str
) -> str:
    prefix = f"{where}: " if where else ""
    word = {True: "yes", False: "no", None: "unknown"}[result]
    s = f"{prefix}{rule.text.rstrip('.')} - {word}"
    if assumed:
        s += f"; assumed {word} because {assumed.rstrip('.')}"
    if result is not None and why and not assumed:
        s += f" ({'; '.join(why)})"
    elif missing:
        s += f"; would be decided by: {', '.join(INPUTS[m].label for m in _input_order(missing))}"
    return s + "."


def _level_reasons(
    decision: Decision,
    possible: tuple[Decision, ...],
    groups: Mapping[Kind, list[RuleOutcome]],
    by_rule: Mapping[str, RuleOutcome],
    rules: RuleSet,
    deciding: set[str],
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
    elif decision in _POSITIVE:
        met = [rules.rule(o.rule).text.rstrip(".") for o in groups[Kind.INDICATION]]
        out.append(f"{_WORDS[decision].capitalize()}: indications met: {'; '.join(met)}.")
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
        words = " or ".join(_WORDS[p] for p in possible)
        if len(deciding) > 8:
            by = f"{len(deciding)} missing inputs (see the questions)"
        else:
            by = ", ".join(INPUTS[i].label for i in _input_order(deciding))
        out.append(f"Indeterminate: could be {words}; would be decided by: {by}.")
        cautions = explained(Kind.RELATIVE, True)
        if cautions:
            out.append(f"Cautions if treated (relative contraindications): {'; '.join(cautions)}.")
    return tuple(out)


def _summary(
    decisions: Sequence[LevelDecision], plan: SessionPlan, have_clinical: bool, questions: Sequence[Question]
) -> str:
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
            parts.append(f"{_WORDS[dec]}: {_join(by[dec])}")
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


def _sentences(r: EligibilityResult) -> tuple[str, ...]:
    """The result in plain language, for the HTML report: summary, levels, plan, questions, disclaimer."""
    out = [r.summary]
    grouped: dict[tuple[str, ...], list[str]] = {}  # identical reasons of not-indicated levels, said once
    for d in r.levels:
        if d.decision is Decision.NOT_INDICATED:
            grouped.setdefault(d.reasons, []).append(d.name)
        else:
            out.extend(f"{d.name}: {reason}" for reason in d.reasons)
    for reasons, names in grouped.items():
        out.extend(f"{_join(names)}: {reason}" for reason in reasons)
    for name, reason in r.excluded:
        out.append(f"{name}: not evaluated; {reason}")
    p = r.plan
    for i, s in enumerate(p.sessions):
        out.append(f"Session {i + 1}: {_join(s)}.")
    if len(p.sessions) > 1:
        out.append(f"More than {p.max_levels_per_session} levels: staged over {len(p.sessions)} sessions.")
    if p.pending:
        out.append(f"Pending answers: {_join(p.pending)} could become candidate(s).")
    if p.sessions or p.pending:
        out.append(p.technique_note)
        out.append(p.biopsy_sentence)
    for q in r.questions:
        out.append(f"Question for the {q.asked_of}: {q.text}")
    out.append(r.disclaimer)
    return tuple(out)
