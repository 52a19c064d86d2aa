"""The STIR-only pipeline (pipeline/run_stir.py): files in, stir.json / edema map / overlay out; the frames of
reference come from what the user says (--different-frame), not from made-up UIDs."""

from __future__ import annotations

import json

import pytest
import SimpleITK as sitk
from stir_synth import make_spine

import pipeline.run_stir as run_stir_module
from pipeline.errors import InputError
from pipeline.levels import Level
from pipeline.model import StirAssessment, Substitute
from pipeline.outdir import OutputFolderError
from pipeline.run_stir import EDEMA_MAP, OVERLAY_PNG, STIR_JSON, StirInputs, run_stir
from pipeline.stir import load_stir_config


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("stir_files")
    sp = make_spine({2: (0.5, "band")}, n_bodies=4, seed=16, first_level=Level.L2)
    for name, vol in (("t2", sp.t2), ("stir", sp.stir), ("t1", sp.t1), ("labels", sp.labels)):
        sitk.WriteImage(vol.to_sitk(), str(d / f"{name}.nii.gz"))
    (d / "levels.json").write_text(json.dumps({"1": "L2", "2": "L3", "3": "L4", "4": "L5"}))
    return d


def _inputs(d, **kw):
    return StirInputs(anatomy=d / "t2.nii.gz", labels=d / "labels.nii.gz", levels=d / "levels.json", **kw)


def test_writes_the_three_files_and_names_the_levels(files, tmp_path):
    done = run_stir(_inputs(files, stir=files / "stir.nii.gz"), tmp_path / "out", cfg=load_stir_config())
    assert done.assessment.status == "measured"
    assert [v.level for v in done.segmentation.vertebrae] == [Level.L2, Level.L3, Level.L4, Level.L5]
    assert [f.edema for f in done.assessment.findings] == [False, True, False, False]
    assert sorted(p.name for p in done.out_dir.iterdir()) == sorted([STIR_JSON, EDEMA_MAP, OVERLAY_PNG])
    doc = json.loads((done.out_dir / STIR_JSON).read_text())
    assert doc["registration"].startswith("same frame of reference") and doc["series_instance_uid"] is None
    assert [v["level"] for v in doc["vertebrae"]] == ["L2", "L3", "L4", "L5"]


def test_without_stir_nothing_but_the_json(files, tmp_path):
    done = run_stir(_inputs(files), tmp_path / "out", cfg=load_stir_config())
    assert done.assessment.status == "not_available"
    assert [p.name for p in done.out_dir.iterdir()] == [STIR_JSON]


@pytest.mark.parametrize("different", [False, True])
def test_frames_of_reference_follow_the_user(files, tmp_path, monkeypatch, different):
    seen = {}

    def fake(anatomy, segmentation, stir, *, cfg, t1=None, deformity=None) -> StirAssessment:
        seen.update(anatomy=anatomy, stir=stir, t1=t1)
        raise InputError("stop here")

    monkeypatch.setattr(run_stir_module, "assess_stir", fake)
    inputs = _inputs(
        files,
        stir=files / "stir.nii.gz",
        t1=files / "t1.nii.gz",
        substitute=Substitute.T2_FATSAT,
        different_frame=different,
    )
    with pytest.raises(InputError, match="stop here"):
        run_stir(inputs, tmp_path / "out", cfg=load_stir_config())
    anatomy, stir, t1 = seen["anatomy"], seen["stir"], seen["t1"]
    assert stir.same_frame(anatomy) is (not different) and t1.same_frame(anatomy) is (not different)
    assert stir.substitute is Substitute.T2_FATSAT and t1.substitute is None and anatomy.substitute is None
    assert anatomy.series_uid is stir.series_uid is None


def test_unreadable_files_and_foreign_folders_are_refused(files, tmp_path):
    with pytest.raises(InputError, match="cannot read image"):
        run_stir(_inputs(files, stir=files / "missing.nii.gz"), tmp_path / "a", cfg=load_stir_config())
    (files / "bad_levels.json").write_text('["L1"]')
    bad = StirInputs(anatomy=files / "t2.nii.gz", labels=files / "labels.nii.gz", levels=files / "bad_levels.json")
    with pytest.raises(InputError, match="not a JSON mapping"):
        run_stir(bad, tmp_path / "b", cfg=load_stir_config())
    foreign = tmp_path / "c"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(OutputFolderError):
        run_stir(_inputs(files), foreign, cfg=load_stir_config())
    assert (foreign / "notes.txt").read_text() == "mine"
