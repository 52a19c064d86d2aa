"""End-to-end: study folder -> report.json, labels.nii.gz, HTML, SEG/SR (pipeline.run and `spine-assess run`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from pipeline.cli import main
from pipeline.errors import ConfigError, StudyError
from pipeline.ingest import discover_study, load_series
from pipeline.levels import Level
from pipeline.model import EdemaPattern, Morphology
from pipeline.outdir import OutputFolderError
from pipeline.report.json_report import validate_report
from pipeline.run import RunOptions, load_pipeline_config, run_study
from pipeline.tools.phantom import FractureSpec, PhantomSpec, render_phantom, write_study
from pipeline.volume import Volume


@pytest.fixture(scope="module")
def config():
    return load_pipeline_config()


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory) -> Path:
    spec = PhantomSpec.small(
        seed=11,
        fractures=(
            FractureSpec(
                Level.L1, Morphology.WEDGE, 40.0, edema=True, edema_pattern=EdemaPattern.DIFFUSE, edema_fraction=0.6
            ),
        ),
    )
    return write_study(render_phantom(spec), tmp_path_factory.mktemp("study") / "s1")


@pytest.fixture(scope="module")
def result(study_dir, config, tmp_path_factory):
    return run_study(study_dir, tmp_path_factory.mktemp("out") / "s1", config=config)


def test_report_has_the_contract_and_validates(result):
    report = json.loads(result.report_path.read_text())
    validate_report(report)
    assert report == result.report.to_json()  # the result's report is the one written
    for key in ("schema_version", "study", "series", "vertebrae", "eligibility", "outputs", "warnings", "timings_ms"):
        assert key in report
    assert {s["used_as"] for s in report["series"]} >= {"anatomy", "stir"}
    assert report["outputs"]["labels"] == "labels.nii.gz"
    for name in ("labels", "html", "seg", "sr"):
        assert (result.out_dir / report["outputs"][name]).is_file(), name
    timings = report["timings_ms"]
    stages = ("ingest", "load", "segment", "morphometry", "stir", "eligibility", "outputs")
    assert all(timings[k] >= 0 for k in stages) and timings["outputs"] > 0  # writing SEG/SR/HTML takes time
    assert timings["total"] >= sum(timings[k] for k in stages) - 1.0  # total covers every stage (rounding)
    assert timings["total"] <= result.runtime_s * 1000.0


def test_labels_are_on_the_anatomy_grid_and_map_to_levels(result, study_dir):
    report = result.report.to_json()
    study = discover_study(study_dir)
    anatomy_uid = next(s["series_instance_uid"] for s in report["series"] if s["used_as"] == "anatomy")
    anatomy = load_series(next(s for s in study.series if s.series_uid == anatomy_uid))
    labels = Volume.from_sitk(sitk.ReadImage(str(result.out_dir / "labels.nii.gz")))
    assert labels.same_grid(anatomy, tol_mm=1e-3)
    values = set(np.unique(labels.array)) - {0}
    assert values == {v["label"] for v in report["vertebrae"]}
    assert set(report["segmentation"]["label_map_levels"]) == {str(v) for v in values}


def test_the_collapsed_body_is_found_and_measured(result):
    by_level = {v["level"]: v for v in result.report.to_json()["vertebrae"]}
    assert "L1" in by_level
    l1 = by_level["L1"]
    assert l1["genant_grade"] is not None and l1["genant_grade"] >= 1, l1
    assert l1["stir"]["edema"] is True, l1["stir"]


@pytest.mark.slow
def test_rerun_replaces_the_folder_atomically(study_dir, config, tmp_path):
    out = tmp_path / "s"
    opts = RunOptions(outputs=frozenset({"json", "html"}))  # type: ignore[arg-type]
    run_study(study_dir, out, config=config, options=opts)
    assert (out / "report.html").is_file()
    run_study(study_dir, out, config=config, options=RunOptions(outputs=frozenset({"json"})))  # type: ignore[arg-type]
    assert not (out / "report.html").exists(), "the previous output is replaced as a whole"
    assert (out / "report.json").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary folders left behind"


def test_rerun_never_removes_a_file_it_did_not_write(study_dir, config, tmp_path):
    out = tmp_path / "s"
    out.mkdir()
    (out / "stale.txt").write_text("not ours")
    with pytest.raises(OutputFolderError, match="stale.txt"):
        run_study(study_dir, out, config=config, options=RunOptions(outputs=frozenset({"json"})))  # type: ignore[arg-type]
    assert (out / "stale.txt").read_text() == "not ours"
    assert not (out / "report.json").exists()


def test_folder_without_a_study_is_a_clear_error(tmp_path, config):
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(StudyError, match="no DICOM|no study|no image"):
        run_study(tmp_path, tmp_path.parent / f"{tmp_path.name}-out", config=config)
    assert not (tmp_path.parent / f"{tmp_path.name}-out").exists()


def test_invalid_clinical_file_stops_before_the_analysis(study_dir, config, tmp_path):
    bad = tmp_path / "clinical.yaml"
    bad.write_text("version: 1\npain:\n  vas: 11\n")
    with pytest.raises(ConfigError, match="vas"):
        run_study(study_dir, tmp_path / "out", config=config, options=RunOptions(clinical_path=bad))


def test_cli_run_prints_a_summary_and_exit_codes(study_dir, tmp_path, capsys):
    assert main(["run", str(study_dir), "--out", str(tmp_path / "o"), "--outputs", "json"]) == 0
    out = capsys.readouterr().out
    assert "report:" in out and "L1" in out
    assert main(["run", str(study_dir), "--out", str(tmp_path / "o"), "--outputs", "pdf"]) == 2
    assert main(["run", str(tmp_path / "missing"), "--out", str(tmp_path / "o2")]) == 2  # usage error, as batch
    assert main(["run", str(study_dir), "--out", str(tmp_path / "o3"), "--anchor", "X9=lowest"]) == 2


@pytest.fixture(scope="module")
def wedge_sample(repo_root) -> Path:
    return repo_root / "sample_dicom" / "02_acute_osteoporotic_wedge"  # RLE Lossless, T2 + T1 + STIR


@pytest.mark.slow
def test_corrupt_edge_slice_is_dropped_and_the_series_kept(wedge_sample, config, tmp_path):
    """Issue 19 item 3: one undecodable compressed slice at the side of the slab: the T2 is assessed on the
    other 14 slices (warning), the study is not lost."""
    import shutil

    from tests.dicom_factory import corrupt_compressed_pixels, slices_by_position

    study = shutil.copytree(wedge_sample, tmp_path / "study")
    edge = corrupt_compressed_pixels(slices_by_position(study / "002_SAG_T2_FSE")[0])
    result = run_study(study, tmp_path / "out", config=config)
    (anatomy,) = [s for s in result.report.to_json()["series"] if s["used_as"] == "anatomy"]
    assert anatomy["description"] == "SAG T2 FSE" and anatomy["n_images"] == 14
    assert any("1 slice(s) dropped" in w and edge.name in w for w in result.report.to_json()["warnings"])
    assert sitk.ReadImage(str(result.out_dir / "labels.nii.gz")).GetSize()[2] == 14  # (col, row, slice)
    assert (result.out_dir / "seg.dcm").is_file() and (result.out_dir / "sr.dcm").is_file()


@pytest.mark.slow
def test_corrupt_middle_slice_falls_back_to_the_next_series(wedge_sample, tmp_path, capsys):
    """A corrupt slice in the middle leaves a gap: the T2 is not used, the T1 is the anatomy instead, and
    `spine-assess run` exits 0 (it exited 1 with no results before)."""
    import shutil

    from tests.dicom_factory import corrupt_compressed_pixels, slices_by_position

    study = shutil.copytree(wedge_sample, tmp_path / "study")
    slices = slices_by_position(study / "002_SAG_T2_FSE")
    corrupt_compressed_pixels(slices[len(slices) // 2])
    assert main(["run", str(study), "--out", str(tmp_path / "out"), "--outputs", "json"]) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    used = {s["used_as"]: s for s in report["series"] if s["used_as"]}
    assert used["anatomy"]["description"] == "SAG T1 FSE"
    (t2,) = [s for s in report["series"] if s["description"] == "SAG T2 FSE"]
    assert not t2["used"] and "cannot be decoded" in t2["reason"] and "missing slice" in t2["reason"]
    assert any("using the next best series" in w for w in report["warnings"])


@pytest.mark.slow
def test_duplicate_instances_at_a_slice_position_keep_the_t2(wedge_sample, config, tmp_path):
    """Issue 19 item 4: an identical copy (new SOP Instance UID) and a conflicting, earlier image at existing T2
    slice positions made the T2 unusable; the study fell back to the T1 (no levels, wrong L1 height loss).
    Now both are dropped with a warning and the result is that of the clean study."""
    import shutil

    from tests.dicom_factory import add_duplicate, slices_by_position

    study = shutil.copytree(wedge_sample, tmp_path / "study")
    t2 = slices_by_position(study / "002_SAG_T2_FSE")
    add_duplicate(t2[7], t2[7].parent / "COPY0001.dcm")
    add_duplicate(t2[5], t2[5].parent / "STRAY0001.dcm", pixel_offset=40, acquisition_time="150000")
    result = run_study(study, tmp_path / "out", config=config)
    clean = run_study(wedge_sample, tmp_path / "clean", config=config)
    used = {s["used_as"]: s for s in result.report.to_json()["series"] if s["used_as"]}
    assert used["anatomy"]["description"] == "SAG T2 FSE" and used["anatomy"]["n_images"] == 15
    dropped = [w for w in result.report.to_json()["warnings"] if "same slice position" in w]
    assert len(dropped) == 2 and any("identical pixel data" in w for w in dropped)
    assert any("STRAY0001.dcm" in w and "later acquisition is kept" in w for w in dropped)

    def levels(report):
        return [(v["level"], v.get("genant_grade"), v.get("height_loss_pct")) for v in report["vertebrae"]]

    assert levels(result.report.to_json()) == levels(clean.report.to_json())
    assert "L1" in [v["level"] for v in result.report.to_json()["vertebrae"]]


def test_outputs_are_owner_and_group_only(result):
    """Issue 19 item 6: sr.dcm / seg.dcm hold the patient's name, ID and birth date; they were 0644 (umask 022)."""
    import stat

    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in [result.out_dir, *result.out_dir.rglob("*")]}
    assert modes[result.out_dir.name] == 0o750
    files = {n: m for n, m in modes.items() if (result.out_dir / n).is_file()}
    assert {"sr.dcm", "seg.dcm", "report.json", "labels.nii.gz"} <= set(files)
    assert set(files.values()) == {0o640}, files
