"""The state database: the study state machine, retries, dead letters and the outbox."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.listener.state import ExportItem, OutboxStatus, StateDB, StudyStatus, backoff_s

S = "1.2.3"
RETRY = dict(max_attempts=3, retry_backoff_s=10.0, retry_backoff_max_s=25.0)


@pytest.fixture
def db(tmp_path: Path) -> StateDB:
    d = StateDB(tmp_path / "state.sqlite3")
    yield d
    d.close()


def add(db: StateDB, n: int, t: float, *, study: str = S, sha: str = "a", series: str = "1.2.3.4") -> bool:
    return db.record_instance(
        study_uid=study,
        series_uid=series,
        sop_uid=f"1.2.3.4.{n}",
        sop_class_uid="1.2.840.10008.5.1.4.1.1.4",
        path=f"/spool/{study}/{series}/1.2.3.4.{n}.dcm",
        sha256=sha,
        size_bytes=10,
        calling_ae="PACS",
        now=t,
    )


def finish(db: StateDB, ok: bool, t: float, exports=(), error: str | None = None, **kw) -> StudyStatus | None:
    args = {**RETRY, **kw}
    return db.finish_run(
        S, ok=ok, error=error, out_dir="/out" if ok else None, runtime_s=2.0, now=t, exports=exports, **args
    )


def test_backoff_is_exponential_and_capped() -> None:
    assert [backoff_s(a, 10, 60) for a in (1, 2, 3, 4, 5)] == [10, 20, 40, 60, 60]
    assert backoff_s(1000, 1, 5) == 5


def test_wal_and_full_sync(db: StateDB) -> None:
    assert db._query("PRAGMA journal_mode")[0][0] == "wal"
    assert db._query("PRAGMA synchronous")[0][0] == 2  # FULL


def test_study_becomes_due_only_after_stable_seconds(db: StateDB) -> None:
    assert add(db, 1, 100.0) and add(db, 2, 105.0)
    assert db.due_studies(now=110.0, stable_seconds=30, limit=10) == []
    (row,) = db.due_studies(now=135.0, stable_seconds=30, limit=10)
    assert (row.status, row.n_instances, row.first_arrival, row.last_arrival) == (StudyStatus.RECEIVING, 2, 100, 105)


def test_duplicate_with_same_content_is_counted_once_and_changes_nothing(db: StateDB) -> None:
    add(db, 1, 100.0)
    assert add(db, 1, 101.0) is False
    row = db.get_study(S)
    assert (row.n_instances, row.change_seq) == (1, 1)
    assert add(db, 1, 102.0, sha="b") is True  # same SOP instance, new content: a change, still one instance
    row = db.get_study(S)
    assert (row.n_instances, row.change_seq) == (1, 2)


def test_successful_run_is_done_and_queues_exports(db: StateDB) -> None:
    add(db, 1, 100.0)
    started = db.start_run(S, 200.0)
    assert (started.status, started.attempts, started.run_seq) == (StudyStatus.RUNNING, 1, 1)
    assert db.start_run(S, 200.0) is None  # not due twice
    exports = [ExportItem("pacs", "/out/sr.dcm", "sr"), ExportItem("pacs", "/out/seg.dcm", "seg")]
    assert finish(db, True, 210.0, exports) is StudyStatus.DONE
    row = db.get_study(S)
    assert (row.runs, row.out_dir, row.last_error) == (1, "/out", None)
    assert [(o.kind, o.status, o.run) for o in db.outbox_for(S)] == [("sr", "pending", 1), ("seg", "pending", 1)]
    assert db.due_studies(now=1e9, stable_seconds=1, limit=10) == []


def test_instance_arriving_during_the_run_causes_one_rerun(db: StateDB) -> None:
    add(db, 1, 100.0)
    db.start_run(S, 200.0)
    add(db, 2, 205.0)
    assert db.get_study(S).status is StudyStatus.RUNNING
    assert finish(db, True, 210.0, [ExportItem("pacs", "/out/sr.dcm", "sr")]) is StudyStatus.RECEIVING
    assert db.outbox_for(S) == []  # stale results are not sent
    assert db.due_studies(now=220.0, stable_seconds=30, limit=5) == []
    (due,) = db.due_studies(now=236.0, stable_seconds=30, limit=5)
    assert due.n_instances == 2


def test_late_instance_after_done_reruns_and_supersedes_pending_exports(db: StateDB) -> None:
    add(db, 1, 100.0)
    db.start_run(S, 200.0)
    finish(db, True, 210.0, [ExportItem("pacs", "/out/sr.dcm", "sr")])
    first = db.outbox_for(S)[0]
    add(db, 2, 300.0)
    row = db.get_study(S)
    assert (row.status, row.attempts) == (StudyStatus.RECEIVING, 0)
    db.start_run(S, 400.0)
    finish(db, True, 410.0, [ExportItem("pacs", "/out/sr.dcm", "sr")])
    rows = db.outbox_for(S)
    assert [(o.id, o.run, o.status) for o in rows] == [(first.id, 1, "superseded"), (rows[1].id, 2, "pending")]
    assert db.get_study(S).runs == 2
    # Re-sending an identical instance afterwards does not trigger another run.
    add(db, 2, 500.0)
    assert db.get_study(S).status is StudyStatus.DONE


def test_failures_back_off_then_dead_letter(db: StateDB) -> None:
    add(db, 1, 100.0)
    db.start_run(S, 200.0)
    assert finish(db, False, 210.0, error="timeout: 900 s") is StudyStatus.RETRY_WAIT
    row = db.get_study(S)
    assert (row.next_attempt_at, row.last_error) == (220.0, "timeout: 900 s")
    assert db.due_studies(now=219.0, stable_seconds=1, limit=5) == []
    assert db.due_studies(now=220.0, stable_seconds=1, limit=5)[0].study_uid == S
    db.start_run(S, 220.0)
    assert finish(db, False, 221.0, error="x") is StudyStatus.RETRY_WAIT
    assert db.get_study(S).next_attempt_at == 241.0  # 10 * 2
    db.start_run(S, 241.0)
    assert finish(db, False, 242.0, error="x") is StudyStatus.DEAD
    assert db.due_studies(now=1e9, stable_seconds=1, limit=5) == []
    assert db.retry_dead(300.0) == (1, 0)
    row = db.get_study(S)
    assert (row.status, row.attempts) == (StudyStatus.QUEUED, 0)


def test_new_data_revives_a_dead_study(db: StateDB) -> None:
    add(db, 1, 100.0)
    db.start_run(S, 200.0)
    finish(db, False, 201.0, error="failed: no sagittal series", max_attempts=1)
    assert db.get_study(S).status is StudyStatus.DEAD
    add(db, 2, 300.0)
    row = db.get_study(S)
    assert (row.status, row.attempts) == (StudyStatus.RECEIVING, 0)


def test_outbox_delivery_retry_and_dead(db: StateDB) -> None:
    add(db, 1, 100.0)
    db.start_run(S, 200.0)
    finish(db, True, 210.0, [ExportItem("pacs", "/out/sr.dcm", "sr"), ExportItem("web", "/out/sr.dcm", "sr")])
    a, b = db.due_exports(now=210.0)
    kw = dict(max_attempts=2, retry_backoff_s=5.0, retry_backoff_max_s=100.0)
    db.export_done({a.id: None, b.id: "association rejected"}, now=211.0, **kw)
    a, b = db.outbox_for(S)
    assert (a.status, a.attempts, a.delivered) == (OutboxStatus.DELIVERED, 1, 211.0)
    assert (b.status, b.attempts, b.next_attempt_at, b.last_error) == ("pending", 1, 216.0, "association rejected")
    assert db.due_exports(now=215.0) == []
    db.export_done({b.id: "still down"}, now=216.0, **kw)
    assert db.outbox_for(S)[1].status is OutboxStatus.DEAD
    assert db.export_counts() == {S: {"delivered": 1, "dead": 1}}
    assert db.retry_study(S, 300.0) == (False, 1)
    assert db.due_exports(now=300.0)[0].id == b.id


def test_recover_requeues_interrupted_runs_and_restarts_the_stability_clock(db: StateDB) -> None:
    add(db, 1, 100.0)
    add(db, 2, 100.0, study="1.2.4")
    db.start_run(S, 200.0)
    assert db.recover(now=500.0) == {"requeued": 1, "receiving": 1}
    assert db.get_study(S).status is StudyStatus.QUEUED
    assert db.get_study(S).attempts == 1  # a crash during the run counts as an attempt
    assert db.get_study("1.2.4").stable_since == 500.0
    assert [r.study_uid for r in db.due_studies(now=501.0, stable_seconds=30, limit=5)] == [S]


def test_requeue_after_our_own_shutdown_does_not_use_an_attempt(db: StateDB) -> None:
    add(db, 1, 100.0)
    db.start_run(S, 200.0)
    assert db.requeue(S, 201.0)
    row = db.get_study(S)
    assert (row.status, row.attempts) == (StudyStatus.QUEUED, 0)


def test_forget_missing_and_delete(db: StateDB) -> None:
    add(db, 1, 100.0)
    add(db, 2, 100.0)
    db.forget_missing(["/spool/1.2.3/1.2.3.4/1.2.3.4.1.dcm"], now=200.0)
    assert db.get_study(S).n_instances == 1
    assert db.delete_study(S) and db.get_study(S) is None and db.known_paths() == set()


def test_second_connection_sees_commits(tmp_path: Path) -> None:
    a = StateDB(tmp_path / "s.sqlite3")
    b = StateDB(tmp_path / "s.sqlite3")
    add(a, 1, 100.0)
    assert b.get_study(S).n_instances == 1
    b.retry_dead(1.0)
    a.close()
    b.close()
