"""The listener's scheduler (pipeline/listener/service.py) under faults: which failed runs are retried, and the
free-space guard before a run starts (issue 19 item 2).

A real listener (SCP on a free localhost port) with a stand-in executor that answers each study's runs with
scripted outcomes, so the scheduling rules are tested without running the pipeline.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from pipeline.batch import Status, TaskOutcome
from pipeline.listener import Listener, StudyStatus
from tests.dicom_factory import SeriesSpec, write_series
from tests.listener_helpers import listener_config, store_files

pytestmark = pytest.mark.network


class ScriptedExecutor:
    """``submit(task)`` resolves at once with the next scripted ``(status, error, error_kind)`` of that study."""

    def __init__(self, script: dict[str, list[tuple[str, str | None, str | None]]]) -> None:
        self.script = {k: list(v) for k, v in script.items()}
        self.calls: list[str] = []

    def submit(self, task: Any) -> Future[TaskOutcome]:
        self.calls.append(task.study_uid)
        status, error, kind = self.script[task.study_uid].pop(0)
        fut: Future[TaskOutcome] = Future()
        fut.set_result(TaskOutcome(task, status, error, 0.1, study_uid=task.study_uid, error_kind=kind))
        return fut

    def shutdown(self, wait: bool = True, **kw: bool) -> None:
        pass


def wait_for(predicate: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def _studies(root: Path, names: list[str]) -> dict[str, tuple[str, list[Path]]]:
    out = {}
    for i, name in enumerate(names):
        spec = SeriesSpec(n_slices=3, seed=i)
        out[name] = (spec.study_uid, write_series(root / name, spec))
    return out


FINAL = (StudyStatus.DONE, StudyStatus.DEAD)


def test_failed_runs_are_retried_by_kind(tmp_path: Path, listeners: list[Listener]) -> None:
    """Before: every `failed` run was dead after one attempt, so a disk-full run stayed dead after space returned.
    Now: resource errors are retried with back-off, a bug at least once (and logged as one), bad data never."""
    studies = _studies(tmp_path / "in", ["disk", "data", "bug"])
    uid = {name: u for name, (u, _) in studies.items()}
    enospc = "OSError: [Errno 28] No space left on device"
    executor = ScriptedExecutor(
        {
            uid["disk"]: [
                (Status.FAILED, enospc, "resource"),
                (Status.FAILED, enospc, "resource"),
                (Status.OK, None, None),
            ],
            uid["data"]: [(Status.FAILED, "no usable sagittal series", "input")],
            uid["bug"]: [(Status.FAILED, "KeyError: 'x'", "bug"), (Status.FAILED, "KeyError: 'x'", "bug")],
        }
    )
    cfg = listener_config(tmp_path / "spool", processing={"retry_backoff_s": 0.0, "max_attempts": 3})
    listeners.append(Listener(cfg, executor=executor).start())
    for _uid, files in studies.values():
        assert set(store_files(listeners[0].port, files)) == {0}
    state = listeners[0].state
    rows = wait_for(
        lambda: (
            (r := {n: state.get_study(u) for n, u in uid.items()}) and all(x.status in FINAL for x in r.values()) and r
        ),
        30,
        "all three studies to finish",
    )
    assert (rows["disk"].status, rows["disk"].attempts) == (StudyStatus.DONE, 3)
    assert (rows["data"].status, rows["data"].attempts) == (StudyStatus.DEAD, 1)
    assert (rows["bug"].status, rows["bug"].attempts) == (StudyStatus.DEAD, 2)
    assert rows["bug"].last_error.startswith("failed (bug): KeyError")
    assert sorted(executor.calls.count(u) for u in uid.values()) == [1, 2, 3]


def test_no_run_starts_while_the_spool_is_short_of_space(
    tmp_path: Path, listeners: list[Listener], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The free-space guard before a run: a complete study waits (it does not fail) until space is back."""
    ((study_uid, files),) = _studies(tmp_path / "in", ["a"]).values()
    executor = ScriptedExecutor({study_uid: [(Status.OK, None, None)]})
    cfg = listener_config(tmp_path / "spool", storage={"min_free_mb": 10})
    lst = Listener(cfg, executor=executor).start()
    listeners.append(lst)
    assert set(store_files(lst.port, files)) == {0}
    monkeypatch.setattr(lst.spool, "free_mb", lambda: 1.0)  # the disk filled up after reception
    time.sleep(cfg.trigger.stable_seconds + 1.0)  # stable, but must not start
    assert executor.calls == [] and lst.state.get_study(study_uid).status is StudyStatus.RECEIVING
    monkeypatch.setattr(lst.spool, "free_mb", lambda: 1e6)
    wait_for(lambda: lst.state.get_study(study_uid).status is StudyStatus.DONE, 20, "the run once space is back")
    assert executor.calls == [study_uid]


def test_an_outcome_that_cannot_be_recorded_is_recorded_once_the_disk_has_space(
    tmp_path: Path, listeners: list[Listener], monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    """Found by benchmarks/faults.py: with the disk completely full the state database cannot be written either.
    The finished run's outcome was dropped before it was recorded, so the study stayed 'running' (never retried,
    never exported) until a restart. Now the outcome is kept and recorded once the database can be written."""
    import sqlite3

    ((study_uid, files),) = _studies(tmp_path / "in", ["a"]).values()
    executor = ScriptedExecutor({study_uid: [(Status.OK, None, None)]})
    lst = Listener(listener_config(tmp_path / "spool"), executor=executor).start()
    listeners.append(lst)
    real = lst.state.finish_run
    failures = []

    def disk_full(*a: Any, **k: Any) -> Any:
        if len(failures) < 3:
            failures.append(1)
            raise sqlite3.OperationalError("database or disk is full")
        return real(*a, **k)

    monkeypatch.setattr(lst.state, "finish_run", disk_full)
    with caplog.at_level("ERROR", logger="pipeline.listener.service"):
        assert set(store_files(lst.port, files)) == {0}
        wait_for(lambda: lst.state.get_study(study_uid).status is StudyStatus.DONE, 20, "the outcome to be recorded")
    assert executor.calls == [study_uid] and len(failures) == 3
    assert sum("cannot be recorded yet" in r.getMessage() for r in caplog.records) == 1  # once, not every poll


def test_a_state_database_that_cannot_be_written_is_logged_once_not_every_poll(
    tmp_path: Path, listeners: list[Listener], monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    """Found by benchmarks/faults.py: with the disk full the scheduler logged a traceback at every poll (2879 in
    10 minutes, into a log that may be on the same full disk). Now one line, then the study runs once it can."""
    import sqlite3

    ((study_uid, files),) = _studies(tmp_path / "in", ["a"]).values()
    executor = ScriptedExecutor({study_uid: [(Status.OK, None, None)]})
    lst = Listener(listener_config(tmp_path / "spool", storage={"min_free_mb": 0}), executor=executor).start()
    listeners.append(lst)
    real = lst.state.start_run
    deadline: list[float] = []

    def disk_full(*a: Any, **k: Any) -> Any:
        if time.monotonic() < deadline[0]:
            raise sqlite3.OperationalError("database or disk is full")
        return real(*a, **k)

    with caplog.at_level("INFO", logger="pipeline.listener.service"):
        deadline.append(time.monotonic() + 1e6)
        monkeypatch.setattr(lst.state, "start_run", disk_full)
        assert set(store_files(lst.port, files)) == {0}
        time.sleep(lst.cfg.trigger.stable_seconds + 2.0)  # about 20 polls that cannot write
        deadline[0] = time.monotonic()
        wait_for(lambda: lst.state.get_study(study_uid).status is StudyStatus.DONE, 20, "the run once it can write")
    messages = [r.getMessage() for r in caplog.records]
    assert sum("cannot write the state database" in m for m in messages) == 1, messages
    assert not any("unexpected error" in m for m in messages)
    assert any("state database written again" in m for m in messages)
