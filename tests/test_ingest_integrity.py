"""Truncated DICOM files are named as truncated by inspect and run (issue 16 item 13)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.ingest.integrity import truncation
from pipeline.tools.phantom import PhantomSpec, render_phantom, write_study

SAMPLE = Path(__file__).resolve().parents[1] / "sample_dicom" / "02_acute_osteoporotic_wedge"


def _cut(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("transfer_syntax", ["explicit", "rle"])
def test_truncation_by_the_files_own_lengths(transfer_syntax, tmp_path):
    study = write_study(render_phantom(PhantomSpec.small(seed=3)), tmp_path / "s", transfer_syntax=transfer_syntax)
    files = sorted(study.rglob("*.dcm"))
    assert truncation(files[0]) is None
    _cut(files[0])
    why = truncation(files[0])
    assert why is not None and why.startswith("truncated: the file ends at byte")


@pytest.fixture(scope="module")
def cut_study(tmp_path_factory) -> tuple[Path, Path]:
    study = tmp_path_factory.mktemp("cut") / "02"
    shutil.copytree(SAMPLE, study)
    victim = sorted((study / "002_SAG_T2_FSE").glob("*.dcm"))[7]
    _cut(victim)
    return study, victim


def test_inspect_names_the_truncated_file(cut_study, capsys):
    study, victim = cut_study
    assert main(["inspect", str(study)]) == 0
    out = capsys.readouterr().out
    assert "Truncated files: 1" in out and f"{victim}: truncated" in out
    assert main(["inspect", str(study), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [t["path"] for t in doc["truncated"]] == [str(victim)]


@pytest.mark.slow
def test_run_says_truncated_and_uses_another_series(cut_study, tmp_path, capsys):
    study, victim = cut_study
    assert main(["-q", "run", str(study), "--out", str(tmp_path / "o"), "--outputs", "json"]) == 0
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert any(f"{victim.name}" in w and "truncated" in w for w in report["warnings"]), report["warnings"]
