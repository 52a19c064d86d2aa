"""Eligibility rules as data: the model of ``configs/eligibility.yaml`` and its strict validation.

A rule is ``id``, ``kind`` (indication / absolute / relative / plan), ``scope`` (level / patient),
plain-language ``text``, ``source`` (seed file + section + a short quote; optionally a ``policy`` note
for a number the sources do not give), ``inputs`` (the inputs it reads, checked against its condition),
``when`` (the condition) and ``when_missing``. Each cited seed file is described once under ``references:``
(short label, authors, title, where published, year, as far as the seed's own text gives them).
Conditions are built from a small set of operators:

- ``{input: NAME, op: ">=" | ">" | "<" | "<=" | "==", value: NUMBER}`` (numeric inputs; the threshold must
  lie in the input's range, e.g. ``(0, 100]`` for a height loss %)
- ``{input: NAME, is: true | false}`` (boolean inputs)
- ``{input: NAME, in: [A, B, ...]}`` (choice and level inputs, e.g. ``imaging.level in [T11, T12, L1]``)
- ``{all: [...]}``, ``{any: [...]}``, ``{not: {...}}`` (three-valued Kleene logic)
- ``{first_known: [...]}``: the first operand whose value is known (e.g. the radiologist's reading,
  else our measurement)
- ``{ref: NAME}``: a named condition from ``definitions:`` (e.g. ``fracture``)

Every value is true, false or unknown. ``when_missing: unknown`` (required on every rule with a condition)
keeps an undecided rule unknown and lists the inputs that would decide it. Only relative and plan rules
may instead assume a value (``when_missing: {assume: false, because: "..."}``), and the assumption is
reported; an indication or absolute contraindication can never be assumed.

:func:`load_rules` validates everything at start-up and raises :class:`~pipeline.errors.ConfigError`
naming the file, the rule, the field and the fix. The file is not parsed with
:func:`pipeline.config.parse_section`: conditions are recursive and polymorphic, which a flat dataclass
section cannot express; the same strictness (unknown field, type, range, a cited source) is enforced here,
and each threshold's range comes from the input it is compared with (``inputs.INPUTS``).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from pipeline.config import default_config_dir, file_sha256, load_yaml
from pipeline.eligibility.inputs import INPUTS, InputType, Scope, check_choice
from pipeline.errors import ConfigError
from pipeline.levels import Level
from pipeline.model import Kind, Reference, Source

logger = logging.getLogger(__name__)

RULES_FILE = "eligibility.yaml"
FORMAT_VERSION = 1


# The ids the issue requires (the report, the tests and users rely on them); more may be added.
REQUIRED_RULES: dict[str, Kind] = {
    "indication.painful_acute_vcf": Kind.INDICATION,
    "indication.midline_pain": Kind.INDICATION,
    "absolute.asymptomatic": Kind.ABSOLUTE,
    "absolute.cord_compression": Kind.ABSOLUTE,
    "absolute.infection": Kind.ABSOLUTE,
    "absolute.coagulopathy": Kind.ABSOLUTE,
    "absolute.cement_allergy": Kind.ABSOLUTE,
    "absolute.osteoporotic_prophylaxis": Kind.ABSOLUTE,
    "relative.posterior_wall_disruption": Kind.RELATIVE,
    "relative.retropulsion_canal_gt_third": Kind.RELATIVE,
    "relative.epidural_tumor_canal_gt_third": Kind.RELATIVE,
    "relative.spinal_stenosis": Kind.RELATIVE,
    "relative.burst_fracture": Kind.RELATIVE,
    "relative.pedicle_extension": Kind.RELATIVE,
    "relative.height_loss_gt_two_thirds": Kind.RELATIVE,
    "relative.cardiopulmonary": Kind.RELATIVE,
    "relative.no_stir_signal": Kind.RELATIVE,
    "relative.radicular_or_off_midline_pain": Kind.RELATIVE,
    "relative.cannot_lie_prone": Kind.RELATIVE,
    "relative.no_surgical_backup": Kind.RELATIVE,
    "plan.max_levels_per_session": Kind.PLAN,
    "plan.prefer_kyphoplasty": Kind.PLAN,
    "plan.biopsy": Kind.PLAN,
}

# Rules the engine reads once per patient (the plan), so they must be patient-scope.
PATIENT_SCOPE_RULES: frozenset[str] = frozenset({"plan.max_levels_per_session", "plan.biopsy"})

# Plan rules the engine reads parameters from: id -> {parameter: kind}.
PLAN_PARAMETERS: dict[str, dict[str, str]] = {
    "plan.max_levels_per_session": {"max_levels": "int 1..10", "priority": "list of inputs"},
}

COMPARE_OPS: tuple[str, ...] = (">=", ">", "<", "<=", "==")
_ID_RE = re.compile(r"^(indication|absolute|relative|plan)\.[a-z0-9_]+$")
_DEF_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_SEED_RE = re.compile(r"^\d{3}_[0-9a-f]{16}\.txt$")


# --------------------------------------------------------------------------- conditions
@dataclass(frozen=True)
class Compare:
    input: str
    op: str
    value: float


@dataclass(frozen=True)
class Is:
    input: str
    value: bool


@dataclass(frozen=True)
class InSet:
    input: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class AllOf:
    items: tuple[Condition, ...]


@dataclass(frozen=True)
class AnyOf:
    items: tuple[Condition, ...]


@dataclass(frozen=True)
class Not:
    item: Condition


@dataclass(frozen=True)
class FirstKnown:
    items: tuple[Condition, ...]


@dataclass(frozen=True)
class Ref:
    name: str


Condition = Union[Compare, Is, InSet, AllOf, AnyOf, Not, FirstKnown, Ref]  # noqa: UP007 (forward refs)


# --------------------------------------------------------------------------- rules
@dataclass(frozen=True)
class WhenMissing:
    """``assume=None``: an undecided rule stays unknown. Otherwise the assumed value and why."""

    assume: bool | None = None
    because: str = ""


@dataclass(frozen=True)
class Definition:
    id: str
    text: str
    when: Condition
    inputs: tuple[str, ...]
    sources: tuple[Source, ...] = ()


@dataclass(frozen=True)
class Rule:
    id: str
    kind: Kind
    scope: Scope
    text: str
    sources: tuple[Source, ...]
    inputs: tuple[str, ...]
    when: Condition | None
    when_missing: WhenMissing = WhenMissing()
    parameters: Mapping[str, Any] = field(default_factory=dict)
    note: str = ""


@dataclass(frozen=True)
class Settings:
    excluded_levels: tuple[Level, ...] = ()
    excluded_reason: str = ""


@dataclass(frozen=True)
class RuleSet:
    """A validated rule file. ``sha256`` and ``version`` go into every report."""

    version: int
    rules: tuple[Rule, ...]
    definitions: Mapping[str, Definition]
    settings: Settings
    path: Path | None = None
    sha256: str = ""
    references: Mapping[str, Reference] = field(default_factory=dict)  # by seed file name

    def rule(self, rule_id: str) -> Rule:
        for r in self.rules:
            if r.id == rule_id:
                return r
        raise KeyError(rule_id)

    def of_kind(self, kind: Kind) -> tuple[Rule, ...]:
        return tuple(r for r in self.rules if r.kind is kind)

    def cited_references(self) -> tuple[Reference, ...]:
        """The references of the seed files the rules and definitions cite, in seed order."""
        cited = {s.seed for r in self.rules for s in r.sources if s.seed}
        cited |= {s.seed for d in self.definitions.values() for s in d.sources if s.seed}
        return tuple(self.references[seed] for seed in sorted(cited) if seed in self.references)


# --------------------------------------------------------------------------- loading
def load_rules(path: Path | None = None) -> RuleSet:
    """Read and validate the eligibility rules.

    Parameters
    ----------
    path : Path, optional
        Default: ``eligibility.yaml`` in :func:`pipeline.config.default_config_dir`.

    Raises
    ------
    ConfigError
        Unknown field, wrong type, unknown operator or input, threshold out of the input's range,
        duplicate or missing required id, inconsistent ``inputs`` list. The message names the file,
        the rule and the field.
    """
    path = Path(path) if path is not None else default_config_dir() / RULES_FILE
    data = load_yaml(path)
    ruleset = parse_rules(data, where=_display(path))
    ruleset = dataclasses.replace(ruleset, path=path, sha256=file_sha256(path))
    logger.debug("eligibility rules loaded: %d rules from %s", len(ruleset.rules), path)
    return ruleset


def parse_rules(data: Mapping[str, Any], where: str = "eligibility rules") -> RuleSet:
    """Validate an already-parsed rule mapping (see :func:`load_rules`)."""
    _keys(
        data,
        {"version", "references", "settings", "definitions", "rules"},
        where,
        required={"version", "references", "rules"},
    )
    version = data["version"]
    if version != FORMAT_VERSION:
        raise ConfigError(f"{where}: version must be {FORMAT_VERSION}, got {version!r}")
    settings = _settings(data.get("settings") or {}, f"{where}: settings")

    definitions: dict[str, Definition] = {}
    raw_defs = data.get("definitions") or []
    if not isinstance(raw_defs, list):
        raise ConfigError(f"{where}: definitions must be a list of {{id, text, when, source}}")
    for i, raw in enumerate(raw_defs):
        d = _definition(raw, definitions, f"{where}: definitions[{i}]")
        if d.id in definitions:
            raise ConfigError(f"{where}: definition {d.id!r} is defined twice; give each a unique id")
        definitions[d.id] = d

    raw_rules = data["rules"]
    if not isinstance(raw_rules, list) or not raw_rules:
        raise ConfigError(f"{where}: rules must be a non-empty list")
    rules: list[Rule] = []
    seen: set[str] = set()
    for i, raw in enumerate(raw_rules):
        rule = _rule(raw, definitions, where, i)
        if rule.id in seen:
            raise ConfigError(f"{where}: rule {rule.id!r}: duplicate id; each rule id must be unique")
        seen.add(rule.id)
        rules.append(rule)
    for rid, kind in REQUIRED_RULES.items():
        if rid not in seen:
            raise ConfigError(
                f"{where}: required rule {rid!r} ({kind.value}) is missing; restore it from the "
                "shipped configs/eligibility.yaml"
            )
    references = _references(data["references"], f"{where}: references")
    cited = [(f"rule {r.id!r}", s.seed) for r in rules for s in r.sources if s.seed]
    cited += [(f"definition {d.id!r}", s.seed) for d in definitions.values() for s in d.sources if s.seed]
    for owner, seed in cited:
        if seed not in references:
            raise ConfigError(
                f"{where}: {owner}: cites {seed}, which has no entry in 'references' "
                "(add its seed, short, published_in and evidence there)"
            )
    return RuleSet(version, tuple(rules), definitions, settings, references=references)


def _references(raw: Any, where: str) -> dict[str, Reference]:
    """The ``references:`` list, one entry per seed file (the single place a source's citation is written)."""
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{where}: must be a non-empty list of {{seed, short, published_in, evidence, ...}}")
    out: dict[str, Reference] = {}
    for i, item in enumerate(raw):
        w = f"{where}[{i}]"
        _keys(
            item,
            {"seed", "short", "authors", "title", "published_in", "year", "not_stated", "evidence"},
            w,
            required={"seed", "short", "published_in", "evidence"},
        )
        seed = _text(item["seed"], f"{w}: seed")
        if not _SEED_RE.match(seed):
            raise ConfigError(f"{w}: seed must name a file of shared/seeds like '001_e7f96f9d24ff4d88.txt'")
        if seed in out:
            raise ConfigError(f"{w}: {seed} is described twice; keep one entry per seed file")
        year = item.get("year")
        if year is not None and (isinstance(year, bool) or not isinstance(year, int) or not 1900 <= year <= 2100):
            raise ConfigError(f"{w}: year must be a four-digit year, got {year!r}")
        evidence = item["evidence"]
        if not isinstance(evidence, list) or not evidence:
            raise ConfigError(f"{w}: evidence must list the seed's own words the details are taken from")
        authors = _text(item["authors"], f"{w}: authors") if "authors" in item else ""
        title = _text(item["title"], f"{w}: title") if "title" in item else ""
        not_stated = _text(item["not_stated"], f"{w}: not_stated") if "not_stated" in item else ""
        if not (authors and title) and not not_stated:
            raise ConfigError(f"{w}: no {'authors' if not authors else 'title'}: say so in 'not_stated'")
        out[seed] = Reference(
            seed=seed,
            short=_text(item["short"], f"{w}: short"),
            published_in=_text(item["published_in"], f"{w}: published_in"),
            authors=authors,
            title=title,
            year=year,
            not_stated=not_stated,
            evidence=tuple(_text(e, f"{w}: evidence") for e in evidence),
        )
    return out


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _keys(raw: Any, allowed: set[str], where: str, required: frozenset[str] | set[str] = frozenset()) -> None:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: must be a mapping, got {type(raw).__name__}")
    unknown = sorted(set(map(str, raw)) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown field {unknown[0]!r}; allowed fields: {', '.join(sorted(allowed))}")
    missing = sorted(required - set(raw))
    if missing:
        raise ConfigError(f"{where}: missing field {missing[0]!r}")


def _text(raw: Any, where: str) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise ConfigError(f"{where}: must be a non-empty string, got {raw!r}")
    return " ".join(raw.split())


def _settings(raw: Any, where: str) -> Settings:
    _keys(raw, {"excluded_levels", "excluded_reason"}, where)
    levels = raw.get("excluded_levels", [])
    if not isinstance(levels, list):
        raise ConfigError(f"{where}: excluded_levels must be a list of levels (e.g. [S1])")
    parsed = []
    for v in levels:
        try:
            parsed.append(Level.parse(str(v)))
        except ValueError as exc:
            raise ConfigError(f"{where}: excluded_levels: {exc}") from None
    reason = _text(raw["excluded_reason"], f"{where}: excluded_reason") if parsed else ""
    return Settings(tuple(parsed), reason)


def _sources(raw: Any, where: str) -> tuple[Source, ...]:
    if isinstance(raw, Mapping):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{where}: must be a list of {{seed, section, quote}} (or {{policy}}) entries")
    out = []
    for i, item in enumerate(raw):
        w = f"{where}[{i}]"
        _keys(item, {"seed", "section", "quote", "policy"}, w)
        if "policy" in item:
            if set(item) != {"policy"}:
                raise ConfigError(f"{w}: a policy entry has only 'policy' (cite seeds in separate entries)")
            out.append(Source(policy=_text(item["policy"], f"{w}: policy")))
            continue
        _keys(item, {"seed", "section", "quote"}, w, required={"seed", "section", "quote"})
        seed = _text(item["seed"], f"{w}: seed")
        if not _SEED_RE.match(seed):
            raise ConfigError(
                f"{w}: seed must name a file of shared/seeds like '001_e7f96f9d24ff4d88.txt', got {seed!r}"
            )
        out.append(Source(seed, _text(item["section"], f"{w}: section"), _text(item["quote"], f"{w}: quote")))
    if not any(s.seed for s in out):
        raise ConfigError(f"{where}: cite at least one seed file (a policy note alone is not a source)")
    return tuple(out)


def _definition(raw: Any, defs: Mapping[str, Definition], where: str) -> Definition:
    _keys(raw, {"id", "text", "when", "source"}, where, required={"id", "text", "when"})
    did = raw["id"]
    if not isinstance(did, str) or not _DEF_RE.match(did):
        raise ConfigError(f"{where}: id must be a lower_case name, got {did!r}")
    w = f"{where.rsplit(': ', 1)[0]}: definition {did!r}"
    cond = _condition(raw["when"], defs, w, "when")
    sources = _sources(raw["source"], f"{w}: source") if "source" in raw else ()
    return Definition(did, _text(raw["text"], f"{w}: text"), cond, tuple(sorted(_inputs_of(cond, defs))), sources)


def _rule(raw: Any, defs: Mapping[str, Definition], where: str, index: int) -> Rule:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: rules[{index}]: must be a mapping, got {type(raw).__name__}")
    rid = raw.get("id")
    if not isinstance(rid, str) or not _ID_RE.match(rid):
        raise ConfigError(
            f"{where}: rules[{index}]: id must look like 'relative.some_name' (kind prefix, lower_case), got {rid!r}"
        )
    w = f"{where}: rule {rid!r}"
    _keys(
        raw,
        {"id", "kind", "scope", "text", "source", "inputs", "when", "when_missing", "parameters", "note"},
        w,
        required={"id", "kind", "scope", "text", "source", "inputs"},
    )
    try:
        kind = Kind(raw["kind"])
    except ValueError:
        raise ConfigError(f"{w}: kind must be one of {', '.join(k.value for k in Kind)}, got {raw['kind']!r}") from None
    if not rid.startswith(kind.value + "."):
        raise ConfigError(f"{w}: id prefix does not match kind {kind.value!r}")
    if rid in REQUIRED_RULES and REQUIRED_RULES[rid] is not kind:
        raise ConfigError(f"{w}: must be of kind {REQUIRED_RULES[rid].value!r}")
    try:
        scope = Scope(raw["scope"])
    except ValueError:
        raise ConfigError(f"{w}: scope must be 'level' or 'patient', got {raw['scope']!r}") from None
    if rid in PATIENT_SCOPE_RULES and scope is not Scope.PATIENT:
        raise ConfigError(f"{w}: scope must be 'patient' (the engine reads this rule once per patient)")
    text = _text(raw["text"], f"{w}: text")
    note = _text(raw["note"], f"{w}: note") if "note" in raw else ""
    sources = _sources(raw["source"], f"{w}: source")

    cond: Condition | None = None
    if "when" in raw:
        cond = _condition(raw["when"], defs, w, "when")
    elif not (kind is Kind.PLAN and rid in PLAN_PARAMETERS):
        raise ConfigError(f"{w}: missing field 'when' (the condition)")

    parameters = _parameters(rid, raw.get("parameters"), w)
    read = set(_inputs_of(cond, defs)) if cond is not None else set()
    read |= {p for p in parameters.get("priority", ())}
    declared = raw["inputs"]
    if not isinstance(declared, list) or not all(isinstance(x, str) for x in declared):
        raise ConfigError(f"{w}: inputs must be a list of input names")
    for name in declared:
        if name not in INPUTS:
            raise ConfigError(f"{w}: inputs: unknown input {name!r}; known inputs: {', '.join(sorted(INPUTS))}")
    if set(declared) != read:
        extra, lacking = sorted(set(declared) - read), sorted(read - set(declared))
        fix = "; ".join(
            ([f"listed but not read: {', '.join(extra)}"] if extra else [])
            + ([f"read but not listed: {', '.join(lacking)}"] if lacking else [])
        )
        raise ConfigError(f"{w}: inputs must list exactly the inputs the rule reads ({fix})")
    if scope is Scope.PATIENT:  # (priority inputs are read per level by the session planner)
        per_level = sorted(n for n in _inputs_of(cond, defs) if INPUTS[n].scope is Scope.LEVEL)
        if per_level:
            raise ConfigError(
                f"{w}: scope is 'patient' but it reads per-level input(s) {', '.join(per_level)}; use scope: level"
            )

    if cond is not None and "when_missing" not in raw:
        raise ConfigError(
            f"{w}: missing field 'when_missing' (say how a missing input is treated: 'unknown', or "
            "for relative/plan rules {assume: true|false, because: '...'})"
        )
    when_missing = _when_missing(raw.get("when_missing", "unknown"), kind, f"{w}: when_missing")
    return Rule(rid, kind, scope, text, sources, tuple(declared), cond, when_missing, parameters, note)


def _when_missing(raw: Any, kind: Kind, where: str) -> WhenMissing:
    if raw == "unknown":
        return WhenMissing()
    if isinstance(raw, Mapping):
        _keys(raw, {"assume", "because"}, where, required={"assume", "because"})
        if not isinstance(raw["assume"], bool):
            raise ConfigError(f"{where}: assume must be true or false, got {raw['assume']!r}")
        if kind in (Kind.INDICATION, Kind.ABSOLUTE):
            raise ConfigError(
                f"{where}: an {kind.value} rule cannot assume a value for a missing input "
                "(it would hide a contraindication or invent an indication); use 'unknown'"
            )
        return WhenMissing(raw["assume"], _text(raw["because"], f"{where}: because"))
    raise ConfigError(f"{where}: must be 'unknown' or {{assume: true|false, because: '...'}}, got {raw!r}")


def _parameters(rid: str, raw: Any, where: str) -> dict[str, Any]:
    allowed = PLAN_PARAMETERS.get(rid)
    if raw is None:
        if allowed:
            raise ConfigError(
                f"{where}: missing field 'parameters' ({', '.join(f'{k}: {v}' for k, v in allowed.items())})"
            )
        return {}
    if not allowed:
        raise ConfigError(f"{where}: this rule takes no parameters")
    _keys(raw, set(allowed), where + ": parameters", required=set(allowed))
    out: dict[str, Any] = {}
    n = raw["max_levels"]
    if isinstance(n, bool) or not isinstance(n, int):
        raise ConfigError(f"{where}: parameters: max_levels must be an integer, got {n!r}")
    if not 1 <= n <= 10:
        raise ConfigError(f"{where}: parameters: max_levels must be in [1, 10], got {n}")
    out["max_levels"] = n
    prio = raw["priority"]
    if not isinstance(prio, list) or not prio:
        raise ConfigError(f"{where}: parameters: priority must be a non-empty list of input names")
    for name in prio:
        if name not in INPUTS:
            raise ConfigError(f"{where}: parameters: priority: unknown input {name!r}")
        if INPUTS[name].type not in (InputType.NUMBER, InputType.BOOL):
            raise ConfigError(f"{where}: parameters: priority: {name!r} must be a number or boolean input")
    out["priority"] = tuple(prio)
    return out


def _condition(raw: Any, defs: Mapping[str, Definition], where: str, at: str) -> Condition:
    if not isinstance(raw, Mapping) or not raw:
        raise ConfigError(f"{where}: {at}: a condition must be a mapping, got {raw!r}")
    keys = set(raw)
    combinators = {"all", "any", "first_known"}
    if len(keys) == 1 and keys <= combinators:
        (op,) = keys
        items = raw[op]
        if not isinstance(items, list) or not items:
            raise ConfigError(f"{where}: {at}.{op}: must be a non-empty list of conditions")
        parsed = tuple(_condition(c, defs, where, f"{at}.{op}[{i}]") for i, c in enumerate(items))
        if op == "all":
            return AllOf(parsed)
        return AnyOf(parsed) if op == "any" else FirstKnown(parsed)
    if keys == {"not"}:
        return Not(_condition(raw["not"], defs, where, f"{at}.not"))
    if keys == {"ref"}:
        name = raw["ref"]
        if name not in defs:
            known = ", ".join(sorted(defs)) or "none"
            raise ConfigError(f"{where}: {at}.ref: unknown definition {name!r} (defined above it: {known})")
        return Ref(name)
    if "input" not in keys:
        raise ConfigError(
            f"{where}: {at}: unknown operator {', '.join(sorted(map(str, keys)))!r}; use one of "
            "all, any, not, first_known, ref, or input with op/value, is, in"
        )
    name = raw["input"]
    if name not in INPUTS:
        raise ConfigError(f"{where}: {at}.input: unknown input {name!r}; known inputs: {', '.join(sorted(INPUTS))}")
    spec = INPUTS[name]
    rest = keys - {"input"}
    if rest == {"op", "value"}:
        op = raw["op"]
        if op not in COMPARE_OPS:
            raise ConfigError(f"{where}: {at}.op: unknown operator {op!r}; use one of {', '.join(COMPARE_OPS)}")
        if spec.type is not InputType.NUMBER:
            raise ConfigError(f"{where}: {at}: {name} is a {spec.type.value}; compare (op/value) needs a number input")
        value = raw["value"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"{where}: {at}.value: threshold must be a number, got {value!r}")
        if spec.bounds is not None and not spec.bounds.contains(float(value)):
            raise ConfigError(
                f"{where}: threshold must be in {spec.bounds}, got {value:g} (input {name}, at {at}.value)"
            )
        return Compare(name, op, float(value))
    if rest == {"is"}:
        if spec.type is not InputType.BOOL:
            raise ConfigError(f"{where}: {at}: {name} is a {spec.type.value}; 'is' needs a boolean input")
        if not isinstance(raw["is"], bool):
            raise ConfigError(f"{where}: {at}.is: must be true or false, got {raw['is']!r}")
        return Is(name, raw["is"])
    if rest == {"in"}:
        values = raw["in"]
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}: {at}.in: must be a non-empty list")
        for v in values:
            problem = check_choice(spec, v)
            if problem:
                raise ConfigError(f"{where}: {at}.in: {problem}")
        norm = tuple(Level.parse(v).value if spec.type is InputType.LEVEL else v for v in values)
        return InSet(name, norm)
    raise ConfigError(
        f"{where}: {at}: with 'input' give exactly one of: op + value, is, in "
        f"(got {', '.join(sorted(map(str, rest))) or 'nothing'})"
    )


def _inputs_of(cond: Condition | None, defs: Mapping[str, Definition]) -> set[str]:
    if cond is None:
        return set()
    if isinstance(cond, (Compare, Is, InSet)):
        return {cond.input}
    if isinstance(cond, (AllOf, AnyOf, FirstKnown)):
        return set().union(*(_inputs_of(c, defs) for c in cond.items))
    if isinstance(cond, Not):
        return _inputs_of(cond.item, defs)
    return set(defs[cond.name].inputs)
