"""Helpers shared by the listener tests: configs, free ports, small studies, a DICOM SCU."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydicom.filereader import read_file_meta_info
from pynetdicom import AE
from pynetdicom.sop_class import MRImageStorage, Verification

from pipeline.listener.config import ListenerConfig, parse_listener_config
from pipeline.listener.scp import Receiver, start_server
from pipeline.listener.spool import Spool
from pipeline.listener.state import StateDB

TEST_AET = "TESTSCU"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listener_config(spool: Path, **sections: dict[str, Any]) -> ListenerConfig:
    """A test configuration: localhost, any free port, a small disk guard, TESTSCU allowed; sections override."""
    data: dict[str, Any] = {
        "network": {"port": 0, "bind_address": "127.0.0.1"},
        "access": {"allowed_callers": [{"ae_title": TEST_AET, "host": "127.0.0.1"}]},
        "storage": {"spool_dir": str(spool), "min_free_mb": 1},
        "trigger": {"stable_seconds": 1.0, "poll_seconds": 0.1},
    }
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    return parse_listener_config(data, "test")


@contextmanager
def receiving(cfg: ListenerConfig) -> Iterator[tuple[int, Spool, StateDB]]:
    """The listener's receiving side in this process (no scheduler): ``(port, spool, state)`` until the block ends."""
    spool = Spool(cfg.spool_dir)
    state = StateDB(spool.db_path)
    server = start_server(cfg, Receiver(cfg, spool, state))
    try:
        yield int(server.server_address[1]), spool, state
    finally:
        server.shutdown()
        state.close()


def dicom_files(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).rglob("*.dcm"))


def scu(calling: str = TEST_AET, contexts: Iterable[str] = (MRImageStorage, Verification)) -> AE:
    ae = AE(ae_title=calling)
    for c in contexts:
        ae.add_requested_context(c)
    return ae


def store_files(
    port: int, files: Sequence[Path], *, calling: str = TEST_AET, called: str = "SPINEAI"
) -> list[int | None]:
    """C-STORE each file over one association; the status of each (None: no response)."""
    ae = AE(ae_title=calling)
    syntaxes: dict[str, set[str]] = {}
    for f in files:
        meta = read_file_meta_info(f)
        syntaxes.setdefault(str(meta.MediaStorageSOPClassUID), set()).add(str(meta.TransferSyntaxUID))
    for sop, ts in syntaxes.items():
        ae.add_requested_context(sop, sorted(ts))
    assoc = ae.associate("127.0.0.1", port, ae_title=called)
    assert assoc.is_established, "association refused"
    out: list[int | None] = []
    try:
        for f in files:
            st = assoc.send_c_store(f)
            out.append(int(st.Status) if st and "Status" in st else None)
    finally:
        assoc.release()
    return out


def make_small_study(out: Path, *, seed: int = 5, patient_name: str = "", patient_id: str = "") -> Path:
    """A small 3-series phantom study (T1, T2, STIR; 11 sagittal slices of 192 x 192) written as DICOM."""
    from pipeline.tools.phantom import PhantomSpec, render_phantom, write_study

    spec = PhantomSpec.small(seed=seed, patient_name=patient_name, patient_id=patient_id)
    return write_study(render_phantom(spec), out)


def dcmtk_tool(name: str) -> str | None:
    """Path of DCMTK's ``name`` (echoscu, storescu), never pynetdicom's look-alike scripts on the PATH."""
    import shutil
    import subprocess

    for candidate in (f"/usr/bin/{name}", shutil.which(name)):
        if not candidate or not Path(candidate).is_file():
            continue
        try:
            out = subprocess.run([candidate, "--version"], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.TimeoutExpired):
            continue
        if "$dcmtk:" in out:
            return candidate
    return None


# --------------------------------------------------------------------------- raw PDUs (PS3.8 section 9.3)
# Hand-encoded so that tests and benchmarks/faults.py can send what no well-behaved SCU would: half a C-STORE,
# a truncated data set, garbage after a valid association request.
APP_CONTEXT = "1.2.840.10008.3.1.1.1"
VERIFICATION = "1.2.840.10008.1.1"
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"


def _item(item_type: int, body: bytes) -> bytes:
    return bytes([item_type, 0]) + len(body).to_bytes(2, "big") + body


def _uid_bytes(uid: str) -> bytes:
    raw = uid.encode("ascii")
    return raw + b"\0" if len(raw) % 2 else raw


def associate_rq_pdu(
    calling: str = TEST_AET,
    called: str = "SPINEAI",
    contexts: Sequence[tuple[int, str, str]] = ((1, MR_IMAGE, EXPLICIT_LE), (3, VERIFICATION, IMPLICIT_LE)),
    max_pdu: int = 16384,
) -> bytes:
    """An A-ASSOCIATE-RQ PDU: ``contexts`` are (presentation context ID, abstract syntax, transfer syntax)."""
    body = b"\x00\x01\x00\x00" + called.ljust(16).encode() + calling.ljust(16).encode() + b"\0" * 32
    body += _item(0x10, APP_CONTEXT.encode())
    for cid, abstract, transfer in contexts:
        body += _item(0x20, bytes([cid, 0, 0, 0]) + _item(0x30, abstract.encode()) + _item(0x40, transfer.encode()))
    user = _item(0x51, max_pdu.to_bytes(4, "big")) + _item(0x52, b"1.2.826.0.1.3680043.9.7433.1")
    body += _item(0x50, user)
    return b"\x01\x00" + len(body).to_bytes(4, "big") + body


def pdata_pdu(context_id: int, control: int, payload: bytes) -> bytes:
    """A P-DATA-TF PDU with one PDV; ``control`` 0 / 2 data set (2 = last fragment), 1 / 3 command (3 = last)."""
    pdv = (len(payload) + 2).to_bytes(4, "big") + bytes([context_id, control]) + payload
    return b"\x04\x00" + len(pdv).to_bytes(4, "big") + pdv


def command_set(**elements: Any) -> bytes:
    """A DIMSE command set (implicit VR little endian, with its group length), e.g. ``command_set(CommandField=0x30,
    MessageID=1, AffectedSOPClassUID=VERIFICATION, CommandDataSetType=0x0101)``."""
    from pydicom.dataset import Dataset
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    def encode(ds: Dataset) -> bytes:
        fp = DicomBytesIO()
        fp.is_little_endian, fp.is_implicit_VR = True, True
        write_dataset(fp, ds)
        return fp.getvalue()

    ds = Dataset()
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    body = encode(ds)
    head = Dataset()
    head.CommandGroupLength = len(body)
    return encode(head) + body


def c_store_rq(sop_uid: str, message_id: int = 1, sop_class: str = MR_IMAGE) -> bytes:
    return command_set(
        AffectedSOPClassUID=sop_class,
        CommandField=0x0001,
        MessageID=message_id,
        Priority=0,
        CommandDataSetType=0x0000,
        AffectedSOPInstanceUID=sop_uid,
    )


def c_echo_rq(message_id: int = 1) -> bytes:
    return command_set(
        AffectedSOPClassUID=VERIFICATION, CommandField=0x0030, MessageID=message_id, CommandDataSetType=0x0101
    )


def raw_associate(port: int, *, timeout_s: float = 5.0, **rq: Any) -> socket.socket:
    """Open a TCP connection and send an A-ASSOCIATE-RQ; returns the socket once the A-ASSOCIATE-AC is read."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
    sock.sendall(associate_rq_pdu(**rq))
    pdu_type, body = read_pdu(sock)
    if pdu_type != 0x02:
        sock.close()
        raise AssertionError(f"association not accepted (PDU type 0x{pdu_type:02X})")
    return sock


def read_pdu(sock: socket.socket) -> tuple[int, bytes]:
    """One PDU from ``sock``: (type, body); (0, b"") when the peer closed the connection."""
    head = _read_exact(sock, 6)
    if len(head) < 6:
        return 0, b""
    length = int.from_bytes(head[2:6], "big")
    return head[0], _read_exact(sock, length)


def _read_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


# --------------------------------------------------------------------------- peers and listener processes
REPO = Path(__file__).resolve().parent.parent


def wait_for(predicate: Callable[[], Any], timeout_s: float, what: str, interval_s: float = 0.2) -> Any:
    """Poll ``predicate`` until it returns something true (returned) or fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


class StorePeer:
    """A pynetdicom Storage SCP (any storage SOP class) that records what it receives.

    ``delay_s``: each C-STORE is answered that much later (a slow PACS); ``started`` is set when the first
    request arrives.
    """

    def __init__(self, port: int = 0, *, delay_s: float = 0.0) -> None:
        from pynetdicom import AllStoragePresentationContexts, evt

        self.received: list[tuple[str, str, str]] = []  # (modality, SOP instance UID, series UID)
        self.delay_s = delay_s
        self.started = threading.Event()
        ae = AE(ae_title="RESULTS")
        ae.supported_contexts = AllStoragePresentationContexts
        ae.add_supported_context(Verification)
        self.server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, self._on)])
        self.port = int(self.server.server_address[1])

    def _on(self, event: Any) -> int:
        self.started.set()
        ds = event.dataset
        if self.delay_s:
            time.sleep(self.delay_s)
        self.received.append((str(ds.Modality), str(ds.SOPInstanceUID), str(ds.SeriesInstanceUID)))
        return 0

    def close(self) -> None:
        self.server.shutdown()


class ListenerProcess:
    """``python -m pipeline -v listen --config FILE`` with its log in a file; kill9() is kill -9.

    ``repo``: the checkout whose code runs (default this one; benchmarks compare with another).
    """

    def __init__(self, workdir: Path, cfg: dict[str, Any], *, verbose: str = "-v", repo: Path = REPO) -> None:
        import yaml

        self.workdir = workdir
        self.config = workdir / "listener.yaml"
        self.config.write_text(yaml.safe_dump(cfg))
        self.port = int(cfg["network"]["port"])
        self.logs: list[Path] = []
        self.verbose = verbose
        self.repo = Path(repo)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 60) -> ListenerProcess:
        log = self.workdir / f"listener-{len(self.logs)}.log"
        self.logs.append(log)
        with open(log, "wb") as fh:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "pipeline", self.verbose, "listen", "--config", str(self.config)],
                cwd=self.repo,
                stdout=fh,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(self.repo)},
            )
        wait_for(self._echo, timeout_s, "the listener to answer C-ECHO")
        return self

    def _echo(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, self.log_text()[-3000:]
        return echo_ok(self.port, timeout_s=2)

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def status_kb(self, field: str) -> int:
        """A field of /proc/PID/status in KiB or a count: VmRSS (resident now), VmHWM (peak resident), Threads."""
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise KeyError(field)

    def log_text(self) -> str:
        return "".join(p.read_text(errors="replace") for p in self.logs if p.exists())


def echo_ok(port: int, *, timeout_s: float = 5, calling: str = TEST_AET) -> bool:
    """A C-ECHO over a new association succeeded."""
    ae = AE(ae_title=calling)
    ae.add_requested_context(Verification)
    ae.acse_timeout = ae.network_timeout = timeout_s
    assoc = ae.associate("127.0.0.1", port, ae_title="SPINEAI")
    if not assoc.is_established:
        return False
    try:
        rsp = assoc.send_c_echo()
        return bool(rsp) and "Status" in rsp and int(rsp.Status) == 0
    finally:
        assoc.release()
