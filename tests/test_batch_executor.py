"""The batch executors' isolation: timeouts, killed workers, memory guard, cancellation, dying with the parent.

The task functions are fakes (tests/batch_fakes.py) so that these tests do not run the pipeline.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import os
import pickle
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
from batch_fakes import fake

from pipeline.batch import LocalExecutor, Status, StudyTask, make_executor, run_task, summarize_report
from pipeline.batch.executor import Executor
from pipeline.batch.task import summarize_report_json
from pipeline.levels import Level
from pipeline.report.outputs import OutputKind
from pipeline.segment import parse_anchor
from tests.report_fixtures import STUDY_UID, make_case


def _task(key: str, tmp_path: Path, **kw: object) -> StudyTask:
    return StudyTask(tmp_path / "in", tmp_path / "out" / key, key=key, **kw)  # type: ignore[arg-type]


@pytest.mark.slow
def test_timeout_kill_memory_and_bug_each_get_their_outcome_and_the_pool_carries_on(tmp_path):
    with LocalExecutor(2, fn=fake, poll_interval_s=0.1) as ex:
        assert isinstance(ex, Executor)
        futs = {
            key: ex.submit(_task(key, tmp_path, timeout_s=1.0, memory_limit_mb=250))
            for key in ("ok1", "sleep", "kill", "memory", "raise", "ok2", "ok3")
        }
        out = {k: f.result(timeout=60) for k, f in futs.items()}
    assert out["ok1"].status == Status.OK and out["ok2"].ok and out["ok3"].ok
    assert out["sleep"].status == "timeout" and "time limit of 1 s" in out["sleep"].error
    assert out["sleep"].runtime_s >= 1.0
    assert out["kill"].status == "crashed" and "SIGKILL" in out["kill"].error
    assert out["memory"].status == "crashed" and "over the limit of 250 MB" in out["memory"].error
    assert out["raise"].status == "crashed" and "RuntimeError" in out["raise"].error
    for o in out.values():
        assert o.error is None or "\n" not in o.error


def test_workers_are_reused_and_use_one_thread(tmp_path):
    with LocalExecutor(1, fn=fake) as ex:
        a = ex.submit(_task("threads-a", tmp_path)).result(timeout=60)
        b = ex.submit(_task("threads-b", tmp_path)).result(timeout=60)
    assert a.summary["pid"] == b.summary["pid"] != os.getpid()
    assert a.summary["omp"] == "1" and a.summary["itk"] == 1
    assert a.worker_peak_rss_mb and a.worker_peak_rss_mb > 10


def test_cancelled_and_killed_studies_resolve_at_once(tmp_path):
    ex = LocalExecutor(1, fn=fake)
    running = ex.submit(_task("sleep", tmp_path, timeout_s=None))
    queued = [ex.submit(_task(f"q{i}", tmp_path)) for i in range(3)]
    assert queued[0].cancel()
    done, _ = cf.wait([queued[0]], timeout=2)  # a cancelled future counts as done without the executor's help
    assert done == {queued[0]}
    t0 = time.monotonic()
    while running.running() is False and time.monotonic() - t0 < 30:
        time.sleep(0.05)
    ex.shutdown(wait=True, kill_running=True)
    assert time.monotonic() - t0 < 40
    assert running.result().status == Status.INTERRUPTED
    assert all(f.cancelled() for f in queued)
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.submit(_task("late", tmp_path))


def test_worker_processes_die_with_their_parent(tmp_path):
    """kill -9 of the batch process must not leave workers running studies on their own."""
    script = textwrap.dedent(
        f"""
        import sys, time
        sys.path[:0] = {[p for p in sys.path if p]!r}
        from pathlib import Path
        from batch_fakes import fake
        from pipeline.batch import LocalExecutor, StudyTask
        ex = LocalExecutor(1, fn=fake)
        f = ex.submit(StudyTask(Path("in"), Path("out"), key="threads"))
        print(f.result().summary["pid"], flush=True)
        ex.submit(StudyTask(Path("in"), Path("out"), key="sleep", timeout_s=None))
        time.sleep(120)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        worker_pid = int(proc.stdout.readline())  # type: ignore[union-attr]
        assert psutil.pid_exists(worker_pid)
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if not psutil.pid_exists(worker_pid) or psutil.Process(worker_pid).status() == psutil.STATUS_ZOMBIE:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"worker {worker_pid} outlived its parent")


def test_run_task_turns_errors_into_one_line_outcomes(tmp_path):
    missing = run_task(StudyTask(tmp_path / "missing", tmp_path / "out", outputs=frozenset({OutputKind.JSON})))
    assert missing.status == "failed" and "no such file or folder" in missing.error
    assert not (tmp_path / "out").exists()
    other_config = run_task(StudyTask(tmp_path, tmp_path / "out", config_sha256="0" * 64))
    assert other_config.status == "failed" and "configuration" in other_config.error


def test_a_task_carries_its_anchor_parsed_and_pickles(tmp_path):
    task = StudyTask(tmp_path, tmp_path / "out", anchor=parse_anchor("L3=z:-120.5"))
    again = pickle.loads(pickle.dumps(task))
    assert again == task and again.anchor.level is Level.L3 and again.anchor.position == -120.5


def test_make_executor_gives_a_local_pool_by_default():
    ex = make_executor(workers=2)
    try:
        assert isinstance(ex, LocalExecutor) and ex.capacity == 2
    finally:
        ex.shutdown()


def test_summarize_report_headline(tmp_path):
    report = make_case(tmp_path).report
    s = summarize_report(report)
    assert s["study_uid"] == STUDY_UID and s["levels"] == ["L3", "L4", "L5", "S1"]
    assert s["fractures"] == [
        {"level": "L4", "genant_grade": 2, "height_loss_pct": 41.7, "morphology": "wedge", "grade_state": "definite"}
    ]
    assert s["edema_levels"] == ["L4"] and s["edema_unknown_levels"] == ["L5"]  # the sacrum is not counted
    assert s["candidate_levels"] == ["L4"] and s["indeterminate_levels"] == [] == s["contraindicated_levels"]
    assert s["decision"] == report.eligibility.summary and s["n_warnings"] == 1
    assert s["timings_ms"] == dict(report.timings_ms)
    # the same headline from the report.json written to disk (batch --resume)
    assert summarize_report_json(json.loads(json.dumps(report.to_json()))) == s


def test_summarize_report_json_of_a_report_without_grade_states():
    report = {
        "study": {"study_instance_uid": "1.2.3"},
        "vertebrae": [
            {"label": 1, "level": "T12", "genant_grade": 0, "stir": {"edema": False}},
            {
                "label": 2,
                "level": "L1",
                "genant_grade": 2,
                "height_loss_pct": 31.0,
                "morphology": "wedge",
                "stir": {"edema": True},
            },
            {"label": 3, "level": None, "genant_grade": None, "stir": {"edema": None}},
            {"label": 4, "level": "S1", "is_sacrum": True, "genant_grade": None, "stir": None},
        ],
        "eligibility": {
            "summary": "Candidate: L1.",
            "levels": [
                {"name": "T12", "decision": "not_indicated"},
                {"name": "L1", "decision": "candidate_with_cautions"},
                {"name": "vertebra #3", "decision": "indeterminate"},
            ],
        },
        "warnings": ["w"],
        "timings_ms": {"total": 1500.0},
    }
    s = summarize_report_json(report)
    assert s["study_uid"] == "1.2.3"
    assert s["levels"] == ["T12", "L1", "?3", "S1"]
    assert s["fractures"] == [
        {"level": "L1", "genant_grade": 2, "height_loss_pct": 31.0, "morphology": "wedge", "grade_state": "definite"}
    ]
    assert s["edema_levels"] == ["L1"] and s["edema_unknown_levels"] == ["?3"]
    assert s["candidate_levels"] == ["L1"] and s["indeterminate_levels"] == ["vertebra #3"]
    assert s["decision"] == "Candidate: L1." and s["n_warnings"] == 1
