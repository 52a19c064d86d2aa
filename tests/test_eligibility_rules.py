"""Validation of configs/eligibility.yaml: the shipped file is sound, and every kind of mistake is refused
with a message naming the file, the rule and the field."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.eligibility.inputs import INPUTS
from pipeline.eligibility.rules import REQUIRED_RULES, load_rules, parse_rules
from pipeline.errors import ConfigError

WHERE = "configs/eligibility.yaml"


@pytest.fixture(scope="module")
def shipped(repo_root: Path) -> dict[str, Any]:
    return yaml.safe_load((repo_root / "configs" / "eligibility.yaml").read_text())


def _rule(data: dict[str, Any], rule_id: str) -> dict[str, Any]:
    return next(r for r in data["rules"] if r["id"] == rule_id)


def test_shipped_rules_load_and_cover_the_required_ids(repo_root):
    rules = load_rules(repo_root / "configs" / "eligibility.yaml")
    ids = {r.id for r in rules.rules}
    assert set(REQUIRED_RULES) <= ids
    for r in rules.rules:
        assert r.kind is REQUIRED_RULES.get(r.id, r.kind)
        assert any(s.seed for s in r.sources), r.id
        assert r.text and r.inputs or r.parameters


def test_default_path_is_the_config_dir():
    assert load_rules().path.name == "eligibility.yaml"


def _seeds_dir(repo_root: Path) -> Path | None:
    for parent in (repo_root, *repo_root.parents):
        cand = parent / "shared" / "seeds"
        if cand.is_dir():
            return cand
    return None


def _norm(text: str) -> str:
    text = (
        text.replace("\u2265", ">=")
        .replace("\u201c", '"')
        .replace("\u201d", '"')
        .replace("\u2019", "'")
        .replace("\u2013", "-")
    )
    text = re.sub(r"-\s*\n\s*", "", text)  # hyphenation at line ends
    return re.sub(r"\s+", " ", text).lower()


def test_every_quote_is_in_its_seed_file(repo_root):
    """Each rule's quote appears (whitespace-normalised) in the seed file it cites."""
    seeds = _seeds_dir(repo_root)
    if seeds is None:
        pytest.skip("shared/seeds not beside the checkout")
    rules = load_rules(repo_root / "configs" / "eligibility.yaml")
    cited = [(r.id, s) for r in rules.rules for s in r.sources if s.seed]
    cited += [(d.id, s) for d in rules.definitions.values() for s in d.sources if s.seed]
    missing = []
    for owner, src in cited:
        text = _norm((seeds / src.seed).read_text(encoding="utf-8", errors="replace"))
        if _norm(src.quote).strip('"') not in text:
            missing.append(f"{owner}: {src.seed}: {src.quote!r}")
    assert not missing, "quotes not found in their seed file:\n" + "\n".join(missing)


def test_every_cited_seed_has_its_full_citation_once(repo_root):
    rules = load_rules(repo_root / "configs" / "eligibility.yaml")
    cited = {s.seed for r in rules.rules for s in r.sources if s.seed}
    assert {ref.seed for ref in rules.cited_references()} == cited
    by_seed = rules.references
    assert by_seed["004_1fc2d51c10922307.txt"].citation == (
        "Parmar VK, Resnick DK. Kyphoplasty and Vertebroplasty. In: Pain, pp 895-898. Springer Nature Switzerland AG, "
        "2019 (the book's editors are not in the seed document)."
    )
    assert by_seed["001_e7f96f9d24ff4d88.txt"].short == "JNCCN 2010"
    assert "2010;8:1095-1102" in by_seed["001_e7f96f9d24ff4d88.txt"].citation


def test_every_reference_detail_is_in_its_seed_file(repo_root):
    """No bibliographic detail is made up: evidence, title, authors' surnames and year all appear in the seed."""
    seeds = _seeds_dir(repo_root)
    if seeds is None:
        pytest.skip("shared/seeds not beside the checkout")
    missing = []
    for ref in load_rules(repo_root / "configs" / "eligibility.yaml").references.values():
        text = _norm((seeds / ref.seed).read_text(encoding="utf-8", errors="replace"))
        surnames = [a.strip().split(" ")[0] for a in ref.authors.split(",") if a.strip()]
        for detail in (*ref.evidence, ref.title, *surnames, str(ref.year or "")):
            if _norm(detail) not in text:
                missing.append(f"{ref.seed}: {detail!r}")
    assert not missing, "reference details not found in their seed file:\n" + "\n".join(missing)


def test_threshold_out_of_range_message(shipped):
    data = copy.deepcopy(shipped)
    _rule(data, "relative.height_loss_gt_two_thirds")["when"]["value"] = 150
    with pytest.raises(
        ConfigError,
        match=re.escape(f"{WHERE}: rule 'relative.height_loss_gt_two_thirds': threshold must be in (0, 100], got 150"),
    ):
        parse_rules(data, where=WHERE)


def _mutations() -> list[tuple[str, Any, str]]:
    """(description, mutate(data), expected message regex)."""

    def set_rule(rule_id: str, key: str, value: Any):
        def f(d: dict[str, Any]) -> None:
            _rule(d, rule_id)[key] = value

        return f

    def set_when(rule_id: str, key: str, value: Any):
        def f(d: dict[str, Any]) -> None:
            _rule(d, rule_id)["when"][key] = value

        return f

    def drop_rule(rule_id: str):
        def f(d: dict[str, Any]) -> None:
            d["rules"] = [r for r in d["rules"] if r["id"] != rule_id]

        return f

    def dup_rule(rule_id: str):
        def f(d: dict[str, Any]) -> None:
            d["rules"].append(copy.deepcopy(_rule(d, rule_id)))

        return f

    def replace_when(rule_id: str, when: Any, inputs: list[str] | None = None):
        def f(d: dict[str, Any]) -> None:
            _rule(d, rule_id)["when"] = when
            if inputs is not None:
                _rule(d, rule_id)["inputs"] = inputs

        return f

    def drop_key(rule_id: str, key: str):
        def f(d: dict[str, Any]) -> None:
            del _rule(d, rule_id)[key]

        return f

    def top(key: str, value: Any):
        def f(d: dict[str, Any]) -> None:
            d[key] = value

        return f

    def params(key: str, value: Any):
        def f(d: dict[str, Any]) -> None:
            _rule(d, "plan.max_levels_per_session")["parameters"][key] = value

        return f

    def source(value: Any):
        def f(d: dict[str, Any]) -> None:
            _rule(d, "relative.cardiopulmonary")["source"] = value

        return f

    hl = "relative.height_loss_gt_two_thirds"
    return [
        (
            "unknown field in a rule",
            set_rule("relative.cardiopulmonary", "threshhold", 3),
            r"rule 'relative.cardiopulmonary': unknown field 'threshhold'",
        ),
        ("unknown top-level field", top("rulez", []), r"unknown field 'rulez'"),
        (
            "wrong type: kind",
            set_rule("relative.cardiopulmonary", "kind", 3),
            r"rule 'relative.cardiopulmonary': kind must be one of indication, absolute, relative, plan, "
            r"got 3",
        ),
        (
            "wrong kind for a required id",
            set_rule("relative.cardiopulmonary", "kind", "absolute"),
            r"id prefix does not match kind 'absolute'",
        ),
        (
            "wrong type: threshold",
            set_when(hl, "value", "two thirds"),
            r"rule 'relative.height_loss_gt_two_thirds': when.value: threshold must be a number, "
            r"got 'two thirds'",
        ),
        (
            "wrong type: boolean",
            set_when("relative.cardiopulmonary", "is", "yes"),
            r"when.is: must be true or false, got 'yes'",
        ),
        (
            "wrong type: text",
            set_rule("relative.cardiopulmonary", "text", 5),
            r"text: must be a non-empty string",
        ),
        (
            "VAS threshold out of range",
            replace_when(
                "indication.painful_acute_vcf",
                {"input": "clinical.pain.vas", "op": ">=", "value": 11},
                ["clinical.pain.vas"],
            ),
            r"rule 'indication.painful_acute_vcf': threshold must be in \[0, 10\], got 11",
        ),
        ("negative threshold", set_when(hl, "value", -5), r"threshold must be in \(0, 100\], got -5"),
        (
            "duplicate id",
            dup_rule("relative.burst_fracture"),
            r"rule 'relative.burst_fracture': duplicate id",
        ),
        (
            "missing required rule",
            drop_rule("absolute.infection"),
            r"required rule 'absolute.infection' \(absolute\) is missing",
        ),
        (
            "unknown input in a condition",
            set_when(hl, "input", "imaging.height_loss"),
            r"rule 'relative.height_loss_gt_two_thirds': when.input: unknown input 'imaging.height_loss'",
        ),
        (
            "unknown input in inputs",
            set_rule(hl, "inputs", ["imaging.heightloss_pct"]),
            r"inputs: unknown input 'imaging.heightloss_pct'",
        ),
        (
            "inputs list does not match",
            set_rule(hl, "inputs", ["imaging.height_loss_pct", "imaging.genant_grade"]),
            r"inputs must list exactly the inputs the rule reads "
            r"\(listed but not read: imaging.genant_grade\)",
        ),
        ("unknown comparison operator", set_when(hl, "op", "=>"), r"when.op: unknown operator '=>'"),
        (
            "unknown combinator",
            replace_when(hl, {"xor": [{"input": "imaging.height_loss_pct", "op": ">", "value": 60}]}),
            r"when: unknown operator 'xor'",
        ),
        (
            "compare on a boolean input",
            replace_when(
                "relative.cardiopulmonary",
                {"input": "clinical.severe_cardiopulmonary_disease", "op": ">", "value": 1},
            ),
            r"clinical.severe_cardiopulmonary_disease is a bool; compare \(op/value\) needs a number input",
        ),
        (
            "in-set with an unknown level",
            replace_when("plan.prefer_kyphoplasty", {"input": "imaging.level", "in": ["T11", "X9"]}, ["imaging.level"]),
            r"when.in: unknown vertebral level 'X9'",
        ),
        (
            "in-set with an unknown choice",
            replace_when(
                "plan.biopsy",
                {"input": "clinical.aetiology.cause", "in": ["cancer"]},
                ["clinical.aetiology.cause"],
            ),
            r"'cancer' is not one of osteoporosis, myeloma",
        ),
        (
            "unknown definition",
            replace_when(hl, {"ref": "fractured"}),
            r"when.ref: unknown definition 'fractured'",
        ),
        (
            "absolute rule assuming a value",
            set_rule("absolute.infection", "when_missing", {"assume": False, "because": "rare"}),
            r"an absolute rule cannot assume a value for a missing input",
        ),
        ("bad when_missing", set_rule(hl, "when_missing", "false"), r"when_missing: must be 'unknown' or"),
        ("no when_missing", drop_key(hl, "when_missing"), r"'.*two_thirds': missing field 'when_missing'"),
        (
            "patient rule reading a level input",
            replace_when(
                "relative.cardiopulmonary",
                {"input": "imaging.stir_edema", "is": True},
                ["imaging.stir_edema"],
            ),
            r"scope is 'patient' but it reads per-level input\(s\) imaging.stir_edema",
        ),
        ("session size out of range", params("max_levels", 0), r"max_levels must be in \[1, 10\], got 0"),
        ("session size wrong type", params("max_levels", "three"), r"max_levels must be an integer"),
        (
            "priority on an unknown input",
            params("priority", ["imaging.oedema"]),
            r"priority: unknown input 'imaging.oedema'",
        ),
        ("source without seed", source([{"policy": "we like it"}]), r"cite at least one seed file"),
        (
            "source with a bad seed name",
            source([{"seed": "table1.txt", "section": "x", "quote": "y"}]),
            r"seed must name a file of shared/seeds",
        ),
        (
            "source without quote",
            source([{"seed": "001_e7f96f9d24ff4d88.txt", "section": "Table 1"}]),
            r"missing field 'quote'",
        ),
        ("format version", top("version", 2), r"version must be 1, got 2"),
        ("plan rule scope", set_rule("plan.biopsy", "scope", "level"), r"'plan.biopsy': scope must be 'patient'"),
        ("empty rules", top("rules", []), r"rules must be a non-empty list"),
        ("bad rule id", set_rule(hl, "id", "Height Loss"), r"id must look like 'relative.some_name'"),
        (
            "cited seed without a reference",
            lambda d: d.__setitem__("references", [r for r in d["references"] if not r["seed"].startswith("004")]),
            r"rule 'relative.osteoporotic_pain_outside_6w_1y': cites 004_1fc2d51c10922307.txt, which has no entry in "
            r"'references'",
        ),
        (
            "reference without authors or a note saying so",
            lambda d: d["references"][1].pop("not_stated"),
            r"references\[1\]: no authors: say so in 'not_stated'",
        ),
        ("no references section", lambda d: d.pop("references"), r"missing field 'references'"),
    ]


MUTATIONS = _mutations()


@pytest.mark.parametrize("what, mutate, message", MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_config_errors(shipped, what, mutate, message):
    data = copy.deepcopy(shipped)
    mutate(data)
    with pytest.raises(ConfigError, match=message) as info:
        parse_rules(data, where=WHERE)
    assert str(info.value).startswith(WHERE + ":")


def test_load_rules_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_rules(tmp_path / "nope.yaml")
    bad = tmp_path / "eligibility.yaml"
    bad.write_text("version: 1\nrules: [\n")
    with pytest.raises(ConfigError, match=r"invalid YAML at line"):
        load_rules(bad)


def test_threshold_is_configurable_70_pct(shipped, tmp_path):
    data = copy.deepcopy(shipped)
    _rule(data, "relative.height_loss_gt_two_thirds")["when"]["value"] = 70
    path = tmp_path / "eligibility.yaml"
    path.write_text(yaml.safe_dump(data))
    rules = load_rules(path)
    assert rules.rule("relative.height_loss_gt_two_thirds").when.value == 70.0
    assert rules.sha256 != load_rules().sha256


def test_every_registered_input_has_a_question():
    for spec in INPUTS.values():
        assert spec.label and spec.question.strip().endswith(("?", ".", ")")), spec.name
