"""``phantom --samples`` recreates each sample's clinical.yaml; messages show options, not argument names
(issue 16 item 14)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pipeline.tools.phantom.samples as samples
from pipeline.cli import main
from pipeline.tools.phantom import PhantomSpec

REPO = Path(__file__).resolve().parents[1]


def test_packaged_clinical_files_are_the_committed_ones():
    for sample in samples.SAMPLE_STUDIES:
        committed = (REPO / "sample_dicom" / sample.name / "clinical.yaml").read_text(encoding="utf-8")
        assert samples.sample_clinical_text(sample.name) == committed, sample.name


def test_phantom_samples_writes_clinical_yaml(tmp_path, monkeypatch, capsys):
    first = samples.SAMPLE_STUDIES[1]
    small = dataclasses.replace(first, spec=PhantomSpec.small(seed=1), transfer_syntax="explicit")
    monkeypatch.setattr(samples, "SAMPLE_STUDIES", (small,))
    assert main(["phantom", "--samples", str(tmp_path)]) == 0
    written = tmp_path / first.name / "clinical.yaml"
    assert written.read_text(encoding="utf-8") == samples.sample_clinical_text(first.name)


def test_phantom_refusal_names_the_option_not_the_argument(tmp_path, capsys):
    out = tmp_path / "p"
    args = ["phantom", str(out), "--slices", "5", "--matrix", "160", "--pixel-spacing", "2.0"]
    assert main(args) == 0
    capsys.readouterr()
    assert main(args) != 0
    err = capsys.readouterr().err
    assert "--overwrite" in err and "overwrite=True" not in err


def test_phantom_setting_errors_name_the_options(tmp_path, capsys):
    assert main(["phantom", str(tmp_path / "q"), "--matrix", "128", "--pixel-spacing", "2.0"]) == 2
    err = capsys.readouterr().err
    assert "--matrix" in err and "--pixel-spacing" in err and "pixel_spacing_mm" not in err and "rows" not in err
