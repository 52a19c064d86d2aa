"""Durability of a batch: kill -9 midway then --resume processes every study exactly once; ledger, lock, leftovers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest

from pipeline.batch.ledger import Ledger, batch_lock
from pipeline.cli import main
from pipeline.errors import ConfigError
from pipeline.run import JOB_FILE, is_temporary_output, remove_stale_temporaries

REPO = Path(__file__).resolve().parent.parent


def _study_records(out: Path) -> list[dict]:
    return [r for r in Ledger(out).read() if r.get("event") == "study"]


@pytest.mark.slow
def test_kill_9_midway_then_resume_processes_each_study_exactly_once(tmp_path, tiny_study):
    root, out = tmp_path / "root", tmp_path / "out"
    for i in range(5):
        tiny_study(50 + i, root / f"s{i}")
    cmd = [sys.executable, "-m", "pipeline", "batch", str(root), "--out", str(out), "-j", "2", "--outputs", "json"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and proc.poll() is None:
            if (out / "ledger.jsonl").exists() and _study_records(out):
                break
            time.sleep(0.1)
        workers = psutil.Process(proc.pid).children()
    finally:
        proc.kill()  # kill -9: no cleanup of any kind in the batch process
        proc.wait()
    assert proc.returncode == -9
    # A worker killed between writing its job file and renaming its temporary folder leaves ".sN.tmp-..." with a job
    # file inside: that study is unfinished (resume removes the folder and redoes the study).
    finished_before = {p.parent.name for p in out.glob(f"*/{JOB_FILE}") if not is_temporary_output(p.parent)}
    assert 1 <= len(finished_before) < 5, "the batch should have been killed midway"
    gone = psutil.wait_procs(workers, timeout=10)[1]
    assert not gone, f"worker processes outlived the killed batch: {gone}"

    assert main(["batch", str(root), "--out", str(out), "-j", "2", "--outputs", "json", "--resume"]) == 0

    ok = Counter(r["key"] for r in _study_records(out) if r["status"] == "ok")
    rerun = {r["key"] for r in Ledger(out).read()[_last_start(out) :] if r.get("event") == "study"}
    assert rerun == {f"s{i}" for i in range(5)} - finished_before  # nothing finished was redone
    assert all(n == 1 for n in ok.values()), ok  # nothing was done twice
    assert set(ok) | finished_before == {f"s{i}" for i in range(5)}
    summary = json.loads((out / "summary.json").read_text())
    assert [r["status"] for r in summary["studies"]] == ["ok"] * 5
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == [f"s{i}" for i in range(5)]
    assert not [p for p in out.rglob("*") if is_temporary_output(p) or ".tmp-" in p.name]


def _last_start(out: Path) -> int:
    records = Ledger(out).read()
    return max(i for i, r in enumerate(records) if r.get("event") == "start")


def test_ledger_survives_a_torn_last_line(tmp_path):
    ledger = Ledger(tmp_path)
    ledger.append({"event": "study", "key": "a", "status": "ok"})
    with open(ledger.path, "ab") as fh:
        fh.write(b'{"event": "study", "key": "b", "sta')  # power lost mid-write
    ledger.append({"event": "study", "key": "c", "status": "failed"})
    records = ledger.read()
    assert [r["key"] for r in records] == ["a", "c"]
    assert set(ledger.last_study_records()) == {"a", "c"}


def test_only_one_batch_at_a_time_per_output_folder(tmp_path):
    with batch_lock(tmp_path), pytest.raises(ConfigError, match="another batch"), batch_lock(tmp_path):
        pass
    with batch_lock(tmp_path):  # released when the holder ends
        pass


def test_leftovers_of_killed_writes_are_recognised_and_removed(tmp_path):
    (tmp_path / "s1").mkdir()
    for name in (".s1.tmp-123-456", ".s1.old-123-789"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "report.json").write_text("{")
    (tmp_path / ".hidden-study").mkdir()
    removed = remove_stale_temporaries(tmp_path)
    assert sorted(p.name for p in removed) == [".s1.old-123-789", ".s1.tmp-123-456"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hidden-study", "s1"]
