"""Durable writes (pipeline.fsio): complete or absent, restricted, temporaries of killed writers cleaned."""

from __future__ import annotations

import os
import stat

import pytest

from pipeline.batch.summary import INDEX_HTML, SUMMARY_CSV, remove_stale_summary_temporaries
from pipeline.fsio import FILE_MODE, atomic_write, fsync_tree, remove_stale_temporaries


def test_atomic_write_replaces_the_file_whole_with_restricted_mode_whatever_the_umask(tmp_path):
    target = tmp_path / "report.json"
    target.write_text("old")
    old_umask = os.umask(0o000)
    try:
        atomic_write(target, "new content é")
    finally:
        os.umask(old_umask)
    assert target.read_text(encoding="utf-8") == "new content é"
    assert stat.S_IMODE(target.stat().st_mode) == FILE_MODE
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]  # no temporary left


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "summary.csv"
    target.write_bytes(b"previous")

    def disk_full(*_args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(OSError):
        atomic_write(target, b"x" * 10_000)
    assert target.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.csv"]


def test_stale_temporaries_of_the_named_files_only_are_removed(tmp_path):
    (tmp_path / ".summary.csv.tmp-123").write_text("torn")
    (tmp_path / ".summary.csv.tmp-123-456-789").write_text("torn")
    (tmp_path / ".other.txt.tmp-1").write_text("not ours")
    (tmp_path / "summary.csv").write_text("kept")
    removed = remove_stale_temporaries(tmp_path, ["summary.csv"])
    assert sorted(p.name for p in removed) == [".summary.csv.tmp-123", ".summary.csv.tmp-123-456-789"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.txt.tmp-1", "summary.csv"]


def test_a_killed_batch_leaves_no_summary_temporary_behind_index_html_included(tmp_path):
    # the batch's own clean-up knew summary.csv / .json only; index.html (added later) was never cleaned
    for name in (SUMMARY_CSV, INDEX_HTML):
        (tmp_path / f".{name}.tmp-4242").write_text("torn")
    remove_stale_summary_temporaries(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_fsync_tree_accepts_nested_folders(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "f.txt").write_text("x")
    fsync_tree(tmp_path)  # no error on folders, files and the root
