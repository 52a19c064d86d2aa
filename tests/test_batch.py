"""``spine-assess batch``: a folder of studies plus a broken study and junk, summaries, resume, isolation.

The studies are coarse synthetic phantoms (conftest ``tiny_study``); each real run takes a few seconds.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from pipeline.batch import LocalExecutor
from pipeline.batch.ledger import LEDGER_FILE, Ledger
from pipeline.batch.plan import options_salt, plan_batch
from pipeline.batch.runner import BatchSettings, Mode, prepare_out_dir, run_batch, select_work
from pipeline.cli import main
from pipeline.report.outputs import OutputKind
from pipeline.run import is_temporary_output, load_pipeline_config
from pipeline.segment import parse_anchor_option

CLINICAL = "version: 1\npain:\n  vas: 7\n"


def _truncate_dicoms(folder: Path) -> int:
    n = 0
    for p in folder.rglob("*.dcm"):
        os.truncate(p, p.stat().st_size // 2)
        n += 1
    return n


def _rows(out: Path) -> dict[str, dict[str, str]]:
    with (out / "summary.csv").open(newline="") as fh:
        return {r["study"] or r["folder"]: r for r in csv.DictReader(fh)}


def _ok_records(out: Path) -> list[str]:
    return [r["key"] for r in Ledger(out).read() if r.get("event") == "study" and r["status"] == "ok"]


def _leftovers(out: Path) -> list[Path]:
    return [p for p in out.rglob(".*") if is_temporary_output(p) or ".tmp-" in p.name]


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture(scope="module")
def batch(tmp_path_factory, tiny_study):
    """One CLI batch over: a/ (study), site2/b/ (study, clinical file via --clinical-dir), broken/ (all DICOM files
    truncated), notes/readme.txt and junk.bin."""
    base = tmp_path_factory.mktemp("batch")
    root = base / "root"
    tiny_study(21, root / "a")
    tiny_study(22, root / "site2" / "b")
    assert _truncate_dicoms(tiny_study(23, root / "broken")) > 10
    (root / "notes").mkdir()
    (root / "notes" / "readme.txt").write_text("exported by the PACS\n")
    (root / "junk.bin").write_bytes(b"\x00" * 300)
    clinical = base / "clinical"
    (clinical / "site2").mkdir(parents=True)
    (clinical / "site2" / "b.yaml").write_text(CLINICAL)
    out = base / "out"
    collect = _Collect()
    batch_log = logging.getLogger("pipeline.batch")
    batch_log.addHandler(collect)
    level = batch_log.level
    batch_log.setLevel(logging.INFO)  # main()'s basicConfig does nothing under pytest (its handlers exist)
    try:
        code = main(
            ["batch", str(root), "--out", str(out), "-j", "2", "--outputs", "json", "--clinical-dir", str(clinical)]
        )
    finally:
        batch_log.removeHandler(collect)
        batch_log.setLevel(level)
    return {"root": root, "out": out, "clinical": clinical, "code": code, "log": collect.lines}


@pytest.mark.slow
def test_a_broken_study_and_junk_fail_alone_and_the_exit_code_says_so(batch):
    out = batch["out"]
    assert batch["code"] == 1
    rows = _rows(out)
    assert set(rows) == {"a", "site2/b", "broken"}
    for key in ("a", "site2/b"):
        assert rows[key]["status"] == "ok", rows[key]
        assert rows[key]["report"] == f"{key}/report.json"
        report = json.loads((out / key / "report.json").read_text())
        assert report["study"]["study_instance_uid"] == rows[key]["study_uid"]
        job = json.loads((out / key / "job.json").read_text())
        assert job["key"] == key and len(job["fingerprint"]) == 64
    broken = rows["broken"]
    assert broken["status"] == "failed" and broken["study"] == "" and broken["report"] == ""
    assert "no usable study" in broken["error"] and "truncated" in broken["error"]
    assert not (out / "broken").exists() and not (out / "notes").exists()
    assert not _leftovers(out)


@pytest.mark.slow
def test_summary_files_describe_every_study(batch):
    out = batch["out"]
    doc = json.loads((out / "summary.json").read_text())
    assert doc["schema_version"] == 1
    assert doc["batch"]["finished"] is True and doc["batch"]["counts"] == {"failed": 1, "ok": 2}
    by_study = {r["study"] or r["folder"]: r for r in doc["studies"]}
    a = by_study["a"]
    report = json.loads((out / "a" / "report.json").read_text())
    levels = [v["level"] or f"?{v['label']}" for v in report["vertebrae"]]
    assert a["levels"] == levels and "L1" in levels
    fractured = [v["level"] for v in report["vertebrae"] if (v.get("genant_grade") or 0) >= 1]
    assert [f["level"] for f in a["fractures"]] == fractured
    assert a["oedema_levels"] == [v["level"] for v in report["vertebrae"] if (v.get("stir") or {}).get("edema")]
    assert a["decision"] == report["eligibility"]["summary"]
    assert a["runtime_s"] > 0 and a["error"] == ""
    assert _rows(out)["a"]["levels"] == " ".join(levels)


@pytest.mark.slow
def test_clinical_dir_maps_files_by_study_folder(batch):
    b = json.loads((batch["out"] / "site2" / "b" / "report.json").read_text())
    a = json.loads((batch["out"] / "a" / "report.json").read_text())
    assert b["clinical_inputs"] == {"file": "b.yaml", "provided": True}
    assert a["clinical_inputs"]["provided"] is False


@pytest.mark.slow
def test_progress_is_plain_log_lines_without_a_terminal(batch):
    lines = batch["log"]
    assert any(line.startswith("[1/2] ok") for line in lines), lines
    assert any(line.startswith("[2/2] ok") for line in lines), lines
    assert any("broken" in line and "no usable study" in line for line in lines)
    assert not any("\r" in line for line in lines)


@pytest.mark.slow
def test_ledger_has_one_record_per_study(batch):
    records = Ledger(batch["out"]).read()
    assert [r["event"] for r in records][0] == "start" and records[-1]["event"] == "end"
    assert sorted(_ok_records(batch["out"])) == ["a", "site2/b"]


@pytest.mark.slow
def test_a_second_run_needs_resume_or_force(batch, capsys):
    before = (batch["out"] / LEDGER_FILE).read_bytes()
    assert main(["batch", str(batch["root"]), "--out", str(batch["out"]), "--outputs", "json"]) == 2
    assert "--resume" in capsys.readouterr().err
    assert (batch["out"] / LEDGER_FILE).read_bytes() == before


@pytest.mark.slow
def test_an_invalid_clinical_file_stops_the_batch_before_it_starts(batch, tmp_path, capsys):
    clinical = tmp_path / "clinical"
    shutil.copytree(batch["clinical"], clinical)
    (clinical / "site2" / "b.yaml").write_text("version: 1\npain:\n  vas: 11\n")
    out = tmp_path / "out"
    assert main(["batch", str(batch["root"]), "--out", str(out), "--clinical-dir", str(clinical)]) == 2
    err = capsys.readouterr().err
    assert "b.yaml" in err and "vas" in err
    assert not (out / LEDGER_FILE).exists()


@pytest.mark.slow
def test_usage_errors_exit_2(batch, tmp_path):
    root, out = str(batch["root"]), str(tmp_path / "o")
    assert main(["batch", str(tmp_path / "missing"), "--out", out]) == 2
    assert main(["batch", root, "--out", str(batch["root"] / "results")]) == 2  # output inside the input
    assert main(["batch", root, "--out", out, "-j", "0"]) == 2
    assert main(["batch", root, "--out", out, "--outputs", "pdf"]) == 2
    assert main(["batch", root, "--out", out, "--retry-failed"]) == 2
    notbatch = tmp_path / "notbatch"
    notbatch.mkdir()
    (notbatch / "mine.txt").write_text("x")
    assert main(["batch", root, "--out", str(notbatch)]) == 2


@pytest.mark.slow
def test_resume_keeps_finished_studies_and_redoes_a_changed_one(batch, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(batch["out"], out)
    (out / ".a.tmp-4242-17").mkdir()  # what a run killed mid-write leaves behind
    (out / ".a.tmp-4242-17" / "report.json").write_text("{")
    one_file = next((batch["root"] / "site2" / "b").rglob("*.dcm"))
    stat = one_file.stat()
    os.utime(one_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    try:
        code = main(
            [
                "batch", str(batch["root"]), "--out", str(out), "--outputs", "json", "--resume",
                "--clinical-dir", str(batch["clinical"]),
            ]
        )  # fmt: skip
    finally:
        os.utime(one_file, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert code == 1  # the broken folder is still broken
    assert sorted(_ok_records(out)) == ["a", "site2/b", "site2/b"]
    rows = _rows(out)
    assert rows["a"]["from_previous_run"] == "yes" and rows["site2/b"]["from_previous_run"] == ""
    assert rows["a"]["status"] == rows["site2/b"]["status"] == "ok"
    assert not _leftovers(out)


# --------------------------------------------------------------------------- plans (headers only, fast)
@pytest.mark.slow
def test_plan_names_output_folders_from_folders_or_uid_hashes(tmp_path, tiny_study):
    root = tmp_path / "root"
    tiny_study(31, root / "site1" / "x")
    # two studies' series side by side in one folder, plus a clinical file nobody can attribute
    for seed in (32, 33):
        tiny_study(seed, tmp_path / f"s{seed}")
        for series in (tmp_path / f"s{seed}").iterdir():
            if series.is_dir():
                shutil.move(series, root / "mixed" / f"{seed}_{series.name}")
    (root / "mixed" / "clinical.yaml").write_text(CLINICAL)
    cfg = load_pipeline_config()
    plan = plan_batch(root, ingest=cfg.ingest, salt="s")
    by_key = {s.key: s for s in plan.studies}
    assert "site1/x" in by_key and not by_key["site1/x"].shared_folder
    mixed = [s for s in plan.studies if s.folder == "mixed"]
    assert len(mixed) == 2
    for s in mixed:
        assert s.shared_folder and s.clinical_path is None
        assert s.key == "mixed/study-" + hashlib.sha256(s.study_uid.encode()).hexdigest()[:12]
    assert any("holds several studies" in w for w in plan.warnings)
    assert not plan.unreadable
    again = plan_batch(root, ingest=cfg.ingest, salt="s")
    assert [(s.key, s.fingerprint) for s in again.studies] == [(s.key, s.fingerprint) for s in plan.studies]
    other = plan_batch(root, ingest=cfg.ingest, salt="other settings")
    assert all(a.fingerprint != b.fingerprint for a, b in zip(plan.studies, other.studies, strict=True))


class _ShortTimeoutForSlow:
    """An Executor wrapper giving the study meant to hang a short time limit (the others keep theirs)."""

    def __init__(self, inner: LocalExecutor) -> None:
        self.inner = inner
        self.capacity = inner.capacity

    def submit(self, task):
        return self.inner.submit(replace(task, timeout_s=1.5) if task.key.endswith("slow") else task)

    def shutdown(self, wait: bool = True, **kw: bool) -> None:
        self.inner.shutdown(wait, **kw)


@pytest.mark.slow
def test_timeout_and_killed_worker_are_recorded_and_rerun_on_resume(tmp_path, tiny_study):
    from batch_fakes import real_or_fake

    root = tmp_path / "root"
    for seed, name in ((41, "ok"), (42, "x-slow"), (43, "y-doomed")):
        tiny_study(seed, root / name)
    cfg = load_pipeline_config()
    settings = _settings(cfg)
    salt = options_salt(version="t", config_sha256=cfg.sha256, outputs=settings.outputs, anchor=None)
    plan = plan_batch(root, ingest=cfg.ingest, salt=salt)
    out = tmp_path / "out"
    prepare_out_dir(out, Mode.NEW)
    first = run_batch(plan, out, executor=_ShortTimeoutForSlow(LocalExecutor(2, fn=real_or_fake)), settings=settings)
    status = {r["study"]: r["status"] for r in first.rows}
    assert status == {"ok": "ok", "x-slow": "timeout", "y-doomed": "crashed"}
    assert first.exit_code == 1
    assert (out / "ok" / "report.json").is_file() and not (out / "x-slow").exists()
    # --resume runs only the timed-out and crashed studies again (here with the real task: both succeed);
    # moving the input folder does not change what counts as finished (fingerprints use relative paths)
    renamed = tmp_path / "root2"
    root.rename(renamed)
    plan2 = plan_batch(renamed, ingest=cfg.ingest, salt=salt)
    assert [s.key for s in plan2.studies] == [s.key for s in plan.studies]
    second = run_batch(plan2, out, executor=LocalExecutor(2), settings=settings, mode=Mode.RESUME)
    assert {r["study"]: r["status"] for r in second.rows} == {"ok": "ok", "x-slow": "ok", "y-doomed": "ok"}
    assert second.exit_code == 0
    assert sorted(_ok_records(out)) == ["ok", "x-slow", "y-doomed"]


@pytest.mark.slow
def test_a_corrupt_compressed_slice_does_not_sink_a_batch_study(tmp_path, repo_root):
    """Issue 19 item 3 in `batch`: the RLE sample with one undecodable slice at the edge (dropped) and another
    copy with one in the middle (the T2 is left out, T1 used): both studies are ok."""
    from tests.dicom_factory import corrupt_compressed_pixels, reuid_study, slices_by_position

    sample = repo_root / "sample_dicom" / "02_acute_osteoporotic_wedge"
    root = tmp_path / "root"
    for name, pick in (("edge", 0), ("middle", 7)):
        reuid_study(shutil.copytree(sample, root / name), seed=pick)
        corrupt_compressed_pixels(slices_by_position(root / name / "002_SAG_T2_FSE")[pick])
    out = tmp_path / "out"
    assert main(["batch", str(root), "--out", str(out), "--outputs", "json"]) == 0
    rows = _rows(out)
    assert {k: r["status"] for k, r in rows.items()} == {"edge": "ok", "middle": "ok"}
    anatomy = {}
    for key in ("edge", "middle"):
        report = json.loads((out / key / "report.json").read_text())
        anatomy[key] = next((s["description"], s["n_images"]) for s in report["series"] if s["used_as"] == "anatomy")
    assert anatomy == {"edge": ("SAG T2 FSE", 14), "middle": ("SAG T1 FSE", 15)}


# --------------------------------------------------------------------------- issue 19 item 2: error classes
def test_error_kinds():
    import errno

    from pipeline.errors import BUG, INPUT, RESOURCE, DicomReadError, SeriesError, error_kind

    assert error_kind(OSError(errno.ENOSPC, "No space left on device")) == RESOURCE
    assert error_kind(OSError(errno.EIO, "Input/output error")) == RESOURCE
    assert error_kind(MemoryError()) == RESOURCE
    assert error_kind(DicomReadError("x.dcm: cannot decode pixel data")) == INPUT
    assert error_kind(KeyError("k")) == BUG
    try:
        try:
            raise OSError(errno.EIO, "Input/output error")
        except OSError as exc:
            raise SeriesError("series 1.2: unreadable") from exc
    except SeriesError as wrapped:
        assert error_kind(wrapped) == RESOURCE  # an I/O error underneath is still an I/O error
    try:
        try:
            raise OSError(errno.ENOENT, "gone")
        except OSError:
            raise DicomReadError("x.dcm: not DICOM") from None
    except DicomReadError as hidden:
        assert error_kind(hidden) == INPUT  # "from None": the pipeline decided it is the data


def _settings(cfg):
    return BatchSettings(
        outputs=frozenset({OutputKind.JSON}),
        anchor=None,
        config_dir=cfg.config_dir,
        config_sha256=cfg.sha256,
        timeout_s=300.0,
        memory_limit_mb=None,
    )


@pytest.mark.slow
def test_resource_errors_and_bugs_are_retried_input_errors_are_not(tmp_path, tiny_study, monkeypatch):
    """Issue 19 item 2: a disk-full failure used to be a final `failed`. Now: ENOSPC once -> retried after a
    back-off -> ok; a bug -> retried once, still failed (and --resume tries it again); bad data -> one attempt."""
    from batch_fakes import transient

    from pipeline.batch.runner import RetryPolicy

    root = tmp_path / "root"
    for seed, name in ((51, "enospc"), (52, "input"), (53, "bug")):
        tiny_study(seed, root / name)
    cfg = load_pipeline_config()
    settings = _settings(cfg)
    plan = plan_batch(root, ingest=cfg.ingest, salt="t")
    out = tmp_path / "out"
    prepare_out_dir(out, Mode.NEW)
    retry = RetryPolicy(backoff_s=0.1, min_free_mb=0)
    result = run_batch(plan, out, executor=LocalExecutor(1, fn=transient), settings=settings, retry=retry)
    status = {r["study"]: r["status"] for r in result.rows}
    assert status == {"enospc": "ok", "input": "failed", "bug": "failed"}
    attempts = {k: int((out / f"{k}.attempts").read_text()) for k in status}
    assert attempts == {"enospc": 2, "input": 1, "bug": 2}
    kinds = {r["key"]: r["error_kind"] for r in Ledger(out).read() if r.get("event") == "study"}
    assert kinds == {"enospc": None, "input": "input", "bug": "bug"}
    # --resume keeps the data failure (same inputs, same answer) and runs the bug again
    # (the fake run writes no job.json, so "enospc" would run again too)
    todo, kept = select_work(plan, out, Mode.RESUME)
    assert "bug" in [s.key for s in todo] and "input" in kept


@pytest.mark.slow
def test_no_study_starts_while_the_disk_is_full(tmp_path, tiny_study, monkeypatch):
    """The free-space guard before a run: the batch waits (it does not fail) until space is back."""
    from batch_fakes import fake

    from pipeline.batch import runner

    tiny_study(54, tmp_path / "root" / "a")
    cfg = load_pipeline_config()
    plan = plan_batch(tmp_path / "root", ingest=cfg.ingest, salt="t")
    out = tmp_path / "out"
    prepare_out_dir(out, Mode.NEW)
    calls = []

    def free_mb(self):
        calls.append(1)
        return 5.0 if len(calls) <= 3 else 1e6  # full for the first three looks, then freed

    monkeypatch.setattr(runner._SpaceGuard, "free_mb", free_mb)
    result = run_batch(
        plan,
        out,
        executor=LocalExecutor(1, fn=fake),
        settings=_settings(cfg),
        retry=runner.RetryPolicy(min_free_mb=100),
    )
    assert [r["status"] for r in result.rows] == ["ok"] and len(calls) >= 4


@pytest.mark.slow
def test_a_folder_of_header_truncated_files_gets_a_failed_row(tmp_path, tiny_study):
    """Issue 19 item 8: files cut off inside their header were only counted as skipped; docs/batch.md promises
    every folder that held DICOM images a row of its own."""
    root = tmp_path / "root"
    tiny_study(61, root / "good")
    cut = tiny_study(62, root / "cut")
    n = 0
    for p in cut.rglob("*.dcm"):
        os.truncate(p, 400)  # inside the data set's header, before any pixel data
        n += 1
    assert n > 10
    cfg = load_pipeline_config()
    plan = plan_batch(root, ingest=cfg.ingest, salt="t")
    assert [s.key for s in plan.studies] == ["good"]
    (folder,) = plan.unreadable
    assert folder.folder == "cut" and "no usable study" in folder.error


def test_options_salt_records_the_anchor_as_written_and_exactly():
    def salt(text):
        return options_salt(
            version="t",
            config_sha256="0" * 64,
            outputs=frozenset({OutputKind.JSON}),
            anchor=parse_anchor_option(text, "a"),
        )

    assert salt("L5=lowest") == salt("l5=LOWEST") != salt(None) != salt("L1=3")
    assert salt("L3=z:-120.5") != salt("L3=z:-120.50001")  # not rounded to a few digits as in Anchor.describe
    legacy = json.dumps(
        {"version": "t", "config": "0" * 64, "outputs": ["json"], "anchor": "L5=lowest"}, sort_keys=True
    )
    assert salt("L5=lowest") == hashlib.sha256(legacy.encode()).hexdigest()  # batches resumed across this change
