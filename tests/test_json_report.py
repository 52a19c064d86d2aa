"""report.json: the JSON form of each stage's result, the report's precision and the JSON Schema."""

import json
from enum import Enum
from pathlib import Path

import numpy as np
import pytest

from pipeline.errors import PipelineError
from pipeline.report.json_report import jsonable, validate_report
from pipeline.report.study_report import StudyReport
from tests.test_study_report import _choice, _segmentation, _study


def test_schema_checks_the_eligibility_section_against_the_rules_result_schema():
    study = _study()
    report = StudyReport(study, _choice(study), _segmentation()).to_json()
    report["eligibility"] = {"summary": "x"}
    with pytest.raises(PipelineError, match="eligibility"):
        validate_report(report)


def test_schema_rejects_a_broken_report():
    study = _study()
    report = StudyReport(study, _choice(study), _segmentation()).to_json()
    report["vertebrae"][0]["centroid_lps_mm"] = [1.0, 2.0]
    report["outputs"]["html"] = "/abs/report.html"
    with pytest.raises(PipelineError, match="centroid_lps_mm"):
        validate_report(report)


def test_jsonable_handles_numpy_enums_paths_and_nan():
    class E(Enum):
        A = "a"

    out = jsonable({"a": np.float32(1.5), "b": E.A, "c": Path("x/y"), "d": float("nan"), "e": (np.int64(2),)})
    assert out == {"a": 1.5, "b": "a", "c": "x/y", "d": None, "e": [2]}


# --------------------------------------------------------------------------- eligibility section
def test_eligibility_section_is_json_and_carries_disclaimer_hash_catalogue_and_trace():
    from pipeline.eligibility import DISCLAIMER, evaluate
    from pipeline.report.json_report import eligibility_section
    from tests.test_eligibility import RULES, make_clinical, make_facts

    r = evaluate([make_facts()], make_clinical(), RULES)
    d = json.loads(json.dumps(eligibility_section(r)))
    assert d["disclaimer"] == DISCLAIMER and r.sentences[-1] == DISCLAIMER
    assert d["rules"]["sha256"] == RULES.sha256 and len(RULES.sha256) == 64
    assert d["levels"][0]["decision"] == "candidate"
    assert d["levels"][0]["technique"] == "kyphoplasty_preferred"
    assert [c["id"] for c in d["rule_catalogue"]] == [r.id for r in RULES.rules]
    assert all(c["sources"] and c["text"] for c in d["rule_catalogue"])
    rules_in_trace = {t["rule"] for t in d["levels"][0]["trace"]} | {t["rule"] for t in d["patient_rules"]}
    assert rules_in_trace == {r.id for r in RULES.rules}
    for t in d["levels"][0]["trace"]:
        assert t["result"] in ("true", "false", "unknown") and isinstance(t["inputs"], dict)
    assert d["references"] and all(ref["citation"].endswith(".") for ref in d["references"])


@pytest.mark.parametrize("study", ["01_normal", "02_acute_osteoporotic_wedge", "03_chronic_severe_collapse",
                                   "04_myeloma_four_acute_levels"])  # fmt: skip
@pytest.mark.parametrize("with_clinical", [True, False])
def test_eligibility_section_conforms_to_published_schema(study, with_clinical, repo_root):
    import jsonschema

    from pipeline.eligibility import evaluate, load_clinical
    from pipeline.report.json_report import eligibility_section, load_eligibility_schema
    from tests.test_eligibility import RULES, SAMPLE_EXPECTED, sample_clinical_path, sample_facts

    assert study in SAMPLE_EXPECTED
    clinical = load_clinical(sample_clinical_path(repo_root, study)) if with_clinical else None
    r = evaluate(sample_facts(study), clinical, RULES)
    jsonschema.validate(json.loads(json.dumps(eligibility_section(r))), load_eligibility_schema())
