"""One grade state in every output (issue 16 item 3): an uncertain grade is never written as a definite one."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import highdicom as hd
import pytest

from pipeline.cli.run import format_study_summary
from pipeline.model import GradeState, grade_display
from pipeline.report.dicom_seg import build_seg
from pipeline.report.dicom_sr import build_sr
from pipeline.report.html import render_html
from pipeline.report.json_report import validate_report
from pipeline.report.overlay import _morph_lines
from tests.report_fixtures import CLINICAL, eligibility_of, make_case


def test_grade_display_states():
    definite = grade_display(assessable=True, genant_grade=2)
    assert (definite.state, definite.short, definite.text, definite.fractured) == (
        GradeState.DEFINITE,
        "2",
        "Genant 2",
        True,
    )
    at_threshold = grade_display(assessable=True, genant_grade=0, grade_uncertain=True, height_loss_pct=19.0)
    assert at_threshold.state is GradeState.UNCERTAIN and at_threshold.fractured is None
    assert at_threshold.text == "Genant 0? uncertain" and "19.0 %" in at_threshold.note
    doubtful = grade_display(assessable=True, genant_grade=1, low_confidence=True, reliability_notes=("Hp too tall",))
    assert doubtful.state is GradeState.UNCERTAIN and "low-confidence mask (Hp too tall)" in doubtful.note
    na = grade_display(assessable=False, genant_grade=None, reason="endplate cut by the field of view")
    assert (na.state, na.short, na.note) == (GradeState.NOT_ASSESSABLE, "n/a", "endplate cut by the field of view")


@pytest.fixture(scope="module")
def uncertain_case(tmp_path_factory):
    """The hand-made study with L3 measured at 19 % (Genant 0) inside the fracture-threshold margin."""
    case = make_case(tmp_path_factory.mktemp("grade"))
    l3 = dataclasses.replace(case.morphometry[0], height_loss_pct=19.0, genant_grade=0, grade_uncertain=True)
    morph = (l3, *case.morphometry[1:])
    typed = dataclasses.replace(
        case.report, morphometry=morph, eligibility=eligibility_of(morph, case.stir, CLINICAL)
    )
    return case, typed


def test_report_json_carries_the_state_and_its_reason(uncertain_case):
    _case, typed = uncertain_case
    report = typed.to_json()
    l3 = report["vertebrae"][0]
    assert l3["genant_grade"] == 0  # the measured value is kept
    assert l3["grade_state"] == "uncertain" and "fracture threshold" in l3["grade_note"]
    assert report["vertebrae"][1]["grade_state"] == "definite" and report["vertebrae"][1]["grade_note"] == ""
    assert report["vertebrae"][2]["grade_state"] == "not_assessable"
    validate_report(report)


def test_every_writer_shows_the_same_state(uncertain_case, tmp_path):
    case, typed = uncertain_case
    report = typed.to_json()
    l3 = report["vertebrae"][0]
    assert typed.vertebrae[0].grade.state is GradeState.UNCERTAIN and l3["grade_state"] == "uncertain"
    terminal = format_study_summary(typed, Path("out"))
    assert "L3: height loss 19.0 %, Genant 0? uncertain" in terminal and "Genant 0, normal" not in terminal
    assert "fracture threshold" in terminal
    assert _morph_lines(typed.vertebrae[0])[0] == "L3  Genant 0? uncertain"
    assert "fracture status unknown" in _morph_lines(typed.vertebrae[0])
    html = render_html(typed, {})
    assert "0? uncertain" in html
    seg = build_seg(typed, case.datasets)
    sr = hd.sr.srread(_save(build_sr(typed, seg, case.datasets), tmp_path / "sr.dcm"))
    groups = {str(g.tracking_identifier): g for g in sr.content.get_volumetric_roi_measurement_groups()}
    l3_codes = {q.name.value: q.value for q in groups["L3 vertebral body"].get_qualitative_evaluations()}
    assert l3_codes["VCF"].value == "82334004" and l3_codes["VCF"].meaning == "Indeterminate"  # not "No"
    assert "GENANT" not in l3_codes and "VB-SHAPE" not in l3_codes
    l4_codes = {q.name.value: q.value.value for q in groups["L4 vertebral body"].get_qualitative_evaluations()}
    assert l4_codes["VCF"] != "82334004"  # a definite grade stays Yes/No


def test_questions_do_not_call_an_uncertain_grade_not_assessable(uncertain_case):
    _case, typed = uncertain_case
    report = typed.to_json()
    texts = [q["question"] for q in report["eligibility"]["questions"]]
    assert not any("morphometry not assessable" in t for t in texts), texts
    l3 = next(lv for lv in report["eligibility"]["levels"] if lv["level"] == "L3")
    assert any("Genant 0? uncertain" in n for n in l3["notes"]), l3["notes"]


def _save(ds, path: Path) -> Path:
    from pipeline.report.dicom_common import save_dicom

    return save_dicom(ds, path)
