"""The listener end to end: receive -> study-complete trigger -> batch executor -> results back to a PACS.

In-process listeners (real SCP, real batch executor with worker processes, real peers) for the round trips,
and a listener subprocess (``python -m pipeline listen``) for what needs a process: kill -9 in the middle of a
C-STORE, and the log canary. Peers: Orthanc (PACS, C-STORE and STOW-RS), a pynetdicom Storage SCP as a simple
destination. ``stable_seconds`` is 1-2 s here; the pipeline itself takes a few seconds per study.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pynetdicom import AE, _config
from pynetdicom.sop_class import Verification

from pipeline.listener import Listener, StateDB, StudyStatus
from pipeline.listener.spool import STATE_DB
from tests.listener_helpers import (
    TEST_AET,
    ListenerProcess,
    StorePeer,
    dicom_files,
    free_port,
    listener_config,
    make_small_study,
    store_files,
    wait_for,
)
from tests.orthanc_peer import DICOMWEB_PLUGIN, Orthanc

pytestmark = [pytest.mark.network, pytest.mark.slow]
pytest.importorskip("pipeline.batch", reason="the batch executor (issue 9) runs the listener's jobs")

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "sample_dicom" / "02_acute_osteoporotic_wedge"
FAST = {"outputs": ["json", "seg", "sr"], "timeout_s": 300, "retry_backoff_s": 1.0}
CANARY_NAME, CANARY_ID = "CANARYZEBRA^QUOKKA7781", "CANARY-ID-99431"


def study_row(spool: Path, study_uid: str) -> Any:
    db = StateDB(spool / STATE_DB)
    try:
        return db.get_study(study_uid)
    finally:
        db.close()


def outbox(spool: Path, study_uid: str) -> list[Any]:
    db = StateDB(spool / STATE_DB)
    try:
        return db.outbox_for(study_uid)
    finally:
        db.close()


def delivered(spool: Path, study_uid: str, n: int) -> bool:
    """The ``n`` exports of the study's latest run are all delivered."""
    rows = outbox(spool, study_uid)
    last = [o for o in rows if o.run == max(r.run for r in rows)] if rows else []
    return len(last) == n and all(o.status == "delivered" for o in last)


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_small_study(
        tmp_path_factory.mktemp("e2e") / "s", seed=21, patient_name=CANARY_NAME, patient_id=CANARY_ID
    )


def _uid(folder: Path) -> str:
    return str(dcmread(dicom_files(folder)[0], stop_before_pixels=True).StudyInstanceUID)


# --------------------------------------------------------------------------- Orthanc round trip
def test_orthanc_round_trip_cstore_and_stow(tmp_path: Path, listeners: list[Listener]) -> None:
    """Orthanc pushes a sample study to us; our SR and SEG come back into Orthanc (C-STORE and STOW-RS)."""
    # Orthanc first (it needs our port), then our listener (it needs Orthanc's DICOM and HTTP ports).
    our_port = free_port()
    stow = DICOMWEB_PLUGIN.is_file()  # without the plugin: C-STORE only
    orthanc = Orthanc(tmp_path / "orthanc", modalities={"spineai": ("SPINEAI", "127.0.0.1", our_port)}, dicomweb=stow)
    try:
        destinations: list[dict[str, Any]] = [
            {"name": "pacs", "kind": "dimse", "ae_title": "ORTHANC", "host": "127.0.0.1", "port": orthanc.dicom_port}
        ]
        if stow:
            destinations.append({"name": "web", "kind": "stow", "url": f"{orthanc.url}/dicom-web"})
        cfg = listener_config(
            tmp_path / "spool",
            network={"port": our_port},
            access={"allowed_callers": [{"ae_title": "ORTHANC", "host": "127.0.0.1"}]},
            trigger={"stable_seconds": 2.0},
            processing=FAST,
            export={"destinations": destinations},
        )
        listeners.append(Listener(cfg).start())
        files = dicom_files(SAMPLE)
        study_uid = _uid(SAMPLE)
        sid = orthanc.upload(files)
        job = orthanc.store_to("spineai", [sid])
        assert job["FailedInstancesCount"] == 0 and job["InstancesCount"] == len(files)

        spool = cfg.spool_dir
        n_exports = 2 * len(destinations)
        wait_for(lambda: delivered(spool, study_uid, n_exports), 240, "SR and SEG delivered to every destination")
        row = study_row(spool, study_uid)
        assert (row.status, row.n_instances, row.attempts, row.runs) == (StudyStatus.DONE, len(files), 1, 1)

        series = orthanc.find_series(study_uid)
        by_modality = {s["MainDicomTags"].get("Modality"): s for s in series}
        assert {"SR", "SEG"} <= set(by_modality)
        report = json.loads((spool / "results" / study_uid / "report.json").read_text())
        anatomy_uid = report["segmentation"]["series_instance_uid"]
        seg_id = by_modality["SEG"]["Instances"][0]
        sr_id = by_modality["SR"]["Instances"][0]
        seg = dcmread(_bytes_io(orthanc.instance_file(seg_id)))
        sr = dcmread(_bytes_io(orthanc.instance_file(sr_id)))
        assert seg.StudyInstanceUID == sr.StudyInstanceUID == study_uid
        assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == anatomy_uid
        evidence = {
            s.SeriesInstanceUID
            for item in sr.CurrentRequestedProcedureEvidenceSequence
            for s in item.ReferencedSeriesSequence
        }
        assert anatomy_uid in evidence and seg.SeriesInstanceUID in evidence
        # Sent twice (C-STORE and STOW) with the same UIDs: one SR and one SEG in the PACS.
        assert len(by_modality["SR"]["Instances"]) == 1 and len(by_modality["SEG"]["Instances"]) == 1

        # The PACS sends the same MR series again (a route sends MR only: our SR / SEG are not MR image storage
        # and would be refused at negotiation): identical instances, counted once, no re-run.
        mr_series = [s["ID"] for s in series if s["MainDicomTags"].get("Modality") == "MR"]
        assert orthanc.store_to("spineai", mr_series)["FailedInstancesCount"] == 0
        time.sleep(cfg.trigger.stable_seconds + 1.0)
        assert study_row(spool, study_uid).runs == 1
    finally:
        orthanc.close()


def _bytes_io(data: bytes) -> Any:
    import io

    return io.BytesIO(data)


# --------------------------------------------------------------------------- retries and re-runs
def test_destination_down_then_back(tmp_path: Path, small: Path, listeners: list[Listener]) -> None:
    port = free_port()
    cfg = listener_config(
        tmp_path / "spool",
        processing=FAST,
        export={
            "destinations": [
                {"name": "pacs", "ae_title": "RESULTS", "host": "127.0.0.1", "port": port, "timeout_s": 5}
            ],
            "retry_backoff_s": 0.5,
            "retry_backoff_max_s": 1.0,
        },
    )
    listeners.append(Listener(cfg).start())
    uid = _uid(small)
    assert set(store_files(listeners[0].port, dicom_files(small))) == {0}
    wait_for(lambda: any(o.attempts >= 2 for o in outbox(cfg.spool_dir, uid)), 180, "failed export attempts")
    rows = outbox(cfg.spool_dir, uid)
    assert all(o.status == "pending" and o.last_error for o in rows)
    peer = StorePeer(port)
    try:
        wait_for(lambda: delivered(cfg.spool_dir, uid, 2), 60, "delivery after the destination came back")
        assert sorted(m for m, _, _ in peer.received) == ["SEG", "SR"]
    finally:
        peer.close()


def test_late_series_triggers_one_rerun_with_the_same_output_uids(
    tmp_path: Path, small: Path, listeners: list[Listener]
) -> None:
    peer = StorePeer()
    try:
        cfg = listener_config(
            tmp_path / "spool",
            processing=FAST,
            export={"destinations": [{"name": "pacs", "ae_title": "RESULTS", "host": "127.0.0.1", "port": peer.port}]},
        )
        listeners.append(Listener(cfg).start())
        uid = _uid(small)
        files = dicom_files(small)
        stir = [f for f in files if "stir" in f.parent.name.lower() or "tirm" in f.parent.name.lower()]
        first = [f for f in files if f not in stir]
        assert stir and first
        assert set(store_files(listeners[0].port, first)) == {0}
        wait_for(lambda: delivered(cfg.spool_dir, uid, 2), 180, "first results")
        report1 = json.loads((cfg.spool_dir / "results" / uid / "report.json").read_text())
        sent1 = sorted(peer.received)
        assert set(store_files(listeners[0].port, stir)) == {0}
        wait_for(lambda: (study_row(cfg.spool_dir, uid).runs == 2) and delivered(cfg.spool_dir, uid, 2), 180, "re-run")
        row = study_row(cfg.spool_dir, uid)
        assert (row.status, row.n_instances, row.runs) == (StudyStatus.DONE, len(files), 2)
        report2 = json.loads((cfg.spool_dir / "results" / uid / "report.json").read_text())
        assert report1["segmentation"]["series_instance_uid"] == report2["segmentation"]["series_instance_uid"]
        # Same study, source series, version and configuration: same SOP Instance UIDs, so the PACS replaces them.
        assert sorted(peer.received[len(sent1) :]) == sent1
        assert [o.status for o in outbox(cfg.spool_dir, uid)] == ["delivered"] * 4
    finally:
        peer.close()


# --------------------------------------------------------------------------- a listener process
def _process_config(spool: Path, port: int, dest_port: int) -> dict[str, Any]:
    return {
        "network": {"port": port, "bind_address": "127.0.0.1"},
        "access": {"allowed_callers": [{"ae_title": TEST_AET, "host": "127.0.0.1"}]},
        "storage": {"spool_dir": str(spool), "min_free_mb": 1},
        "trigger": {"stable_seconds": 2.0, "poll_seconds": 0.2},
        "processing": FAST,
        "export": {
            "destinations": [{"name": "pacs", "ae_title": "RESULTS", "host": "127.0.0.1", "port": dest_port}],
            "retry_backoff_s": 0.5,
        },
    }


@pytest.fixture
def peer() -> Iterator[StorePeer]:
    p = StorePeer()
    yield p
    p.close()


def test_kill_9_during_cstore_loses_nothing_acknowledged_and_processes_once(
    tmp_path: Path, small: Path, peer: StorePeer, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = tmp_path / "spool"
    proc = ListenerProcess(tmp_path, _process_config(spool, free_port(), peer.port)).start()
    try:
        files = dicom_files(small)
        uid = _uid(small)
        acknowledged: list[Path] = []
        ae = AE(ae_title=TEST_AET)
        for sop, ts in {
            (
                str(dcmread(f, stop_before_pixels=True).SOPClassUID),
                str(dcmread(f, stop_before_pixels=True).file_meta.TransferSyntaxUID),
            )
            for f in files
        }:
            ae.add_requested_context(sop, [ts])
        assoc = ae.associate("127.0.0.1", proc.port, ae_title="SPINEAI")
        assert assoc.is_established
        killer = threading.Timer(0.0, lambda: None)
        for i, f in enumerate(files):
            if i == len(files) // 2:
                # Kill the listener while this C-STORE is on the wire.
                killer = threading.Timer(0.01, proc.kill9)
                killer.start()
            try:
                status = assoc.send_c_store(f) if assoc.is_established else None
            except Exception:
                status = None
            if status is not None and "Status" in status and status.Status == 0:
                acknowledged.append(f)
        killer.join()
        assoc.abort()
        assert len(files) // 2 <= len(acknowledged) < len(files)
        # Every instance that got Success is on disk, complete.
        for f in acknowledged:
            ds = dcmread(f, stop_before_pixels=True)
            stored = spool / "studies" / uid / ds.SeriesInstanceUID / f"{ds.SOPInstanceUID}.dcm"
            assert stored.is_file(), f"acknowledged instance {ds.SOPInstanceUID} is not in the spool"
            assert dcmread(stored).PixelData == dcmread(f).PixelData

        proc.start()  # restart: reconciles the spool, then the sender resumes (sends everything again)
        assert set(store_files(proc.port, files)) == {0}
        wait_for(lambda: delivered(spool, uid, 2), 240, "results after the restart")
        time.sleep(3.0)  # a second run would have started by now
        row = study_row(spool, uid)
        assert (row.status, row.n_instances, row.attempts, row.runs) == (StudyStatus.DONE, len(files), 1, 1)
        assert sorted(m for m, _, _ in peer.received) == ["SEG", "SR"]
        assert proc.stop() == 0
    finally:
        proc.stop()


def test_listener_process_access_corrupt_instance_and_log_canary(
    tmp_path: Path, small: Path, peer: StorePeer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unknown AE is refused; a corrupt instance gets 0xC210 and the rest is processed and sent back;
    the patient name and ID of the study never appear in the listener's log (verbose, including its workers)."""
    from pynetdicom.dsutils import split_dataset

    spool = tmp_path / "spool"
    proc = ListenerProcess(tmp_path, _process_config(spool, free_port(), peer.port), verbose="-vv").start()
    try:
        stranger = AE(ae_title="STRANGER")
        stranger.add_requested_context(Verification)
        assert stranger.associate("127.0.0.1", proc.port, ae_title="SPINEAI").is_rejected

        files = dicom_files(small)
        uid = _uid(small)
        _meta, offset = split_dataset(files[0])
        raw = files[0].read_bytes()
        corrupt = tmp_path / "corrupt.dcm"
        corrupt.write_bytes(raw[:offset] + b"\xff" * 64 + raw[offset + 64 :])
        monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)
        statuses = store_files(proc.port, [corrupt, *files[1:]])
        assert statuses[0] == 0xC210 and set(statuses[1:]) == {0}
        wait_for(lambda: delivered(spool, uid, 2), 240, "results of the study without its corrupt instance")
        row = study_row(spool, uid)
        assert (row.status, row.n_instances) == (StudyStatus.DONE, len(files) - 1)
        assert sorted(m for m, _, _ in peer.received) == ["SEG", "SR"]
        assert proc.stop() == 0
        log = proc.log_text()
        assert uid in log and "STRANGER" in log and "0xC210" in log  # the log is the one we think it is
        for identifier in (CANARY_NAME, CANARY_ID, "CANARYZEBRA", "QUOKKA7781", "99431"):
            assert identifier not in log, f"patient identifier {identifier!r} found in the listener log"
    finally:
        proc.stop()


def test_corrupt_compressed_slice_is_quarantined_and_the_study_still_assessed(
    tmp_path: Path, listeners: list[Listener]
) -> None:
    """Issue 19 item 3 through the listener: the sample study (RLE) with one corrupt T2 slice in the middle of
    the slab. The slice is quarantined at reception; the run uses the next best series instead of dying."""
    import shutil

    from tests.dicom_factory import corrupt_compressed_pixels, slices_by_position

    study = Path(shutil.copytree(SAMPLE, tmp_path / "study"))
    t2 = slices_by_position(study / "002_SAG_T2_FSE")
    corrupt_compressed_pixels(t2[len(t2) // 2])
    cfg = listener_config(tmp_path / "spool", processing=FAST)
    listeners.append(Listener(cfg).start())
    files = dicom_files(study)
    assert set(store_files(listeners[0].port, files)) == {0}
    uid = _uid(study)
    row = wait_for(
        lambda: (r := study_row(cfg.spool_dir, uid)) and r.status in (StudyStatus.DONE, StudyStatus.DEAD) and r,
        240,
        "the run",
    )
    assert (row.status, row.n_instances, row.n_quarantined) == (StudyStatus.DONE, len(files) - 1, 1), row.last_error
    report = json.loads((cfg.spool_dir / "results" / uid / "report.json").read_text())
    used = {s["used_as"]: s["description"] for s in report["series"] if s["used_as"]}
    assert used["anatomy"] == "SAG T1 FSE"
