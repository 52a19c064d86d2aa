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

The result types are in :mod:`pipeline.model` (the report reads them); the words of the result (reasons,
summary, sentences) are made by :mod:`pipeline.eligibility.wording`.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from collections.abc import Mapping, Sequence
from enum import Enum
from typing import TYPE_CHECKING, Any, NamedTuple

from pipeline.eligibility import wording
from pipeline.eligibility.facts import LevelFacts
from pipeline.eligibility.inputs import INPUTS, InputType, Origin
from pipeline.eligibility.rules import (
    AllOf,
    Compare,
    Condition,
    Definition,
    FirstKnown,
    InSet,
    Is,
    Not,
    Ref,
    Rule,
    RuleSet,
)
from pipeline.model import (
    Decision,
    EligibilityResult,
    Kind,
    LevelDecision,
    Question,
    RuleInfo,
    RuleOutcome,
    Scope,
    SessionPlan,
    Tri,
)

if TYPE_CHECKING:  # the validator (pydantic) is imported only when a clinical file is read
    from pipeline.eligibility.clinical import ClinicalInputs

logger = logging.getLogger(__name__)


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
            return Eval(
                res, frozenset(), (f"{spec.label} {wording.fmt(spec, v)}, threshold {cond.op} {wording.fmt(spec, t)}",)
            )
        if isinstance(cond, Is):
            return Eval(bool(v) is cond.value, frozenset(), (f"{spec.label}: {wording.fmt(spec, v)}",))
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
    summary = wording.summary(decisions, plan, clinical is not None, questions)
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
        disclaimer=wording.DISCLAIMER,
        catalogue=tuple(_catalogue_entry(r) for r in rules.rules),
        references=rules.cited_references(),
    )
    logger.info("eligibility: %s", summary)
    return dataclasses.replace(result, sentences=wording.sentences(result))


def _catalogue_entry(rule: Rule) -> RuleInfo:
    return RuleInfo(rule.id, rule.kind, rule.scope, rule.text, rule.note, rule.sources)


def evaluate_rule(rule: Rule, f: LevelFacts | None, clinical: ClinicalInputs | None, rules: RuleSet) -> RuleOutcome:
    """Evaluate one rule at one level (``f``; ``None`` for a patient-scope rule)."""
    where = f.name if f is not None else None
    if rule.when is None:  # a parameter-only plan rule: applied by the engine (session planning)
        params = wording.parameters(rule.parameters)
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
    return RuleOutcome(
        rule=rule.id,
        kind=rule.kind,
        level=where,
        result=result,
        inputs={name: wording.shown_value(v) for name, v in values.items()},
        missing=wording.input_order(missing),
        sentence=wording.rule_sentence(rule, where, result, why, missing, assumed),
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
    reasons = wording.level_reasons(decision, possible, groups, by_rule, rules, deciding)
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
        deciding_inputs=wording.input_order(deciding),
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

    treat = sorted((d for d in decisions if d.decision.is_candidate), key=key)
    names = [d.name for d in treat]
    sessions = tuple(tuple(names[i : i + max_levels]) for i in range(0, len(names), max_levels))
    pending = tuple(
        d.name for d in decisions if d.decision is Decision.INDETERMINATE and any(p.is_candidate for p in d.possible)
    )
    kp = tuple(d.name for d in treat if d.kyphoplasty_preferred is True)
    either = tuple(d.name for d in treat if d.kyphoplasty_preferred is False)
    undetermined = tuple(d.name for d in treat if d.kyphoplasty_preferred is None)
    bio = patient["plan.biopsy"]
    return SessionPlan(
        max_levels_per_session=max_levels,
        priority=priority,
        sessions=sessions,
        pending=pending,
        kyphoplasty_preferred=kp,
        either_technique=either,
        technique_undetermined=undetermined,
        biopsy=bio.result,
        biopsy_sentence=wording.biopsy_sentence(bio, rules.rule("plan.biopsy")),
        technique_note=wording.technique_note(treat, kp, either, undetermined),
    )


# --------------------------------------------------------------------------- questions
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
    open_levels = [d for d in decisions if d.decision.is_candidate or d.decision is Decision.INDETERMINATE]
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
    return tuple(
        wording.question(inp, wanted[inp][0], wanted[inp][1]) for inp in sorted(wanted, key=lambda n: order[n])
    )
