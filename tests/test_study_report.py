"""The report of one study (pipeline.report.study_report): the typed view every writer reads, and report.json."""

from dataclasses import replace
from pathlib import Path

import numpy as np

from pipeline.levels import Level
from pipeline.model import (
    EdemaPattern,
    GradeState,
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
from pipeline.report.json_report import validate_report
from pipeline.report.study_report import OutputFiles, StageTimer, StudyReport
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
    report = StudyReport(study, _choice(study)).to_json()
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
    report = StudyReport(
        study=study,
        choice=_choice(study),
        segmentation=_segmentation(),
        morphometry=morph,
        stir=stir,
        eligibility=eligibility_of(morph, stir, None),
        outputs=OutputFiles(labels="labels.nii.gz"),
        warnings=("w", "w"),
        timings_ms={"total": 12.34},
    ).to_json()
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


def test_split_series_parts_keep_their_own_decisions():

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
    report = StudyReport(study, choice).to_json()
    validate_report(report)
    assert [(s["stack"], s["used_as"]) for s in report["series"]] == [("SAGITTAL", "anatomy"), ("AXIAL", None)]


def _full_report(**changes) -> StudyReport:
    study = _study()
    morph = (
        VertebraMorphometry(
            1,
            Level.L1,
            True,
            "six-point",
            Heights(18.04999, 22.0, 27.0),
            27.456,
            "neighbours",
            (2,),
            34.5678,
            2,
            Morphology.WEDGE,
            20.14,
            {"ha_hp": 0.66851},
            {"anterior_superior": (1.004, 2.0, 3.0)},
        ),
        VertebraMorphometry(2, Level.L2, False, "cut by the field of view"),
    )
    stir = StirAssessment(
        "measured", "", "1.2.3.2", None, "same frame of reference", 0.0, 100.0, 800.0, 180.0,
        (StirFinding(1, 2.12345, 0.45678, True, EdemaPattern.BAND, 0.91234, "band", t1_agrees=True),),
    )  # fmt: skip
    fields = dict(
        study=study,
        choice=_choice(study),
        segmentation=_segmentation(),
        morphometry=morph,
        stir=stir,
        eligibility=eligibility_of(morph, stir, None),
    )
    return StudyReport(**{**fields, **changes})


def test_vertebrae_show_the_numbers_as_report_json_has_them():
    report = _full_report()
    v1, v2 = report.vertebrae
    m = v1.morphometry
    assert m is not None and m.heights is not None
    assert (m.heights.anterior_mm, m.reference_height_mm, m.height_loss_pct) == (18.05, 27.46, 34.6)
    assert (m.wedge_angle_deg, m.ratios, m.landmarks_lps) == (
        20.1,
        {"ha_hp": 0.669},
        {"anterior_superior": (1.0, 2.0, 3.0)},
    )
    assert v1.stir is not None and (v1.stir.ratio, v1.stir.edema_fraction, v1.stir.confidence) == (2.123, 0.457, 0.912)
    entry = report.to_json()["vertebrae"][0]
    assert entry["heights_mm"]["anterior"] == m.heights.anterior_mm and entry["height_loss_pct"] == m.height_loss_pct
    assert entry["stir"]["ratio"] == v1.stir.ratio and entry["stir"]["t1_agrees"] is True
    # the measurements the stages made are kept as they were
    assert report.morphometry is not None and report.morphometry[0].height_loss_pct == 34.5678


def test_a_body_without_a_stir_finding_is_shown_not_assessable_with_the_reason():
    report = _full_report()
    v2 = report.vertebrae[1]
    assert v2.stir_placeholder and v2.stir is not None
    assert (v2.stir.edema, v2.stir.pattern, v2.stir.reason) == (None, EdemaPattern.NOT_ASSESSABLE, "not measured")
    assert report.to_json()["vertebrae"][1]["stir"] == {
        "ratio": None, "edema_fraction": None, "edema": None, "pattern": "not_assessable", "confidence": 0.0,
        "reason": "not measured",
    }  # fmt: skip
    failed = replace(report.stir, status="failed", reason="registration failed", findings=())
    assert _full_report(stir=failed).vertebrae[0].stir.reason == "registration failed"
    assert _full_report(stir=None).vertebrae[0].stir is None  # no STIR stage: nothing to show


def test_vertebrae_carry_name_grade_and_decision():
    report = _full_report()
    v1, v2 = report.vertebrae
    assert (v1.name, v1.label, v1.level) == ("L1", 1, Level.L1)
    assert v1.grade.state is GradeState.DEFINITE and v1.grade.grade == 2
    assert v2.grade.state is GradeState.NOT_ASSESSABLE and v2.grade.note == "cut by the field of view"
    assert report.eligibility is not None
    assert [v.decision for v in report.vertebrae] == [d.decision for d in report.eligibility.levels]
    unnamed = replace(_segmentation().vertebrae[0], level=None)
    seg = replace(_segmentation(), vertebrae=(unnamed,))
    bare = StudyReport(_study(), segmentation=seg).vertebrae[0]
    assert bare.name == "body 1 (level unknown)" and bare.decision is None and bare.morphometry is None
    assert bare.grade.state is GradeState.NOT_ASSESSABLE and bare.grade.grade is None


def test_used_series_and_series_decisions():
    report = _full_report()
    assert report.used_series("anatomy") == report.study.series[0]
    assert report.used_series("stir") == report.study.series[1] and report.used_series("t1") is None
    assert report.series_decision(report.study.series[1]).reason == "true STIR"
    assert StudyReport(_study()).series_decision(_study().series[0]) is None


def test_warnings_are_said_once_in_order_and_outputs_in_their_order():
    report = StudyReport(_study(), warnings=("b", "a", "b"), outputs=OutputFiles("labels.nii.gz", html="report.html"))
    assert report.warnings == ("b", "a")
    data = report.to_json()
    assert data["warnings"] == ["b", "a"] and data["outputs"] == {"labels": "labels.nii.gz", "html": "report.html"}
    files = OutputFiles("l", ("o/a.png",), "seg.dcm", "sr.dcm", ("sc/1.dcm",), "report.html")
    assert list(files.to_json()) == ["labels", "overlays", "seg", "sr", "sc", "html"]


def test_stage_timer_adds_up_stages_and_counts_the_total_from_its_start():
    timer = StageTimer()
    for _ in range(2):
        with timer.stage("a"):
            sum(range(10000))
    with timer.stage("b"):
        pass
    ms = timer.timings_ms()
    assert list(ms) == ["a", "b", "total"]
    assert ms["total"] >= ms["a"] + ms["b"] - 0.2 and ms["a"] > 0
