"""The durable spool: UID checks, atomic writes, duplicates, quarantine, scanning."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline.errors import InputError
from pipeline.listener.spool import InstanceKey, Spool, atomic_write, clean_uid

KEY = InstanceKey("1.2.3", "1.2.3.4", "1.2.3.4.5", "1.2.840.10008.5.1.4.1.1.4")


@pytest.mark.parametrize("value", ["1.2.3", "1.2.840.10008.5.1.4.1.1.4", "1.02.3", "1.2.3\0", " 1.2.3 ", "9"])
def test_clean_uid_accepts_uids(value: str) -> None:
    assert clean_uid(value, "UID") == value.strip(" \0")


@pytest.mark.parametrize(
    "value", ["", None, "../../etc/passwd", "1.2.3/../4", "1..2", ".1.2", "1.2.", "1.2.a", "1" * 65, "1.2\\3", "1 2"]
)
def test_clean_uid_rejects_non_uids(value: object) -> None:
    with pytest.raises(InputError):
        clean_uid(value, "SOPInstanceUID")


def test_store_is_atomic_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    out = spool.store(KEY, b"DICM-data")
    assert out.path == spool.root / "studies" / "1.2.3" / "1.2.3.4" / "1.2.3.4.5.dcm"
    assert out.path.read_bytes() == b"DICM-data"
    assert (out.existed, out.same_content, out.quarantined) == (False, False, False)
    assert [p.name for p in out.path.parent.iterdir()] == ["1.2.3.4.5.dcm"]
    assert list(spool.scan()) == [("1.2.3", "1.2.3.4", "1.2.3.4.5", out.path)]


def test_duplicate_replaces_and_reports_whether_content_changed(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.store(KEY, b"one")
    same = spool.store(KEY, b"one")
    assert (same.existed, same.same_content) == (True, True)
    changed = spool.store(KEY, b"two")
    assert (changed.existed, changed.same_content) == (True, False)
    assert changed.path.read_bytes() == b"two"
    assert len(list(spool.scan())) == 1


def test_quarantine_keeps_file_and_reason_out_of_the_study(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    q = spool.store(KEY, b"bad", quarantine_reason="no Pixel Data")
    assert q.quarantined and q.path.parent == spool.quarantine_dir("1.2.3")
    assert q.path.with_suffix(".reason.txt").read_text().strip() == "no Pixel Data"
    assert list(spool.scan()) == []


def test_failed_write_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spool = Spool(tmp_path)

    def no_space(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(OSError, match="No space"):
        spool.store(KEY, b"data")
    monkeypatch.undo()
    assert not any(p.is_file() for p in (tmp_path / "studies").rglob("*"))


def test_scan_skips_temporaries_and_foreign_names_and_cleanup_removes_temporaries(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    good = spool.store(KEY, b"x").path
    (good.parent / ".1.2.3.4.6.dcm.tmp-1-2-3").write_bytes(b"half")
    (good.parent / "notes.txt").write_text("x")
    (good.parent / "evil name.dcm").write_bytes(b"x")
    assert [s[3] for s in spool.scan()] == [good]
    assert spool.remove_temp_files() == 1
    assert not (good.parent / ".1.2.3.4.6.dcm.tmp-1-2-3").exists()


def test_atomic_write_replaces_existing(tmp_path: Path) -> None:
    p = tmp_path / "f.bin"
    atomic_write(p, b"a")
    atomic_write(p, b"bb")
    assert p.read_bytes() == b"bb"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["f.bin"]


def test_remove_study(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.store(KEY, b"x")
    spool.store(KEY, b"y", quarantine_reason="r")
    spool.results_dir("1.2.3").mkdir()
    spool.remove_study("1.2.3")
    assert not spool.study_dir("1.2.3").exists() and not spool.results_dir("1.2.3").exists()
    assert not spool.quarantine_dir("1.2.3").exists()


def test_one_listener_per_spool(tmp_path: Path) -> None:
    from pipeline.errors import ConfigError

    a, b = Spool(tmp_path), Spool(tmp_path)
    a.lock()
    with pytest.raises(ConfigError, match=f"in use by another listener \\(pid {os.getpid()}\\)"):
        b.lock()
    a.unlock()
    b.lock()
    b.unlock()


def test_spool_and_state_database_are_not_world_readable(tmp_path: Path) -> None:
    """Issue 19 item 6: under umask 022 the state database was 0644 and the spool's folders 0755."""
    import os
    import stat

    from pipeline.listener.state import StateDB

    old = os.umask(0o022)
    try:
        spool = Spool(tmp_path / "spool")
        db = StateDB(spool.db_path)
        db.close()
        stored = spool.store(KEY, b"data")
    finally:
        os.umask(old)
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
    assert mode(spool.db_path) == 0o640 and mode(stored.path) == 0o640
    for d in (
        spool.root,
        spool.root / "studies",
        spool.root / "results",
        stored.path.parent,
        stored.path.parent.parent,
    ):
        assert mode(d) == 0o750, d


def test_incoming_file_is_hashed_capped_and_moved_into_place(tmp_path: Path) -> None:
    import hashlib

    spool = Spool(tmp_path)
    inc = spool.incoming(max_bytes=10)
    assert inc.path.parent == spool.root / "incoming" and inc.path.name.startswith(".")
    inc.write(b"DICM")
    inc.file.flush()
    inc.write(memoryview(b"-data"))
    assert (inc.ok, inc.size_bytes, inc.sha256) == (True, 9, hashlib.sha256(b"DICM-data").hexdigest())
    out = spool.store_received(KEY, inc)
    assert out.path.read_bytes() == b"DICM-data" and out.sha256 == inc.sha256 and out.size_bytes == 9
    assert not inc.path.exists() and list((spool.root / "incoming").iterdir()) == []
    assert out.path.stat().st_mode & 0o777 == 0o640
    inc.discard()  # after the move: nothing to delete, no error
    assert out.path.is_file()

    big = spool.incoming(max_bytes=10)
    big.write(b"x" * 8)
    big.write(b"x" * 8)  # over the cap: the file is emptied at once and the rest only counted
    assert (big.too_large, big.size_bytes, big.path.stat().st_size) == (True, 16, 0)
    with pytest.raises(OSError, match="larger than 10 bytes"):
        spool.store_received(KEY, big)
    big.discard()
    assert list((spool.root / "incoming").iterdir()) == []


def test_incoming_file_keeps_a_write_error_instead_of_raising(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.listener.spool import IncomingFile

    def no_space(self: IncomingFile, data: memoryview) -> int:
        raise OSError(28, "No space left on device")

    spool = Spool(tmp_path)
    inc = spool.incoming(max_bytes=1 << 20)
    monkeypatch.setattr(IncomingFile, "_write_chunk", no_space)
    assert inc.write(b"abc") == 3 and inc.write(b"def") == 3  # pynetdicom's network thread never sees it
    assert inc.error is not None and inc.error.errno == 28 and inc.size_bytes == 6
    with pytest.raises(OSError, match="No space"):
        spool.store_received(KEY, inc)
    inc.discard()
    assert list(spool.scan()) == []


def test_receive_file_copies_a_foreign_file_and_refuses_a_large_one(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    src = tmp_path / "pynetdicom.dcm"
    src.write_bytes(b"y" * 3000)
    inc = spool.receive_file(src, max_bytes=4000)
    assert inc.ok and spool.store_received(KEY, inc).path.read_bytes() == b"y" * 3000
    big = spool.receive_file(src, max_bytes=1000)
    assert big.too_large and big.size_bytes == 3000
    big.discard()


def test_partial_incoming_files_are_removed_at_start_up(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    inc = spool.incoming(max_bytes=100)
    inc.write(b"half a data set")
    inc.close()  # the process died here
    assert spool.remove_temp_files() == 1 and not inc.path.exists()
