"""`spine-assess inspect`: table / JSON of studies and series, no patient identity unless asked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydicom.uid import RLELossless, generate_uid

from pipeline.cli import main
from tests.dicom_factory import SeriesSpec, write_series, write_sr

NAME, PID = "Canary^Nameperson", "CANARY-ID-4242"


@pytest.fixture()
def study_dir(tmp_path: Path) -> Path:
    st, fo = generate_uid(), generate_uid()
    common = {"study_uid": st, "frame_of_reference_uid": fo, "patient_name": NAME, "patient_id": PID}
    write_series(tmp_path / "s2", SeriesSpec(series_number=2, **common))
    write_series(
        tmp_path / "s3",
        SeriesSpec(description="t1_tse_sag", tr=500, te=9, series_number=3, transfer_syntax=RLELossless, **common),
    )
    write_series(
        tmp_path / "s4",
        SeriesSpec(
            description="STIR_LONGTR",
            tr=5000,
            te=30,
            ti=165,
            series_number=4,
            manufacturer="Philips",
            **common,
        ),
    )
    write_series(tmp_path / "s5", SeriesSpec(description="T2 TRA", orientation="AXIAL", series_number=5, **common))
    write_sr(tmp_path / "sr" / "report", SeriesSpec(**common))
    (tmp_path / "Thumbs.db").write_bytes(b"\x00" * 64)
    return tmp_path


def test_inspect_table(study_dir: Path, capsys):
    assert main(["inspect", str(study_dir)]) == 0
    out = capsys.readouterr().out
    assert "1 study, 2 skipped" in out
    for text in (
        "t2_tse_sag",
        "SAGITTAL  T2 (0.96)",
        "anatomy",
        "t1_tse_sag",
        "RLE",
        "STIR_LONGTR",
        "STIR (0.98)",
        "stir",
        "AXIAL",
        "axial series: only sagittal series are analysed",
        "Skipped files: 2",
        "DICOM without pixel data (Basic Text SR Storage)",
        "4.00/3.50",
        "0.80x0.70",
    ):
        assert text in out, text
    assert "Canary" not in out and "CANARY" not in out


def test_inspect_json_and_show_patient(study_dir: Path, capsys):
    assert main(["inspect", "--json", str(study_dir)]) == 0
    doc = json.loads(capsys.readouterr().out)
    (study,) = doc["studies"]
    assert "patient" not in study and "CANARY" not in json.dumps(doc)
    assert [s["used_as"] for s in study["series"]] == ["anatomy", "t1", "stir", None]
    assert study["series"][0]["role"] == "T2" and study["series"][0]["orientation"] == "SAGITTAL"
    assert study["series"][1]["transfer_syntaxes"] == [{"uid": RLELossless, "name": "RLE Lossless"}]
    assert len(doc["skipped"]) == 2
    assert main(["inspect", "--json", "--show-patient", str(study_dir)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["studies"][0]["patient"] == {"name": NAME, "id": PID, "birth_date": "19500101"}
    assert main(["inspect", "--show-patient", str(study_dir)]) == 0
    assert NAME in capsys.readouterr().out


def test_inspect_without_studies_exits_1(tmp_path: Path, capsys):
    (tmp_path / "notes.txt").write_text("x")
    assert main(["inspect", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert "Skipped files: 1" in captured.out and "no DICOM image series" in captured.err


def test_inspect_bad_config_exits_2(study_dir: Path, tmp_path: Path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("geometry: {min_slices: 0}\n")
    assert main(["inspect", "--config", str(bad), str(study_dir)]) == 2
    assert "configuration error" in capsys.readouterr().err


def test_inspect_missing_folder_is_a_usage_error(tmp_path: Path, capsys):
    assert main(["inspect", str(tmp_path / "nope")]) == 2  # as for run and batch
    assert "no such file or folder" in capsys.readouterr().err
