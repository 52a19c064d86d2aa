"""Choosing and writing the report outputs of one study."""

from __future__ import annotations

import json

import pydicom
import pytest

from pipeline.errors import ConfigError
from pipeline.report.json_report import validate_report
from pipeline.report.outputs import DEFAULT_OUTPUTS, OutputKind, parse_outputs, write_outputs
from pipeline.report.study_report import StageTimer
from tests.report_fixtures import make_case

K = OutputKind


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("json,html,sr,seg", {K.JSON, K.HTML, K.SR, K.SEG}),
        (" HTML ", {K.JSON, K.HTML}),
        ("sr", {K.JSON, K.SR, K.SEG}),
        ("all", set(OutputKind)),
        ("seg,sc,overlays", {K.JSON, K.SEG, K.SC, K.OVERLAYS}),
    ],
)
def test_parse_outputs(text, want):
    assert parse_outputs(text) == want


@pytest.mark.parametrize(("text", "match"), [("", "empty"), ("json,pdf", "unknown output 'pdf'")])
def test_parse_outputs_rejects_bad_lists(text, match):
    with pytest.raises(ConfigError, match=match):
        parse_outputs(text)


def test_write_all_outputs(tmp_path):
    case = make_case(tmp_path / "in")
    out = tmp_path / "out"
    final = write_outputs(out, case.report, parse_outputs("all"), anatomy=case.anatomy,
                          source_datasets=case.datasets).to_json()  # fmt: skip
    validate_report(final)
    assert json.loads((out / "report.json").read_text()) == final
    files = final["outputs"]
    assert files["seg"] == "seg.dcm" and files["sr"] == "sr.dcm" and files["html"] == "report.html"
    assert files["overlays"] == ["overlays/sagittal.png", "overlays/stir.png", "overlays/planes.png"]
    assert files["sc"] == ["sc/overlay_1.dcm", "sc/overlay_2.dcm", "sc/overlay_3.dcm"]
    for rel in [files["seg"], files["sr"], files["html"], *files["overlays"], *files["sc"]]:
        assert (out / rel).is_file(), rel
    sr = pydicom.dcmread(out / "sr.dcm")
    seg = pydicom.dcmread(out / "seg.dcm")
    referenced = {
        s.SeriesInstanceUID for st in sr.CurrentRequestedProcedureEvidenceSequence for s in st.ReferencedSeriesSequence
    }
    assert seg.SeriesInstanceUID in referenced
    html = (out / "report.html").read_text()
    assert "sr.dcm" in html and html.count("data:image/png;base64,") == 3
    assert case.report.outputs.to_json() == {"labels": "labels.nii.gz"}  # the input report is not modified


def test_missing_source_headers_is_a_warning_and_json_html_are_still_written(tmp_path):
    case = make_case(tmp_path / "in")
    final = write_outputs(tmp_path / "out", case.report, DEFAULT_OUTPUTS, anatomy=case.anatomy)
    assert any(
        "DICOM outputs (seg, sr) not written: the source DICOM headers were not given" in w for w in final.warnings
    )
    assert (tmp_path / "out" / "report.json").is_file() and (tmp_path / "out" / "report.html").is_file()
    assert final.outputs.seg is None


def test_timings_are_set_once_from_the_runs_timer(tmp_path):
    case = make_case(tmp_path / "in")
    timer = StageTimer()
    with timer.stage("ingest"):
        pass
    final = write_outputs(tmp_path / "a", case.report, {K.JSON, K.HTML}, anatomy=case.anatomy, timer=timer)
    assert list(final.timings_ms) == ["ingest", "outputs", "total"]
    assert final.timings_ms["outputs"] > 0 and final.timings_ms["total"] >= final.timings_ms["outputs"]
    assert json.loads((tmp_path / "a" / "report.json").read_text())["timings_ms"] == final.timings_ms
    untimed = write_outputs(tmp_path / "b", case.report, {K.JSON})
    assert untimed.timings_ms == case.report.timings_ms  # written as they are
