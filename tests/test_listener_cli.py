"""``spine-assess queue`` on a spool whose state is known, and start-up reconciliation of the spool."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.listener.service import reconcile
from pipeline.listener.spool import InstanceKey, Spool
from pipeline.listener.state import ExportItem, StateDB, StudyStatus
from tests.listener_helpers import dicom_files, make_small_study

DONE, DEAD, RECV = "1.2.3.1", "1.2.3.2", "1.2.3.3"
RETRY = dict(retry_backoff_s=1.0, retry_backoff_max_s=1.0)


def _add(db: StateDB, study: str, n: int, t: float) -> None:
    db.record_instance(
        study_uid=study,
        series_uid=f"{study}.9",
        sop_uid=f"{study}.9.{n}",
        sop_class_uid="1.2",
        path=f"/x/{study}/{n}",
        sha256="s",
        size_bytes=1,
        calling_ae="PACS",
        now=t,
    )


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    spool = Spool(tmp_path / "spool")
    db = StateDB(spool.db_path)
    for s in (DONE, DEAD, RECV):
        _add(db, s, 1, 100.0)
    db.start_run(DONE, 200.0)
    db.finish_run(
        DONE,
        ok=True,
        error=None,
        out_dir="/o",
        runtime_s=3.0,
        now=210.0,
        max_attempts=3,
        exports=[ExportItem("pacs", "/o/sr.dcm", "sr"), ExportItem("pacs", "/o/seg.dcm", "seg")],
        **RETRY,
    )
    rows = db.due_exports(1e12)
    db.export_done({rows[0].id: None, rows[1].id: "association rejected"}, now=220.0, max_attempts=1, **RETRY)
    db.start_run(DEAD, 200.0)
    db.finish_run(
        DEAD,
        ok=False,
        error="failed: no sagittal series",
        out_dir=None,
        runtime_s=1.0,
        now=201.0,
        max_attempts=1,
        **RETRY,
    )
    db.close()
    return spool.root


def test_queue_list_and_show(spool: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["queue", "--spool", str(spool), "list"]) == 0
    out = capsys.readouterr().out
    assert "1 dead, 1 done, 1 receiving" in out
    line = next(x for x in out.splitlines() if x.startswith(DONE))
    assert "done" in line and "dead 1/2" in line
    assert main(["queue", "--spool", str(spool), "list", "--status", "dead", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert (row["study_uid"], row["last_error"]) == (DEAD, "failed: no sagittal series")
    assert main(["queue", "--spool", str(spool), "show", DONE]) == 0
    out = capsys.readouterr().out
    assert "sr.dcm" in out and "delivered" in out and "association rejected" in out


def test_queue_retry_and_purge(spool: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["queue", "--spool", str(spool), "retry", "--dead"]) == 0
    assert "1 dead study, 1 dead export(s)" in capsys.readouterr().out
    db = StateDB(spool / "state.sqlite3")
    assert db.get_study(DEAD).status is StudyStatus.QUEUED
    assert main(["queue", "--spool", str(spool), "retry", RECV]) == 1  # nothing to retry: one clear line
    assert "nothing to retry" in capsys.readouterr().err
    assert main(["queue", "--spool", str(spool), "retry", DONE, "--rerun"]) == 0
    assert db.get_study(DONE).status is StudyStatus.QUEUED
    assert main(["queue", "--spool", str(spool), "purge", RECV]) == 1  # still receiving: needs --force
    assert main(["queue", "--spool", str(spool), "purge", RECV, "--force"]) == 0
    assert db.get_study(RECV) is None
    db.close()


def test_queue_usage_errors(tmp_path: Path, spool: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["queue", "--spool", str(tmp_path / "nowhere"), "list"]) == 2
    assert "no listener state here" in capsys.readouterr().err
    assert main(["queue", "--spool", str(spool), "show", "not-a-uid"]) == 2
    assert main(["queue", "--spool", str(spool), "purge", "--done"]) == 2


def test_reconcile_records_files_the_database_missed(tmp_path: Path) -> None:
    study = make_small_study(tmp_path / "study", seed=14)
    files = dicom_files(study)[:4]
    from pydicom import dcmread

    spool = Spool(tmp_path / "spool")
    db = StateDB(spool.db_path)
    keys = []
    for f in files:
        ds = dcmread(f, stop_before_pixels=True)
        keys.append(InstanceKey(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID, ds.SOPClassUID))
    # Two instances acknowledged and recorded, two written but the listener died before recording them,
    # one temporary file of a write that never completed, one recorded file that has since disappeared.
    for k, f in zip(keys[:2], files[:2], strict=True):
        st = spool.store(k, f.read_bytes())
        db.record_instance(
            study_uid=k.study_uid,
            series_uid=k.series_uid,
            sop_uid=k.sop_uid,
            sop_class_uid=k.sop_class_uid,
            path=str(st.path),
            sha256=st.sha256,
            size_bytes=st.size_bytes,
            calling_ae="PACS",
            now=100.0,
        )
    for k, f in zip(keys[2:], files[2:], strict=True):
        spool.store(k, f.read_bytes())
    half = spool.instance_path(keys[0]).parent / ".x.dcm.tmp-1-2-3"
    half.write_bytes(b"partial")
    garbage = InstanceKey(keys[0].study_uid, keys[0].series_uid, "1.2.3.999")
    spool.store(garbage, b"not a dicom file")
    db.record_instance(
        study_uid=keys[0].study_uid,
        series_uid="1.9",
        sop_uid="1.9.9",
        sop_class_uid="1.2",
        path="/gone.dcm",
        sha256="s",
        size_bytes=1,
        calling_ae="PACS",
        now=100.0,
    )
    counts = reconcile(spool, db, now=500.0)
    assert counts == {
        "temp_removed": 1,
        "recorded": 2,
        "forgotten": 1,
        "quarantined": 1,
        "requeued": 0,
        "receiving": 1,
    }
    row = db.get_study(keys[0].study_uid)
    assert (row.status, row.n_instances, row.n_quarantined, row.stable_since) == (StudyStatus.RECEIVING, 4, 1, 500.0)
    assert not half.exists()
    assert reconcile(spool, db, now=600.0)["recorded"] == 0  # idempotent
    db.close()
