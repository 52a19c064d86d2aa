"""Output-folder safety (pipeline.outdir): no command removes anything it did not write (issue 16 item 1)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pipeline.batch.runner import Mode, prepare_out_dir
from pipeline.cli import main
from pipeline.errors import ConfigError
from pipeline.outdir import (
    RUN_OUTPUT_NAMES,
    FolderState,
    OutputFolderError,
    check_not_overlapping,
    check_output_folder,
    inspect_output_folder,
)
from pipeline.report.outputs import FILE_NAMES, OVERLAY_DIR, SC_DIR
from pipeline.run import JOB_FILE, LABELS_FILE
from pipeline.tools.phantom import PhantomSpec, render_phantom, write_study


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory) -> Path:
    return write_study(render_phantom(PhantomSpec.small(seed=5)), tmp_path_factory.mktemp("study") / "s")


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _fake_output(folder: Path, study_uid: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    doc = {"schema_version": "1.0.0", "pipeline": {"name": "spine-assess"}, "study": {"study_instance_uid": study_uid}}
    (folder / "report.json").write_text(json.dumps(doc))
    (folder / "report.html").write_text("<html></html>")


def test_run_output_names_cover_everything_run_writes():
    assert set(FILE_NAMES.values()) | {LABELS_FILE, JOB_FILE, OVERLAY_DIR, SC_DIR} <= RUN_OUTPUT_NAMES


def test_folder_states(tmp_path):
    assert inspect_output_folder(tmp_path / "new").state is FolderState.ABSENT
    (tmp_path / "empty").mkdir()
    assert inspect_output_folder(tmp_path / "empty").state is FolderState.EMPTY
    _fake_output(tmp_path / "ours", "1.2.3")
    info = inspect_output_folder(tmp_path / "ours")
    assert info.state is FolderState.OURS and info.study_uid == "1.2.3"
    (tmp_path / "ours" / "notes.docx").write_text("mine")
    info = inspect_output_folder(tmp_path / "ours")
    assert info.state is FolderState.FOREIGN and info.foreign == ("notes.docx",)
    (tmp_path / "fake").mkdir()
    (tmp_path / "fake" / "report.json").write_text('{"something": "else"}')
    assert inspect_output_folder(tmp_path / "fake").state is FolderState.FOREIGN


def test_overlap_is_refused_both_ways(tmp_path):
    (tmp_path / "in" / "sub").mkdir(parents=True)
    for out in (tmp_path / "in", tmp_path / "in" / "sub", tmp_path / "in" / "new"):
        with pytest.raises(OutputFolderError, match="input folder"):
            check_not_overlapping(tmp_path / "in", out)
    with pytest.raises(OutputFolderError, match="inside the output folder"):
        check_not_overlapping(tmp_path / "in" / "sub", tmp_path / "in")
    check_not_overlapping(tmp_path / "in", tmp_path / "out")


def test_previous_output_of_another_study_needs_force(tmp_path):
    _fake_output(tmp_path / "o", "1.2.3")
    check_output_folder(tmp_path / "o", study_uid="1.2.3")
    with pytest.raises(OutputFolderError, match="another study.*--force"):
        check_output_folder(tmp_path / "o", study_uid="9.9")
    check_output_folder(tmp_path / "o", study_uid="9.9", force=True)
    (tmp_path / "o" / "mine.txt").write_text("x")
    with pytest.raises(OutputFolderError, match=r"did not write \(mine.txt\)"):
        check_output_folder(tmp_path / "o", study_uid="1.2.3", force=True)


@pytest.mark.parametrize("where", ["study", "inside", "cwd", "document"])
def test_run_refuses_and_keeps_every_file(where, study_dir, tmp_path, monkeypatch, capsys):
    """The four situations of the issue: --out = the study, inside it, '.', a folder holding a document."""
    study = tmp_path / "study"
    shutil.copytree(study_dir, study)
    before = _files(tmp_path)
    out = {"study": study, "inside": study / "results", "cwd": Path("."), "document": tmp_path / "docs"}[where]
    if where == "document":
        out.mkdir()
        (out / "letter.odt").write_text("an unrelated document")
        before = _files(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(study), "--out", str(out), "--outputs", "json"]) == 2
    err = capsys.readouterr().err
    assert "usage error" in err and ("input" in err or "did not write" in err), err
    assert _files(tmp_path) == before
    # --force does not make a run remove what it did not write either
    assert main(["run", str(study), "--out", str(out), "--outputs", "json", "--force"]) == 2
    assert _files(tmp_path) == before


@pytest.mark.slow
def test_run_replaces_its_own_output_and_another_study_only_with_force(study_dir, tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["run", str(study_dir), "--out", str(out), "--outputs", "json"]) == 0
    uid = json.loads((out / "report.json").read_text())["study"]["study_instance_uid"]
    first = (out / "report.json").read_text()
    assert main(["run", str(study_dir), "--out", str(out), "--outputs", "json"]) == 0  # same study: replaced
    assert (out / "report.json").read_text() != first
    other = tmp_path / "other"
    _fake_output(other, "1.2.3.4")
    capsys.readouterr()
    assert main(["run", str(study_dir), "--out", str(other), "--outputs", "json"]) == 2
    assert "another study" in capsys.readouterr().err
    assert json.loads((other / "report.json").read_text())["study"]["study_instance_uid"] == "1.2.3.4"
    assert main(["run", str(study_dir), "--out", str(other), "--outputs", "json", "--force"]) == 0
    assert json.loads((other / "report.json").read_text())["study"]["study_instance_uid"] == uid
    assert not (other / "report.html").exists()  # the whole previous output was replaced, as documented


def test_batch_force_never_overwrites_foreign_files(study_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.csv").write_text("my own spreadsheet")
    with pytest.raises(ConfigError, match="summary.csv"):
        prepare_out_dir(out, Mode.FORCE)
    assert (out / "summary.csv").read_text() == "my own spreadsheet"


@pytest.mark.slow
def test_batch_force_keeps_a_foreign_study_folder(study_dir, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(study_dir, root / "s")
    out = tmp_path / "out"
    (out / "s").mkdir(parents=True)
    (out / "s" / "draft.txt").write_text("my notes")
    assert main(["-q", "batch", str(root), "--out", str(out), "--force", "--outputs", "json"]) == 1
    assert (out / "s" / "draft.txt").read_text() == "my notes"
    assert not (out / "s" / "report.json").exists()


def test_stir_command_refuses_a_folder_holding_other_files(tmp_path, capsys):
    out = tmp_path / "o"
    out.mkdir()
    (out / "letter.odt").write_text("an unrelated document")
    args = ["stir", "--anatomy", str(tmp_path / "a.nii.gz"), "--labels", str(tmp_path / "l.nii.gz"), "--out", str(out)]
    assert main(args) == 2
    assert "letter.odt" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["letter.odt"]
