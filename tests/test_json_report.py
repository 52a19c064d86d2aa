"""report.json assembly and its JSON Schema."""

import json
from enum import Enum
from pathlib import Path

import numpy as np
import pytest

from pipeline.errors import PipelineError
from pipeline.levels import Level
from pipeline.model import (
    EdemaPattern,
    Heights,
    Morphology,
    Orientation,
    PosteriorWall,
    Role,
    SegmentationResult,
    SeriesChoice,
    SeriesDecision,
    SeriesRecord,
    StirAssessment,
    StirFinding,
    StudyRecord,
    VertebraMorphometry,
    VertebraSeg,
)
from pipeline.report.json_report import build_report, jsonable, validate_report
from pipeline.volume import Volume
from tests.report_fixtures import eligibility_of


def _series(uid: str, role: Role) -> SeriesRecord:
    return SeriesRecord(
        study_uid="1.2.3",
        series_uid=uid,
        frame_of_reference_uid="1.2.3.9",
        modality="MR",
        description=f"sag {role.value}",
        series_number=1,
        orientation=Orientation.SAGITTAL,
        role=role,
        role_rule="name",
        role_confidence=0.9,
        substitute=None,
        n_images=15,
        rows=32,
        cols=32,
        pixel_spacing_mm=(0.8, 0.8),
        slice_thickness_mm=4.0,
        transfer_syntaxes=("1.2.840.10008.1.2.1",),
        files=(Path("a.dcm"),),
    )


def _study() -> StudyRecord:
    return StudyRecord(
        study_uid="1.2.3",
        patient_key="abc123",
        description="MR L-SPINE",
        study_date="20260101",
        series=(_series("1.2.3.1", Role.T2), _series("1.2.3.2", Role.STIR)),
        root=Path("/x"),
    )


def _choice(study: StudyRecord) -> SeriesChoice:
    return SeriesChoice(
        anatomy=study.series[0],
        stir=study.series[1],
        t1=None,
        decisions=(
            SeriesDecision("1.2.3.1", True, "anatomy", "only sagittal T2"),
            SeriesDecision("1.2.3.2", True, "stir", "true STIR"),
        ),
    )


def _segmentation() -> SegmentationResult:
    labels = Volume(np.zeros((2, 3, 4), np.uint16), (4.0, 1.0, 1.0), (0.0, 0.0, 0.0), np.eye(3))
    verts = (
        VertebraSeg(1, Level.L1, 0.9, (1.0, 2.0, 3.0), 1, (0, 0, 0, 2, 2, 2), 0.8, 1000.0),
        VertebraSeg(2, Level.L2, 0.9, (1.0, 2.0, -27.0), 1, (0, 1, 0, 2, 3, 2), 0.8, 1000.0),
    )
    return SegmentationResult(labels, verts, "1.2.3.1", True, "sacrum anchor")


def test_absent_stages_are_absent_and_report_validates():
    study = _study()
    report = build_report(study=study, choice=_choice(study))
    validate_report(report)
    assert "vertebrae" not in report and "eligibility" not in report and "stir" not in report
    assert [s["used_as"] for s in report["series"]] == ["anatomy", "stir"]


def test_full_report_validates_and_keeps_contract_names():
    study = _study()
    morph = (
        VertebraMorphometry(
            1,
            Level.L1,
            True,
            "six-point",
            Heights(18.0, 22.0, 27.0),
            27.5,
            "neighbours",
            (2,),
            34.5,
            2,
            Morphology.WEDGE,
            20.1,
            {"ha_hp": 0.67},
            {"anterior_superior": (1.0, 2.0, 3.0)},
            PosteriorWall(True, "CSF on T2", 1.2, 8.0, 15.0),
        ),
        VertebraMorphometry(2, Level.L2, False, "cut by the field of view"),
    )
    stir = StirAssessment(
        "measured",
        "",
        "1.2.3.2",
        None,
        "same frame of reference",
        0.0,
        100.0,
        800.0,
        180.0,
        (StirFinding(1, 2.1, 0.45, True, EdemaPattern.BAND, 0.9, "band under superior endplate"),),
    )
    report = build_report(
        study=study,
        choice=_choice(study),
        segmentation=_segmentation(),
        morphometry=morph,
        stir=stir,
        eligibility=eligibility_of(morph, stir, None),
        outputs={"labels": "labels.nii.gz"},
        warnings=["w", "w"],
        timings_ms={"total": 12.34},
    )
    validate_report(report)
    v1, v2 = report["vertebrae"]
    assert v1["heights_mm"] == {"anterior": 18.0, "middle": 22.0, "posterior": 27.0}
    assert v1["genant_grade"] == 2 and v1["morphology"] == "wedge"
    assert v1["stir"]["edema"] is True and v1["stir"]["pattern"] == "band"
    assert v2["heights_mm"] is None and v2["genant_grade"] is None and v2["morphology"] == "not_assessable"
    assert v2["stir"]["edema"] is None  # no finding -> explicitly unknown, not False
    assert report["segmentation"]["label_map_levels"] == {"1": "L1", "2": "L2"}
    assert report["warnings"] == ["w"]
    assert report["eligibility"]["levels"][0]["level"] == "L1"


def test_schema_checks_the_eligibility_section_against_the_rules_result_schema():
    study = _study()
    report = build_report(
        study=study, choice=_choice(study), segmentation=_segmentation(), eligibility={"summary": "x"}
    )
    with pytest.raises(PipelineError, match="eligibility"):
        validate_report(report)


def test_schema_rejects_a_broken_report():
    study = _study()
    report = build_report(study=study, choice=_choice(study), segmentation=_segmentation())
    report["vertebrae"][0]["centroid_lps_mm"] = [1.0, 2.0]
    report["outputs"]["html"] = "/abs/report.html"
    with pytest.raises(PipelineError, match="centroid_lps_mm"):
        validate_report(report)


def test_jsonable_handles_numpy_enums_paths_and_nan():
    class E(Enum):
        A = "a"

    out = jsonable({"a": np.float32(1.5), "b": E.A, "c": Path("x/y"), "d": float("nan"), "e": (np.int64(2),)})
    assert out == {"a": 1.5, "b": "a", "c": "x/y", "d": None, "e": [2]}


def test_split_series_parts_keep_their_own_decisions():
    from dataclasses import replace

    sag = replace(_series("1.2.3.7", Role.OTHER), stack="SAGITTAL")
    ax = replace(_series("1.2.3.7", Role.OTHER), stack="AXIAL", orientation=Orientation.AXIAL)
    study = StudyRecord(
        study_uid="1.2.3", patient_key="k", description="", study_date=None, series=(sag, ax), root=Path("/x")
    )
    choice = SeriesChoice(
        anatomy=sag,
        stir=None,
        t1=None,
        decisions=(
            SeriesDecision("1.2.3.7", True, "anatomy", "only sagittal series", stack="SAGITTAL"),
            SeriesDecision("1.2.3.7", False, None, "not sagittal", stack="AXIAL"),
        ),
    )
    report = build_report(study=study, choice=choice)
    validate_report(report)
    assert [(s["stack"], s["used_as"]) for s in report["series"]] == [("SAGITTAL", "anatomy"), ("AXIAL", None)]


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
