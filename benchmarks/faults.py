"""PACS listener under faults (issue 19): kill -9, a full disk, load, fuzzed network input, one huge instance.

    python benchmarks/faults.py                                   # everything (about 6-10 minutes on 2 cores)
    python benchmarks/faults.py --only kill,fuzz --fuzz-seconds 30
    python benchmarks/faults.py --only memory --memory-before-repo ../main-before   # memory: this code vs another

Every case runs real listener processes (``python -m pipeline listen``, real batch workers running the pipeline)
against pynetdicom senders and a pynetdicom Storage SCP as the destination of the results, all on loopback.
Studies are one small synthetic phantom (3 sagittal series of 7 slices, 160 x 160) cloned with new UIDs.

1. kill -9 at five moments (one study each): in the middle of a C-STORE; after every instance was acknowledged,
   before the study was processed; while it is processed; while its results are being sent (slow destination);
   while its export waits for a retry (destination down). Then the listener is restarted (and the sender resends
   what was not acknowledged, as a PACS does). Figures: instances sent / acknowledged / acknowledged and in the
   spool byte for byte after the restart (lost = acknowledged - stored), runs and attempts of the study,
   results delivered.
2. A full disk (the spool on a small tmpfs, mounted in a user + mount namespace so that no root is needed; skipped
   with a message where that is not allowed): at reception (statuses, refused associations, nothing acknowledged
   lost, the sender's retry stored once space is back), before a run (the free-space guard: the study waits) and
   during a run (ENOSPC while writing results: retried with back-off once space is back; with 0 bytes free the
   state database cannot be written either).
3. 20 studies over 4 concurrent associations, processed by 2 workers and exported: nothing lost, each run once.
4. Fuzzing the network input for a bounded time (malformed and truncated PDUs, random bytes after a valid
   A-ASSOCIATE-RQ, mutated C-STORE commands, truncated and random data sets, transfers cut off half-way); then
   the listener must still answer C-ECHO and store a valid instance, with no thread or temporary file left over.
5. Resident memory of the listener receiving one large instance (default 256 MiB), and refusing one over
   ``storage.max_instance_mb``; ``--memory-before-repo`` measures another checkout's listener the same way.

Nothing is asserted: the table says what happened (a loss is printed as such). The machine load is printed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
from pydicom import dcmread  # noqa: E402
from pydicom.uid import generate_uid  # noqa: E402
from pynetdicom import AE, _config  # noqa: E402
from pynetdicom.dsutils import split_dataset  # noqa: E402

from tests.listener_helpers import (  # noqa: E402
    TEST_AET,
    ListenerProcess,
    StorePeer,
    associate_rq_pdu,
    c_echo_rq,
    c_store_rq,
    echo_ok,
    free_port,
    pdata_pdu,
    read_pdu,
    wait_for,
)

SECTIONS = ("kill", "disk", "load", "fuzz", "memory")
STABLE_S = 2.0
MIB = 1024 * 1024


@dataclass
class Row:
    section: str
    case: str
    figures: str
    verdict: str


# --------------------------------------------------------------------------- studies and senders
class Studies:
    """One rendered phantom study, cloned with new Study / Series / SOP Instance UIDs for every use."""

    def __init__(self, template: Path) -> None:
        self.template = template
        if not any(template.rglob("*.dcm")):
            from pipeline.tools.phantom import PhantomSpec, render_phantom, write_study

            spec = PhantomSpec(seed=7, rows=160, cols=160, pixel_spacing_mm=2.0, n_slices=7)
            write_study(render_phantom(spec), template)
        self.files = sorted(template.rglob("*.dcm"))

    def clone(self, dest: Path) -> tuple[str, list[Path]]:
        study = generate_uid()
        series: dict[str, str] = {}
        frame = generate_uid()
        out = []
        for f in self.files:
            ds = dcmread(f)
            ds.StudyInstanceUID = study
            ds.SeriesInstanceUID = series.setdefault(str(ds.SeriesInstanceUID), generate_uid())
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            if "FrameOfReferenceUID" in ds:
                ds.FrameOfReferenceUID = frame
            path = dest / f.parent.name / f.name
            path.parent.mkdir(parents=True, exist_ok=True)
            ds.save_as(path, enforce_file_format=True)
            out.append(path)
        return study, out


def send(
    port: int, files: list[Path], *, kill_at: int | None = None, kill: Callable[[], None] | None = None
) -> list[int | None]:
    """C-STORE ``files`` over one association (their bytes as they are on disk); the status of each (None: no
    answer). With ``kill``, it is called 10 ms after the C-STORE of ``files[kill_at]`` started."""
    ae = AE(ae_title=TEST_AET)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    for sop, ts in {_sop_and_syntax(f) for f in files}:
        ae.add_requested_context(sop, [ts])
    assoc = ae.associate("127.0.0.1", port, ae_title="SPINEAI")
    if not assoc.is_established:
        return [None] * len(files)
    out: list[int | None] = []
    killer: threading.Timer | None = None
    for i, f in enumerate(files):
        if kill is not None and i == kill_at:
            killer = threading.Timer(0.01, kill)
            killer.start()
        try:
            st = assoc.send_c_store(f) if assoc.is_established else None
        except Exception:  # the listener went away mid-request
            st = None
        out.append(int(st.Status) if st is not None and "Status" in st else None)
    if killer is not None:
        killer.join()
    if assoc.is_established:
        assoc.release()
    else:
        assoc.abort()
    return out


def _sop_and_syntax(f: Path) -> tuple[str, str]:
    ds = dcmread(f, stop_before_pixels=True)
    return str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID)


def _dataset_bytes(path: Path) -> bytes:
    _meta, offset = split_dataset(path)
    return path.read_bytes()[offset:]


def stored_count(spool: Path, files: list[Path]) -> int:
    """How many of ``files`` are in the spool's studies folder with exactly the data set bytes that were sent."""
    n = 0
    for f in files:
        ds = dcmread(f, stop_before_pixels=True)
        p = spool / "studies" / str(ds.StudyInstanceUID) / str(ds.SeriesInstanceUID) / f"{ds.SOPInstanceUID}.dcm"
        if p.is_file() and _dataset_bytes(p) == _dataset_bytes(f):
            n += 1
    return n


def _query(spool: Path, sql: str, args: tuple[Any, ...]) -> list[Any]:
    """Rows of the listener's state database, read-only: opening it through StateDB writes (schema, WAL), which
    fails on a full disk, and the benchmark must watch what the listener does then."""
    import sqlite3

    con = sqlite3.connect(f"file:{spool / 'state.sqlite3'}?mode=ro", uri=True, timeout=10)
    con.row_factory = sqlite3.Row
    try:
        return con.execute(sql, args).fetchall()
    except sqlite3.OperationalError:  # not created yet
        return []
    finally:
        con.close()


def study_row(spool: Path, uid: str) -> Any:
    """The study's row (columns as attributes: status, attempts, runs, last_error...), or None."""
    rows = _query(spool, "SELECT * FROM studies WHERE study_uid=?", (uid,))
    return argparse.Namespace(**dict(rows[0])) if rows else None


def outbox(spool: Path, uid: str) -> list[Any]:
    return [argparse.Namespace(**dict(r)) for r in _query(spool, "SELECT * FROM outbox WHERE study_uid=?", (uid,))]


def delivered(spool: Path, uid: str) -> int:
    """Result files of the study's latest run delivered (0 before its run is done)."""
    rows = outbox(spool, uid)
    if not rows:
        return 0
    last = max(r.run for r in rows)
    return sum(1 for r in rows if r.run == last and _value(r.status) == "delivered")


def _value(x: Any) -> str:
    return str(getattr(x, "value", x))


def listener_config(spool: Path, port: int, dest_port: int, **over: dict[str, Any]) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "network": {"port": port, "bind_address": "127.0.0.1", "network_timeout_s": 10, "acse_timeout_s": 10},
        "access": {"allowed_callers": [{"ae_title": TEST_AET, "host": "127.0.0.1"}]},
        "storage": {"spool_dir": str(spool), "min_free_mb": 1},
        "trigger": {"stable_seconds": STABLE_S, "poll_seconds": 0.2},
        "processing": {"outputs": ["json", "seg", "sr"], "timeout_s": 600, "retry_backoff_s": 1.0},
        "export": {
            "destinations": [{"name": "pacs", "ae_title": "RESULTS", "host": "127.0.0.1", "port": dest_port}],
            "retry_backoff_s": 1.0,
            "retry_backoff_max_s": 2.0,
        },
    }
    for section, values in over.items():
        cfg[section] = {**cfg.get(section, {}), **values}
    return cfg


def _state(row: Any) -> str:
    return "unknown" if row is None else _value(row.status)


def _concurrently(cases: list[Callable[[], Row]]) -> list[Row]:
    """Run independent cases at the same time (their waits overlap; each has its own listener, spool and ports);
    rows in the order given. A case that raised becomes an ERROR row."""
    from concurrent.futures import ThreadPoolExecutor

    def guarded(fn: Callable[[], Row]) -> Row:
        try:
            return fn()
        except Exception as exc:
            return Row("error", "(case)", f"{type(exc).__name__}: {exc}", "ERROR")

    with ThreadPoolExecutor(len(cases)) as pool:
        return list(pool.map(guarded, cases))


# --------------------------------------------------------------------------- 1. kill -9
KILL_MOMENTS = (
    "during a C-STORE",
    "after Success, before processing",
    "during processing",
    "during export",
    "during export retry",
)


def kill_case(studies: Studies, work: Path, moment: str) -> Row:
    work.mkdir(parents=True)
    spool = work / "spool"
    uid, files = studies.clone(work / "in")
    dest_port = free_port()
    peer: StorePeer | None = None
    if moment != "during export retry":  # that destination is down until after the kill
        peer = StorePeer(dest_port, delay_s=3.0 if moment == "during export" else 0.0)
    proc = ListenerProcess(work, listener_config(spool, free_port(), dest_port))
    t0 = time.monotonic()
    try:
        proc.start()
        if moment == "during a C-STORE":
            statuses = send(proc.port, files, kill_at=len(files) // 2, kill=proc.kill9)
        else:
            statuses = send(proc.port, files)
            if moment == "after Success, before processing":
                pass
            elif moment == "during processing":
                wait_for(lambda: _state(study_row(spool, uid)) == "running", 120, "the run to start")
                time.sleep(2.0)
            elif moment == "during export":
                assert peer is not None
                wait_for(peer.started.is_set, 300, "the export to start")
            else:
                wait_for(
                    lambda: any(r.attempts >= 1 and r.last_error for r in outbox(spool, uid)), 300, "a failed export"
                )
            proc.kill9()
        state_at_kill = _state(study_row(spool, uid))
        acked = [f for f, s in zip(files, statuses, strict=True) if s == 0]
        stored = stored_count(spool, acked)  # before the restart: what the kill left on disk
        if peer is None:
            peer = StorePeer(dest_port)
        proc.start()
        resent = [f for f, s in zip(files, statuses, strict=True) if s != 0]
        if resent:  # the sender's retry of what was not acknowledged
            send(proc.port, resent)
        wait_for(lambda: delivered(spool, uid) >= 2, 600, "the results after the restart", interval_s=0.5)
        time.sleep(STABLE_S + 1.0)  # a second run would have started by now
        row = study_row(spool, uid)
        stored_all = stored_count(spool, files)
        received = [m for m, _, _ in peer.received]
        distinct = len({s for _, s, _ in peer.received})
    finally:
        proc.stop()
        if peer is not None:
            peer.close()
    lost = len(acked) - stored
    figures = (
        f"sent {len(files)}, acked {len(acked)}, acked+stored after kill {stored}, lost {lost}; state at kill "
        f"{state_at_kill}; after restart: {stored_all}/{len(files)} stored, {_state(row)}, runs {row.runs}, "
        f"attempts {row.attempts}; peer got {len(received)} ({distinct} distinct) {sorted(set(received))}; "
        f"{time.monotonic() - t0:.0f} s"
    )
    ok = lost == 0 and stored_all == len(files) and _state(row) == "done" and distinct == 2
    return Row("kill -9", moment, figures, "ok" if ok else "LOSS/FAIL")


# --------------------------------------------------------------------------- 2. disk full (in a namespace)
def disk_full(studies: Studies, work: Path) -> list[Row]:
    """Run :func:`_disk_full_inner` in a user + mount namespace (tmpfs without root), else as root, else skip."""
    work.mkdir(parents=True)
    out = work / "rows.json"
    inner = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--inner-disk",
        str(work),
        "--template",
        str(studies.template),
    ]
    attempts = [["unshare", "--user", "--map-root-user", "--mount", *inner]]
    if os.geteuid() == 0:
        attempts.append(["unshare", "--mount", *inner])
    why = "unshare not found"
    for cmd in attempts:
        if shutil.which(cmd[0]) is None:
            continue
        res = subprocess.run(cmd, capture_output=True, text=True)
        if out.exists():
            return [Row(**r) for r in json.loads(out.read_text())]
        why = (res.stderr.strip().splitlines() or [f"exit {res.returncode}"])[-1]
    return [Row("disk full", "all", f"skipped: cannot mount a small tmpfs ({why})", "skipped")]


def _fill(mnt: Path, leave_bytes: int) -> Path:
    """A filler file that leaves about ``leave_bytes`` free on the tmpfs."""
    filler = mnt / "filler"
    free = shutil.disk_usage(mnt).free + (filler.stat().st_size if filler.exists() else 0)
    size = max(0, free - leave_bytes)
    with open(filler, "wb", buffering=0) as fh:
        chunk = b"\0" * MIB
        try:
            while size > 0:
                size -= fh.write(chunk[: min(size, MIB)]) or 0
        except OSError:  # leave_bytes 0: full to the last page
            pass
    return filler


def _disk_full_inner(work: Path, studies: Studies) -> list[Row]:
    """The cases at once, each with its spool on its own 48 MiB tmpfs (they do not share the full disk)."""
    cases: list[Callable[[], Row]] = [
        lambda: _disk_reception_case(studies, work),
        lambda: _disk_run_case(studies, work, "before a run (guard)", guard_mb=4, leave=2 * MIB),
        lambda: _disk_run_case(studies, work, "during a run (ENOSPC)", guard_mb=0, leave=48 * 1024),
        lambda: _disk_run_case(studies, work, "during a run, 0 bytes free", guard_mb=0, leave=0),
    ]
    return _concurrently(cases)


@contextlib.contextmanager
def _tmpfs(where: Path, size_mib: int = 48) -> Any:
    where.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mib}m", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _disk_reception_case(studies: Studies, work: Path) -> Row:
    """About 1.5 MiB free for two studies of 1.1 MB (guard 1 MiB): some instances are refused, none lost."""
    case = work / "reception"
    case.mkdir()
    peer = StorePeer()
    with _tmpfs(case / "tmpfs") as mnt:
        spool = mnt / "spool"
        proc = ListenerProcess(case, listener_config(spool, free_port(), peer.port))
        try:
            proc.start()
            uids, files = [], []
            for i in range(2):
                u, f = studies.clone(case / f"in{i}")
                uids.append(u)
                files += f
            filler = _fill(mnt, int(1.5 * MIB))
            first = send(proc.port, files)
            acked = [f for f, s in zip(files, first, strict=True) if s == 0]
            stored = stored_count(spool, acked)
            refused_while_full = not echo_ok(proc.port)
            filler.unlink()
            retry = [f for f, s in zip(files, first, strict=True) if s != 0]
            second = send(proc.port, retry)
            for u in uids:
                wait_for(lambda u=u: delivered(spool, u) >= 2, 900, "results", interval_s=0.5)
            stored_all = stored_count(spool, files)
            runs = [study_row(spool, u).runs for u in uids]
        finally:
            proc.stop()
            peer.close()
    st = Counter(f"0x{s:04X}" if s is not None else "none" for s in first)
    figures = (
        f"1.5 MiB free: {len(files)} sent, statuses {dict(st)}; acked {len(acked)}, stored {stored}, lost "
        f"{len(acked) - stored}; a new association refused while full: {refused_while_full}; space back, the "
        f"sender retries {len(retry)}: {dict(Counter(second))}; {stored_all}/{len(files)} stored, runs {runs}, "
        f"results delivered"
    )
    ok = len(acked) == stored and stored_all == len(files) and runs == [1, 1]
    return Row("disk full", "at reception (ENOSPC)", figures, "ok" if ok else "LOSS/FAIL")


def _disk_run_case(studies: Studies, work: Path, name: str, *, guard_mb: int, leave: int) -> Row:
    """A study received with space, then the disk fills: with the guard it waits, without it the run hits ENOSPC."""
    case = work / "".join(c if c.isalnum() else "-" for c in name)
    case.mkdir()
    with _tmpfs(case / "tmpfs") as mnt:
        return _disk_run_case_on(studies, case, mnt, name, guard_mb=guard_mb, leave=leave)


def _disk_run_case_on(studies: Studies, case: Path, mnt: Path, name: str, *, guard_mb: int, leave: int) -> Row:
    spool = mnt / "spool"
    peer = StorePeer()
    cfg = listener_config(
        spool,
        free_port(),
        peer.port,
        storage={"min_free_mb": guard_mb},
        processing={"retry_backoff_s": 3.0, "retry_backoff_max_s": 3.0},
    )
    proc = ListenerProcess(case, cfg)
    try:
        proc.start()
        uid, files = studies.clone(case / "in")
        statuses = send(proc.port, files)
        if guard_mb:  # full before the study is complete: it must wait
            filler = _fill(mnt, leave)
            t_full = time.monotonic()
            time.sleep(STABLE_S + 8.0)
            held = study_row(spool, uid)
            during = f"{_state(held)} after {time.monotonic() - t_full:.0f} s, attempts {held.attempts}"
        else:  # full once the run has started: its results cannot be written
            wait_for(lambda: _state(study_row(spool, uid)) == "running", 600, "the run to start", interval_s=0.1)
            filler = _fill(mnt, leave)
            t_full = time.monotonic()
            wait_for(
                lambda: (
                    _state(study_row(spool, uid)) in ("retry_wait", "dead", "done")
                    or "cannot be recorded yet" in proc.log_text()
                ),
                600,
                "the run on a full disk to end",
                interval_s=0.5,
            )
            time.sleep(3.0)  # the state the listener holds while the disk stays full
            held = study_row(spool, uid)
            pending = (
                "; its outcome waits for space to be recorded" if "cannot be recorded yet" in proc.log_text() else ""
            )
            during = f"{_state(held)}, attempts {held.attempts}, error: {(held.last_error or '')[:70]}{pending}"
        filler.unlink()
        wait_for(lambda: delivered(spool, uid) >= 2, 600, "results once space is back", interval_s=0.5)
        row = study_row(spool, uid)
        figures = (
            f"{sum(s == 0 for s in statuses)}/{len(files)} acked; disk filled ({leave // 1024} KiB free, "
            f"min_free_mb {guard_mb}): {during}; space back: {_state(row)}, runs {row.runs}, attempts "
            f"{row.attempts}, results delivered {time.monotonic() - t_full:.0f} s after the disk filled"
        )
        log = proc.log_text()
        figures += f"; log: {log.count('Traceback')} tracebacks, {log.count('cannot write the state database')} "
        figures += "'cannot write the state database' lines"
        if guard_mb:
            ok = held.attempts == 0 and row.runs == 1
        else:
            ok = _state(held) in ("retry_wait", "running") and _state(row) == "done" and row.runs == 1
        return Row("disk full", name, figures, "ok" if ok else "FAIL")
    finally:
        proc.stop()
        peer.close()


# --------------------------------------------------------------------------- 3. load
def load(studies: Studies, work: Path, n_studies: int = 20, associations: int = 4) -> Row:
    work.mkdir(parents=True)
    spool = work / "spool"
    peer = StorePeer()
    proc = ListenerProcess(work, listener_config(spool, free_port(), peer.port, processing={"workers": 2}))
    clones = [studies.clone(work / f"in{i:02d}") for i in range(n_studies)]
    try:
        proc.start()
        chunks = [[f for _u, fs in clones[k::associations] for f in fs] for k in range(associations)]
        results: list[list[int | None]] = [[] for _ in chunks]

        def run(k: int) -> None:
            results[k] = send(proc.port, chunks[k])

        t0 = time.monotonic()
        threads = [threading.Thread(target=run, args=(k,)) for k in range(associations)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        t_recv = time.monotonic() - t0
        files = [f for c in chunks for f in c]
        statuses = [s for r in results for s in r]
        acked = [f for f, s in zip(files, statuses, strict=True) if s == 0]
        for uid, _fs in clones:
            wait_for(lambda uid=uid: delivered(spool, uid) >= 2, 1200, "all results", interval_s=1.0)
        t_all = time.monotonic() - t0
        time.sleep(STABLE_S + 1.0)
        rows = [study_row(spool, uid) for uid, _ in clones]
        stored = stored_count(spool, acked)
        distinct = len({s for _, s, _ in peer.received})
    finally:
        proc.stop()
        peer.close()
    figures = (
        f"{len(files)} instances of {n_studies} studies over {associations} associations in {t_recv:.1f} s "
        f"({len(files) / t_recv:.0f}/s); acked {len(acked)}, stored {stored}, lost {len(acked) - stored}; "
        f"done {sum(_state(r) == 'done' for r in rows)}/{n_studies}, runs {dict(Counter(r.runs for r in rows))}; "
        f"results at the destination {distinct}/{2 * n_studies}; all delivered after {t_all:.0f} s (2 workers)"
    )
    ok = len(acked) == len(files) == stored and distinct == 2 * n_studies and all(r.runs == 1 for r in rows)
    return Row("load", f"{n_studies} studies, {associations} associations", figures, "ok" if ok else "LOSS/FAIL")


# --------------------------------------------------------------------------- 4. fuzzing
class Fuzzer:
    """Malformed network input, one TCP connection per case; replies are read and tallied."""

    def __init__(self, port: int, template: Path, rng: random.Random) -> None:
        self.port = port
        self.rng = rng
        self.dataset = _dataset_bytes(template)
        self.ds = dcmread(template, stop_before_pixels=True)
        self.replies: Counter[str] = Counter()
        self.cases: Counter[str] = Counter()

    def _instance(self) -> tuple[str, bytes]:
        """A valid data set of a new instance: the template's SOP Instance UID with new digits in its last
        component (same length, so the data set stays valid)."""
        old = str(self.ds.SOPInstanceUID)
        head, _, last = old.rpartition(".")
        digits = str(self.rng.randint(1, 9)) + "".join(str(self.rng.randint(0, 9)) for _ in range(len(last) - 1))
        uid = f"{head}.{digits}"
        return uid, self.dataset.replace(old.encode(), uid.encode())

    def _flip(self, data: bytes, n: int) -> bytes:
        b = bytearray(data)
        for _ in range(n):
            b[self.rng.randrange(len(b))] = self.rng.randrange(256)
        return bytes(b)

    def run_one(self, case: str | None = None) -> None:
        r = self.rng
        case = case or r.choice(
            [
                "random bytes",
                "mutated A-ASSOCIATE-RQ",
                "truncated A-ASSOCIATE-RQ",
                "random bytes after a valid A-ASSOCIATE-RQ",
                "unknown / out-of-order PDU",
                "huge PDU length, then close",
                "mutated C-STORE command",
                "truncated data set",
                "random data set",
                "mutated data set",
                "bad PDV lengths",
                "C-STORE cut off half-way",
            ]
        )
        self.cases[case] += 1
        with socket.create_connection(("127.0.0.1", self.port), timeout=3) as s:
            s.settimeout(3)
            if case == "random bytes":
                s.sendall(r.randbytes(r.randint(1, 4096)))
            elif case == "mutated A-ASSOCIATE-RQ":
                s.sendall(self._flip(associate_rq_pdu(), r.randint(1, 8)))
            elif case == "truncated A-ASSOCIATE-RQ":
                rq = associate_rq_pdu()
                s.sendall(rq[: r.randrange(1, len(rq))])
                s.shutdown(socket.SHUT_WR)
            elif case == "unknown / out-of-order PDU":
                kind = r.choice([0x04, 0x05, 0x06, 0x07, 0x02, 0x09, 0xFF])
                body = r.randbytes(r.randint(0, 64))
                s.sendall(bytes([kind, 0]) + len(body).to_bytes(4, "big") + body)
            elif case == "huge PDU length, then close":
                kind = r.choice([0x01, 0x04])
                s.sendall(bytes([kind, 0]) + r.randint(1 << 24, (1 << 32) - 1).to_bytes(4, "big") + r.randbytes(100))
                s.shutdown(socket.SHUT_WR)
            else:
                s.sendall(associate_rq_pdu())
                kind, body = read_pdu(s)
                if kind == 0x03 and len(body) >= 4:  # A-ASSOCIATE-RJ: result, source, reason
                    self.replies[f"A-ASSOCIATE-RJ {body[1]}/{body[2]}/{body[3]}"] += 1
                    return
                self.replies[f"association answered by PDU 0x{kind:02X}"] += 1
                if kind != 0x02:
                    return
                if not self._after_association(s, case):
                    return
            self._drain(s)

    def _after_association(self, s: socket.socket, case: str) -> bool:
        """Send the case's PDUs on an established association; False: close without waiting for answers."""
        r = self.rng
        uid, data = self._instance()
        if case == "random bytes after a valid A-ASSOCIATE-RQ":
            s.sendall(r.randbytes(r.randint(1, 4096)))
        elif case == "mutated C-STORE command":
            s.sendall(pdata_pdu(1, 3, self._flip(c_store_rq(uid), r.randint(1, 6))) + pdata_pdu(1, 2, data[:8000]))
        elif case == "truncated data set":
            s.sendall(pdata_pdu(1, 3, c_store_rq(uid)) + pdata_pdu(1, 2, data[: r.randrange(1, len(data))]))
        elif case == "random data set":
            s.sendall(pdata_pdu(1, 3, c_store_rq(uid)) + pdata_pdu(1, 2, r.randbytes(r.randint(1, 20000))))
        elif case == "mutated data set":
            s.sendall(pdata_pdu(1, 3, c_store_rq(uid)) + pdata_pdu(1, 2, self._flip(data, r.randint(1, 16))))
        elif case == "bad PDV lengths":
            pdu = bytearray(pdata_pdu(1, 3, c_store_rq(uid)))
            pdu[6:10] = r.choice([0, 1, 2, len(pdu), 0xFFFFFFFF]).to_bytes(4, "big")
            s.sendall(bytes(pdu))
        elif case == "C-STORE cut off half-way":
            s.sendall(pdata_pdu(1, 3, c_store_rq(uid)) + pdata_pdu(1, 0, data[: len(data) // 2]))
            return False  # closed at once: the listener must drop the partial file
        s.sendall(pdata_pdu(3, 3, c_echo_rq(7)))  # then an echo on the same association, if it still stands
        return True

    def _drain(self, s: socket.socket, timeout_s: float = 0.5) -> None:
        s.settimeout(timeout_s)
        try:
            while True:
                kind, body = read_pdu(s)
                if kind == 0:
                    self.replies["closed by the listener"] += 1
                    return
                if kind == 0x04 and len(body) > 6 and body[5] & 1:  # a command: the status of a response
                    self.replies[f"status 0x{_status(body[6:]):04X}"] += 1
                else:
                    self.replies[f"PDU 0x{kind:02X}"] += 1
        except (TimeoutError, OSError):
            self.replies["no answer within 0.5 s"] += 1


def _status(command: bytes) -> int:
    """(0000,0900) Status of an implicit VR little endian command set, -1 if absent."""
    i = 0
    while i + 8 <= len(command):
        group, elem = int.from_bytes(command[i : i + 2], "little"), int.from_bytes(command[i + 2 : i + 4], "little")
        length = int.from_bytes(command[i + 4 : i + 8], "little")
        if (group, elem) == (0, 0x0900):
            return int.from_bytes(command[i + 8 : i + 10], "little")
        i += 8 + length
    return -1


def fuzz(studies: Studies, work: Path, seconds: float, seed: int) -> list[Row]:
    work.mkdir(parents=True)
    spool = work / "spool"
    cfg = listener_config(
        spool,
        free_port(),
        free_port(),
        network={"network_timeout_s": 3, "acse_timeout_s": 3},
        trigger={"stable_seconds": 3600},
    )  # no processing: the network side only
    proc = ListenerProcess(work, cfg)
    _uid, files = studies.clone(work / "in")
    rng = random.Random(seed)
    try:
        proc.start()
        assert send(proc.port, files[:1]) == [0]  # warm up
        threads0, rss0 = proc.status_kb("Threads"), proc.status_kb("VmRSS")
        fz = Fuzzer(proc.port, files[1], rng)
        echoes: Counter[bool] = Counter()
        errors: Counter[str] = Counter()
        t0 = time.monotonic()
        next_echo = t0 + 5
        n = 0
        while time.monotonic() - t0 < seconds:
            try:
                fz.run_one()
            except OSError as exc:
                errors[type(exc).__name__] += 1
            n += 1
            if time.monotonic() >= next_echo:
                echoes[echo_ok(proc.port)] += 1
                next_echo = time.monotonic() + 5
        elapsed = time.monotonic() - t0
        time.sleep(4.0)  # network_timeout_s + 1: connections the fuzzer left are closed by now
        alive = proc.proc is not None and proc.proc.poll() is None
        echo_after = echo_ok(proc.port)
        store_after = send(proc.port, files[2:3]) == [0]
        threads1, rss1 = proc.status_kb("Threads"), proc.status_kb("VmRSS")
        leftovers = list((spool / "incoming").iterdir())
        log = proc.log_text()
        kept = [argparse.Namespace(**dict(r)) for r in _query(spool, "SELECT * FROM studies", ())]
        fuzz_stored = sum(r.n_instances for r in kept) - 2  # the warm-up and the final valid instance
        fuzz_quarantined = sum(r.n_quarantined for r in kept)
    finally:
        proc.stop()
    unexpected = log.count("unexpected error")
    figures = (
        f"{n} connections in {elapsed:.0f} s (seed {seed}); cases {dict(sorted(fz.cases.items()))}; replies "
        f"{dict(sorted(fz.replies.items()))}; fuzzed instances answered Success: {fuzz_stored} stored (decodable "
        f"data sets with flipped bytes), {fuzz_quarantined} quarantined; client errors {dict(errors)}; "
        f"C-ECHO every 5 s during: "
        f"{echoes[True]} ok / {echoes[False]} failed; after: listener alive {alive}, C-ECHO {echo_after}, valid "
        f"C-STORE {store_after}; threads {threads0} -> {threads1}; RSS {rss0 // 1024} -> {rss1 // 1024} MB; "
        f"partial files left in incoming/ {len(leftovers)}; handler errors logged (bugs) {unexpected}; "
        f"tracebacks in the log {log.count('Traceback')}"
    )
    ok = alive and echo_after and store_after and not echoes[False] and not leftovers and not unexpected
    return [Row("fuzz", f"network input, {seconds:.0f} s", figures, "ok" if ok else "FAIL")]


# --------------------------------------------------------------------------- 5. memory
def big_instance(template: Path, out: Path, mib: int) -> Path:
    ds = dcmread(template)
    cols = 8192
    rows = mib * MIB // (2 * cols)
    ds.Rows, ds.Columns = rows, cols
    ds.PixelData = np.zeros(rows * cols, dtype=np.uint16).tobytes()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.save_as(out, enforce_file_format=True)
    return out


def memory(studies: Studies, work: Path, mib: int, repos: list[tuple[str, Path]]) -> list[Row]:
    work.mkdir(parents=True)
    _uid, files = studies.clone(work / "in")
    big = big_instance(files[0], work / "big.dcm", mib)
    out = []
    cases = [(label, repo, None) for label, repo in repos]
    cases.append(("this code, refused", REPO, max(1, mib // 4)))
    for i, (label, repo, limit) in enumerate(cases):
        case = work / f"case{i}"
        case.mkdir()
        spool = case / "spool"
        over = {"trigger": {"stable_seconds": 3600}}
        if limit is not None:
            over["storage"] = {"max_instance_mb": limit}
        proc = ListenerProcess(case, listener_config(spool, free_port(), free_port(), **over), repo=repo)
        try:
            proc.start()
            send(proc.port, files[:1])  # warm up: the store path is imported and used once
            idle, hwm0 = proc.status_kb("VmRSS"), proc.status_kb("VmHWM")
            t0 = time.monotonic()
            status = send(proc.port, [big])[0]
            dt = time.monotonic() - t0
            peak, after = proc.status_kb("VmHWM"), proc.status_kb("VmRSS")
            in_spool = sum(1 for p in (spool / "studies").rglob("*.dcm") if p.stat().st_size > MIB)
        finally:
            proc.stop()
        status_text = f"0x{status:04X}" if status is not None else "none"
        what = f"{mib} MiB instance" + (f" over max_instance_mb {limit}" if limit else "")
        figures = (
            f"{what}: status {status_text} in {dt:.1f} s; resident idle {idle / 1024:.0f} MB, peak "
            f"{peak / 1024:.0f} MB (+{(peak - idle) / 1024:.0f} MB = {(peak - idle) / 1024 / mib:.2f} x the "
            f"instance; peak before it {hwm0 / 1024:.0f} MB), after {after / 1024:.0f} MB; large files in the "
            f"spool {in_spool}"
        )
        out.append(Row("memory", label, figures, "measured"))
    return out


# --------------------------------------------------------------------------- main
def _load() -> str:
    try:
        return "load average {:.1f} {:.1f} {:.1f}".format(*os.getloadavg())
    except OSError:
        return "load average unknown"


def print_table(rows: list[Row]) -> None:
    import textwrap

    w1 = max(len("section"), *(len(r.section) for r in rows))
    w2 = max(len("case"), *(len(r.case) for r in rows))
    w4 = max(len("verdict"), *(len(r.verdict) for r in rows))
    width = 120 - w1 - w2 - w4 - 9
    print(f"{'section':<{w1}} | {'case':<{w2}} | {'verdict':<{w4}} | figures")
    print("-" * 120)
    for r in rows:
        lines = textwrap.wrap(r.figures, width) or [""]
        print(f"{r.section:<{w1}} | {r.case:<{w2}} | {r.verdict:<{w4}} | {lines[0]}")
        for line in lines[1:]:
            print(f"{'':<{w1}} | {'':<{w2}} | {'':<{w4}} | {line}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections of {', '.join(SECTIONS)}")
    p.add_argument("--fuzz-seconds", type=float, default=40.0)
    p.add_argument("--seed", type=int, default=19)
    p.add_argument("--memory-mib", type=int, default=256)
    p.add_argument("--memory-before-repo", type=Path, help="another checkout whose listener to measure too")
    p.add_argument("--workdir", type=Path, help="where to work (default: a new temporary folder, removed)")
    p.add_argument("--inner-disk", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--template", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    _config.STORE_SEND_CHUNKED_DATASET = True  # the senders send the files' bytes as they are

    if args.inner_disk:  # re-executed by disk_full() inside its namespace
        try:
            rows = _disk_full_inner(args.inner_disk, Studies(args.template))
        except Exception as exc:  # e.g. mount refused: reported, not retried
            rows = [Row("disk full", "(error)", f"{type(exc).__name__}: {exc}", "ERROR")]
        (args.inner_disk / "rows.json").write_text(json.dumps([r.__dict__ for r in rows]))
        return 0

    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(only) - set(SECTIONS)
    if unknown:
        p.error(f"unknown section(s) {sorted(unknown)}")
    root = Path(tempfile.mkdtemp(prefix="faults-", dir=args.workdir))
    t0 = time.monotonic()
    print(f"benchmarks/faults.py: {', '.join(only)}; {os.cpu_count()} CPUs, {_load()}; work in {root}", flush=True)
    studies = Studies(root / "template")
    rows: list[Row] = []

    def section(name: str, fn: Callable[[], list[Row]]) -> None:
        if name not in only:
            return
        t = time.monotonic()
        try:
            new = fn()
        except Exception as exc:  # a broken case is a figure too
            new = [Row(name, "(error)", f"{type(exc).__name__}: {exc}", "ERROR")]
        for r in new:
            print(f"  [{r.verdict}] {r.section} / {r.case}: {r.figures}", flush=True)
        print(f"  ({name}: {time.monotonic() - t:.0f} s, {_load()})", flush=True)
        rows.extend(new)

    section(
        "kill",
        lambda: _concurrently(
            [lambda i=i, m=m: kill_case(studies, root / f"kill{i}", m) for i, m in enumerate(KILL_MOMENTS)]
        ),
    )
    section("disk", lambda: disk_full(studies, root / "disk"))
    section("load", lambda: [load(studies, root / "load")])
    section("fuzz", lambda: fuzz(studies, root / "fuzz", args.fuzz_seconds, args.seed))
    repos = [("this code", REPO)]
    if args.memory_before_repo:
        repos.insert(0, (f"before ({args.memory_before_repo})", args.memory_before_repo.resolve()))
    section("memory", lambda: memory(studies, root / "memory", args.memory_mib, repos))

    print()
    print(f"Figures ({time.monotonic() - t0:.0f} s in all; {os.cpu_count()} CPUs, {_load()}):")
    print_table(rows)
    if args.workdir is None:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
