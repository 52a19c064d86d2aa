"""Batch progress display and the end-of-batch screen (no studies are run)."""

from __future__ import annotations

import io
import logging
from pathlib import Path

from pipeline.batch.progress import Progress
from pipeline.batch.summary import format_end_screen, make_row


def test_terminal_bar_counts_failures_and_shows_an_eta():
    stream = io.StringIO()
    with Progress(4, already_done=1, stream=stream, tty=True) as p:
        p.running = 2
        p.study_done("site/a", "ok", 3.0)
        p.study_done("site/b", "timeout", 900.0, "stopped after the time limit of 900 s")
        text = stream.getvalue()
        assert "\r" in text and "3/4" in text and "failed 1" in text and "running 2" in text
        assert "ETA --" not in text.rsplit("\r", 1)[-1]
        assert "[3/4] timeout site/b (900.0 s): stopped after" in text  # a failure gets its own line
        assert "site/a" not in text  # successes only move the bar
    assert stream.getvalue().endswith("\n")


def test_log_records_clear_the_bar_first():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        with Progress(2, stream=stream, tty=True) as p:
            p.draw(force=True)
            logging.getLogger("pipeline.test").warning("a warning while the bar is shown")
    finally:
        root.removeHandler(handler)
    text = stream.getvalue()
    before, _, _ = text.partition("a warning")
    assert before.endswith("\r\x1b[2K")


def test_without_a_terminal_each_study_is_one_log_line(caplog):
    stream = io.StringIO()
    with caplog.at_level(logging.INFO, logger="pipeline.batch"), Progress(2, stream=stream, tty=False) as p:
        p.study_done("a", "ok", 2.5)
        p.study_done("b", "failed", 0.1, "no usable sagittal series")
    assert stream.getvalue() == ""
    assert [r.getMessage() for r in caplog.records] == [
        "[1/2] ok      a (2.5 s)  ETA 0:00",
        "[2/2] failed  b (0.1 s): no usable sagittal series",
    ]
    assert [r.levelname for r in caplog.records] == ["INFO", "WARNING"]


def test_end_screen_lists_what_was_not_assessed():
    rows = [
        make_row(study="a", folder="a", study_uid="1.2", status="ok", summary={"fractures": [{"level": "L1"}]}),
        make_row(study="b", folder="b", study_uid="1.3", status="crashed", error="killed by SIGKILL"),
        make_row(study="c", folder="c", study_uid="1.4", status="pending"),
    ]
    text = format_end_screen(
        rows,
        root=Path("/in"),
        out_root=Path("/out"),
        elapsed_s=75,
        workers="2 worker processes",
        n_skipped_files=3,
        interrupted=True,
    )
    assert "INTERRUPTED" in text and "1:15" in text
    assert "crashed 1, ok 1, pending 1" in text
    assert "fractures (Genant >= 1) in 1" in text
    assert "b" in text and "killed by SIGKILL" in text
    assert "--resume" in text and "/out/summary.csv" in text
    assert len(text.splitlines()) < 25
