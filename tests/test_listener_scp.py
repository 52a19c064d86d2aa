"""The Storage SCP: access control, durable C-STORE, statuses for bad data, transfer syntaxes, TLS.

A real pynetdicom server on a free localhost port, a real pynetdicom SCU; shut down in teardown.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom import dcmread
from pydicom.uid import DeflatedExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, _config

from pipeline.listener.config import AccessConfig, AllowedCaller, ListenerConfig
from pipeline.listener.scp import Receiver, start_server, unusable_reason
from pipeline.listener.security import REJECT_CALLED_AE, REJECT_CALLING_AE, REJECT_CONGESTION, access_decision
from pipeline.listener.spool import Spool
from pipeline.listener.state import StateDB
from tests.listener_helpers import (
    TEST_AET,
    dicom_files,
    listener_config,
    make_small_study,
    scu,
    store_files,
    wait_for,
)

pytestmark = pytest.mark.network


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_small_study(tmp_path_factory.mktemp("study") / "s", seed=11)


class Server:
    def __init__(self, cfg: ListenerConfig) -> None:
        self.cfg = cfg
        self.spool = Spool(cfg.spool_dir)
        self.state = StateDB(self.spool.db_path)
        self.receiver = Receiver(cfg, self.spool, self.state)
        self.server = start_server(cfg, self.receiver)
        self.port = int(self.server.server_address[1])

    def close(self) -> None:
        self.server.shutdown()
        self.state.close()


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator:
    servers: list[Server] = []

    def make(**sections: dict) -> Server:
        s = Server(listener_config(tmp_path / f"spool{len(servers)}", **sections))
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.close()


# --------------------------------------------------------------------------- access rules (pure)
ACCESS = AccessConfig(allowed_callers=(AllowedCaller("PACS", "10.0.0.5"), AllowedCaller("MODALITY")))


def decide(calling: str = "PACS", called: str = "SPINEAI", host: str = "10.0.0.5", free: float = 1e6) -> object:
    r = access_decision(
        ACCESS,
        our_ae_title="SPINEAI",
        calling_ae_title=calling,
        called_ae_title=called,
        peer_host=host,
        free_mb=free,
        min_free_mb=100,
        resolve=lambda h: {"10.0.0.9"} if h == "pacs.local" else set(),
    )
    return r[0] if r else None


def test_access_rules() -> None:
    assert decide() is None
    assert decide(calling="MODALITY", host="192.168.1.1") is None  # no host pinned
    assert decide(calling="INTRUDER") == REJECT_CALLING_AE
    assert decide(host="10.0.0.6") == REJECT_CALLING_AE  # right AE title, wrong machine
    assert decide(called="OTHER") == REJECT_CALLED_AE
    assert decide(called="SPINEAI  ") is None  # padding is not a difference
    assert decide(free=50) == REJECT_CONGESTION
    pinned_by_name = AccessConfig(allowed_callers=(AllowedCaller("PACS", "pacs.local"),))
    kw = dict(our_ae_title="SPINEAI", calling_ae_title="PACS", called_ae_title="SPINEAI", free_mb=1e6, min_free_mb=1)
    resolve = lambda h: {"10.0.0.9"}  # noqa: E731
    assert access_decision(pinned_by_name, peer_host="10.0.0.9", resolve=resolve, **kw) is None
    assert access_decision(pinned_by_name, peer_host="10.0.0.8", resolve=resolve, **kw)[0] == REJECT_CALLING_AE


def test_unusable_reason(study: Path) -> None:
    f = dicom_files(study)[0]
    ds = dcmread(f)
    ts = str(ds.file_meta.TransferSyntaxUID)
    assert unusable_reason(ds, ts) is None
    short = dcmread(f)
    short.PixelData = ds.PixelData[:-100]
    assert "expected" in unusable_reason(short, ts)
    nopix = dcmread(f)
    del nopix.PixelData
    assert "no Pixel Data" in unusable_reason(nopix, ts)
    norows = dcmread(f)
    norows.Rows = 0
    assert "Rows" in unusable_reason(norows, ts)


# --------------------------------------------------------------------------- associations
def _reject_reason(assoc: object) -> tuple[int, int, int]:
    p = assoc.acceptor.primitive  # type: ignore[attr-defined]
    return (p.result, p.result_source, p.diagnostic.value if hasattr(p.diagnostic, "value") else p.diagnostic)


def test_echo_and_rejections(make_server) -> None:
    srv = make_server()
    assoc = scu().associate("127.0.0.1", srv.port, ae_title="SPINEAI")
    assert assoc.is_established
    assert assoc.send_c_echo().Status == 0x0000
    assoc.release()

    bad = scu("INTRUDER").associate("127.0.0.1", srv.port, ae_title="SPINEAI")
    assert bad.is_rejected and _reject_reason(bad) == REJECT_CALLING_AE
    wrong_called = scu().associate("127.0.0.1", srv.port, ae_title="NOTUS")
    assert wrong_called.is_rejected and _reject_reason(wrong_called) == REJECT_CALLED_AE


def test_caller_pinned_to_another_host_is_rejected(make_server) -> None:
    srv = make_server(access={"allowed_callers": [{"ae_title": TEST_AET, "host": "10.11.12.13"}]})
    assoc = scu().associate("127.0.0.1", srv.port, ae_title="SPINEAI")
    assert assoc.is_rejected and _reject_reason(assoc) == REJECT_CALLING_AE


def test_low_disk_space_refuses_new_associations(make_server) -> None:
    srv = make_server(storage={"min_free_mb": 10**9})
    assoc = scu().associate("127.0.0.1", srv.port, ae_title="SPINEAI")
    assert assoc.is_rejected and _reject_reason(assoc) == REJECT_CONGESTION


def test_unsupported_sop_class_is_not_negotiated(make_server) -> None:
    srv = make_server()
    ae = AE(ae_title=TEST_AET)
    ae.add_requested_context("1.2.840.10008.5.1.4.1.1.4.2")  # MR Spectroscopy
    assoc = ae.associate("127.0.0.1", srv.port, ae_title="SPINEAI")
    assert not assoc.is_established


# --------------------------------------------------------------------------- storing
@pytest.mark.slow
def test_store_study_is_durable_and_counted_once(make_server, study: Path) -> None:
    srv = make_server()
    files = dicom_files(study)
    assert store_files(srv.port, files) == [0] * len(files)
    assert store_files(srv.port, files[:3]) == [0, 0, 0]  # duplicates: Success, counted once
    spooled = list(srv.spool.scan())
    assert len(spooled) == len(files)
    (row,) = srv.state.list_studies()
    assert row.n_instances == len(files) and row.change_seq == len(files)
    # Stored exactly as sent (dataset bytes unchanged), as a valid Part 10 file.
    src = dcmread(files[0])
    dst = dcmread(next(p for *_, p in spooled if p.name == f"{src.SOPInstanceUID}.dcm"))
    assert dst.file_meta.TransferSyntaxUID == src.file_meta.TransferSyntaxUID
    assert dst.PixelData == src.PixelData and dst.StudyInstanceUID == src.StudyInstanceUID
    assert not [p for p in srv.spool.root.rglob("*") if ".tmp-" in p.name]


@pytest.mark.slow
@pytest.mark.parametrize("syntax", ["rle", "jpeg-ls", "implicit", "deflate"])
def test_transfer_syntaxes_are_stored_as_received(make_server, tmp_path: Path, syntax: str) -> None:
    from pipeline.tools.phantom import PhantomSpec, render_phantom, write_study

    spec = PhantomSpec.small(seed=3, n_slices=3)
    src = tmp_path / "src"
    if syntax in ("rle", "jpeg-ls"):
        write_study(render_phantom(spec), src, transfer_syntax=syntax)
        files = dicom_files(src)[:2]
    else:
        write_study(render_phantom(spec), src)
        files = []
        for f in dicom_files(src)[:2]:
            ds = dcmread(f)
            ts = ImplicitVRLittleEndian if syntax == "implicit" else DeflatedExplicitVRLittleEndian
            out = tmp_path / f"{syntax}_{f.name}"
            ds.file_meta.TransferSyntaxUID = ts
            ds.save_as(out, enforce_file_format=True)
            files.append(out)
    srv = make_server()
    assert store_files(srv.port, files) == [0, 0]
    for f in files:
        sent = dcmread(f)
        (path,) = [p for *_, p in srv.spool.scan() if p.name == f"{sent.SOPInstanceUID}.dcm"]
        got = dcmread(path)
        assert got.file_meta.TransferSyntaxUID == sent.file_meta.TransferSyntaxUID
        assert (got.pixel_array == sent.pixel_array).all()


def test_corrupt_instance_gets_an_error_status_and_nothing_is_stored(
    make_server, study: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pynetdicom.dsutils import split_dataset

    good = dicom_files(study)[0]
    _meta, offset = split_dataset(good)
    raw = good.read_bytes()
    bad = tmp_path / "corrupt.dcm"
    bad.write_bytes(raw[:offset] + b"\xff" * 64 + raw[offset + 64 :])  # the dataset's first elements are garbage
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)  # send the file's bytes as they are
    srv = make_server()
    assert store_files(srv.port, [bad, good]) == [0xC210, 0x0000]
    assert len(list(srv.spool.scan())) == 1


def test_instance_with_truncated_pixels_is_quarantined(make_server, study: Path, tmp_path: Path) -> None:
    ds = dcmread(dicom_files(study)[0])
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]
    f = tmp_path / "short.dcm"
    ds.save_as(f, enforce_file_format=True)
    srv = make_server()
    assert store_files(srv.port, [f]) == [0]
    assert list(srv.spool.scan()) == []
    ((sop, path, reason),) = srv.state.quarantined(ds.StudyInstanceUID)
    assert sop == ds.SOPInstanceUID and "expected" in reason and Path(path).is_file()
    assert srv.state.get_study(ds.StudyInstanceUID).n_quarantined == 1


def test_non_uid_values_are_refused(make_server, study: Path, tmp_path: Path) -> None:
    ds = dcmread(dicom_files(study)[0])
    ds.SeriesInstanceUID = "../../escape"
    f = tmp_path / "evil.dcm"
    ds.save_as(f, enforce_file_format=True)
    srv = make_server()
    assert store_files(srv.port, [f]) == [0xC210]
    assert not any(srv.spool.root.parent.glob("escape*"))
    assert list(srv.spool.scan()) == []


def test_write_failure_is_out_of_resources_never_success(make_server, study: Path, monkeypatch) -> None:
    srv = make_server()

    def disk_full(*a: object, **k: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(srv.spool, "store_received", disk_full)
    assert store_files(srv.port, dicom_files(study)[:1]) == [0xA700]
    assert srv.state.list_studies() == [] and _spool_files(srv) == []


def test_database_failure_is_out_of_resources(make_server, study: Path, monkeypatch) -> None:
    import sqlite3

    srv = make_server()

    def locked(**k: object) -> bool:
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(srv.state, "record_instance", locked)
    assert store_files(srv.port, dicom_files(study)[:1]) == [0xA700]


# --------------------------------------------------------------------------- TLS
@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("openssl") is None:
        pytest.skip("openssl command not found (needed to make a test certificate)")
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
            str(d / "key.pem"),
            "-out",
            str(d / "cert.pem"),
        ],
        check=True,
        capture_output=True,
    )
    return d


def test_tls_association(make_server, certs: Path) -> None:
    srv = make_server(tls={"enabled": True, "cert": str(certs / "cert.pem"), "key": str(certs / "key.pem")})
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(certs / "cert.pem"))
    assoc = scu().associate("127.0.0.1", srv.port, ae_title="SPINEAI", tls_args=(ctx, "localhost"))
    assert assoc.is_established and assoc.send_c_echo().Status == 0
    assoc.release()
    plain = scu()
    plain.acse_timeout = plain.network_timeout = 3
    assert not plain.associate("127.0.0.1", srv.port, ae_title="SPINEAI").is_established


def test_mutual_tls_requires_a_client_certificate(make_server, certs: Path) -> None:
    pem = str(certs / "cert.pem")
    srv = make_server(tls={"enabled": True, "cert": pem, "key": str(certs / "key.pem"), "ca": pem})
    anonymous = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=pem)
    ae = scu()
    ae.acse_timeout = ae.network_timeout = 3
    assert not ae.associate("127.0.0.1", srv.port, ae_title="SPINEAI", tls_args=(anonymous, "localhost")).is_established
    client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=pem)
    client.load_cert_chain(pem, str(certs / "key.pem"))
    assoc = scu().associate("127.0.0.1", srv.port, ae_title="SPINEAI", tls_args=(client, "localhost"))
    assert assoc.is_established
    assoc.release()


def test_pydicom_is_pydicom3() -> None:  # the deflate test above relies on pydicom 3 writing deflated files
    assert int(pydicom.__version__.split(".")[0]) >= 3


def test_corrupt_compressed_instance_is_test_decoded_and_quarantined(make_server, tmp_path: Path) -> None:
    """Issue 19 item 3: a compressed (RLE) instance whose frame cannot be decoded was acknowledged and stored, and
    sank the run. It is now decoded before Success and quarantined; an intact compressed one is stored."""
    from tests.dicom_factory import corrupt_compressed_pixels

    src = Path(__file__).resolve().parent.parent / "sample_dicom" / "02_acute_osteoporotic_wedge" / "004_SAG_STIR"
    good, bad = (shutil.copy(p, tmp_path / p.name) for p in sorted(src.iterdir())[:2])
    corrupt_compressed_pixels(Path(bad))
    srv = make_server()
    assert store_files(srv.port, [Path(good), Path(bad)]) == [0, 0]
    ds = dcmread(bad, stop_before_pixels=True)
    assert [sop for _, _, sop, _ in srv.spool.scan()] == [dcmread(good, stop_before_pixels=True).SOPInstanceUID]
    ((sop, path, reason),) = srv.state.quarantined(ds.StudyInstanceUID)
    assert sop == ds.SOPInstanceUID and "cannot decode pixel data (RLE Lossless)" in reason and Path(path).is_file()


# --------------------------------------------------------------------------- stalled clients (issue 19 item 1)
def _echo_ok(port: int, **kw: object) -> bool:
    ae = scu()
    ae.acse_timeout = ae.network_timeout = 5
    assoc = ae.associate("127.0.0.1", port, ae_title="SPINEAI", **kw)
    try:
        return bool(assoc.is_established) and int(assoc.send_c_echo().Status) == 0
    finally:
        if assoc.is_established:
            assoc.release()


def test_an_idle_tls_connection_does_not_block_other_callers(make_server, certs: Path, caplog) -> None:
    """Before: the TLS handshake ran in the one accept thread with no time limit, so a client that connected
    and sent nothing kept everybody else out until it went away. Now a second client associates meanwhile, and
    the idle one is cut off after tls.handshake_timeout_s with a log line naming its address."""
    import socket
    import time

    srv = make_server(
        tls={
            "enabled": True,
            "cert": str(certs / "cert.pem"),
            "key": str(certs / "key.pem"),
            "handshake_timeout_s": 1.5,
        }
    )
    ctx = ssl.create_default_context(cafile=str(certs / "cert.pem"))
    with caplog.at_level("WARNING", logger="pipeline.listener.scp"):
        idle = socket.create_connection(("127.0.0.1", srv.port))
        try:
            time.sleep(0.3)  # the idle connection is accepted first
            assert _echo_ok(srv.port, tls_args=(ctx, "localhost"))
            idle.settimeout(10)
            assert idle.recv(1) == b""  # closed by the listener after the handshake timeout
        finally:
            idle.close()
        # ssl closes the socket inside wrap_socket, before the listener logs: the line may come just after the EOF
        wait_for(
            lambda: any("TLS handshake with 127.0.0.1" in r.getMessage() for r in caplog.records),
            10,
            "the listener's log line about the idle TLS connection",
        )
    assert _echo_ok(srv.port, tls_args=(ctx, "localhost"))


@pytest.mark.parametrize("sent", [b"", b"\x01\x00\x00\x00\x00\xcd\x00\x01"], ids=["nothing", "partial-rq-header"])
def test_a_stalled_plain_connection_does_not_block_other_callers(make_server, sent: bytes) -> None:
    """Plain DICOM: a client that connects and sends nothing, or only the start of an A-ASSOCIATE-RQ, neither
    blocks others (each connection has its own thread) nor keeps its socket for ever (network / ACSE timeout)."""
    import socket

    srv = make_server(network={"network_timeout_s": 1.0, "acse_timeout_s": 1.0})
    stalled = socket.create_connection(("127.0.0.1", srv.port))
    try:
        stalled.sendall(sent)
        assert _echo_ok(srv.port)
        stalled.settimeout(15)
        data = b""
        while chunk := stalled.recv(4096):  # the listener gives up on it: A-ABORT / close
            data += chunk
    finally:
        stalled.close()
    assert _echo_ok(srv.port)


def test_invalid_uid_values_are_hashed_in_logs(make_server, study: Path, tmp_path: Path, caplog) -> None:
    """Issue 19 item 7: an invalid UID value was logged verbatim (up to 70 characters), e.g. a StudyInstanceUID
    holding identifying text. Only a short hash of it is logged now."""
    from pipeline.listener.spool import uid_for_log

    secret = "DOE^JANE 19500101 ACC778812"
    ds = dcmread(dicom_files(study)[0])
    ds.StudyInstanceUID = secret
    f = tmp_path / "leaky.dcm"
    ds.save_as(f, enforce_file_format=True)
    srv = make_server()
    with caplog.at_level("DEBUG"):
        assert store_files(srv.port, [f]) == [0xC210]
    # the listener's own log lines (pydicom's warnings about the value come from the test's SCU encoding it)
    text = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("pipeline"))
    assert "DOE" not in text and "ACC778812" not in text
    assert uid_for_log(secret) in text and uid_for_log(secret).startswith("<invalid UID sha256:")
    assert uid_for_log("1.2.840.10008.1.1") == "1.2.840.10008.1.1"


# --------------------------------------------------------------------------- instance size (issue 19 item 5)
def _large_instance(study: Path, out: Path, *, side: int, name: str = "") -> Path:
    """An instance of the study with a ``side`` x ``side`` 16-bit image (2 * side^2 bytes of pixel data)."""
    import numpy as np

    ds = dcmread(dicom_files(study)[0])
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    ds.Rows = ds.Columns = side
    ds.PixelData = np.random.default_rng(side).integers(0, 4000, (side, side), dtype=np.uint16).tobytes()
    if name:
        ds.PatientName = name
    ds.save_as(out, enforce_file_format=True)
    return out


def _spool_files(srv: Server) -> list[Path]:
    """Every file in the spool but the state database and the lock (instances, temporary files, quarantine)."""
    return sorted(
        p
        for p in srv.spool.root.rglob("*")
        if p.is_file() and not p.name.startswith("state.sqlite3") and p.name != ".lock"
    )


def test_an_instance_over_max_instance_mb_is_refused_and_nothing_is_spooled(
    make_server, study: Path, tmp_path: Path, caplog
) -> None:
    """Before: no size limit, and a 256 MiB instance took the listener from 244 MB to 1.04 GB resident. Now an
    instance larger than storage.max_instance_mb is refused with 0xA701 (out of resources), logged by its UID and
    size, nothing of it stays in the spool, and the association carries on."""
    big = _large_instance(study, tmp_path / "big.dcm", side=1100, name="CANARYBIG^PATIENT")  # 2.3 MiB
    small = dicom_files(study)[1]
    srv = make_server(storage={"max_instance_mb": 1})
    with caplog.at_level("INFO", logger="pipeline"):
        assert store_files(srv.port, [big, small]) == [0xA701, 0x0000]
    assert [p.name for *_, p in srv.spool.scan()] == [f"{dcmread(small).SOPInstanceUID}.dcm"]
    assert _spool_files(srv) == [p for *_, p in srv.spool.scan()]  # nothing in incoming/ or quarantine/
    (row,) = srv.state.list_studies()
    assert (row.n_instances, row.n_quarantined) == (1, 0)
    text = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("pipeline"))
    assert dcmread(big, stop_before_pixels=True).SOPInstanceUID in text and "max_instance_mb" in text
    assert "CANARYBIG" not in text


def test_checking_a_received_file_leaves_its_pixel_data_on_disk(study: Path, tmp_path: Path) -> None:
    """The handler's checks read the header of the received file and the pixel data's length, never its value
    (which is what kept a whole instance in memory)."""
    from pipeline.listener.scp import _read_received

    f = _large_instance(study, tmp_path / "big.dcm", side=1100)
    ds = _read_received(f)
    assert unusable_reason(ds, str(ds.file_meta.TransferSyntaxUID)) is None
    assert ds.get_item(0x7FE00010, keep_deferred=True).value is None  # still deferred: not read
    ds.Rows = 1200  # 1200 x 1100 pixels are more than the file holds
    assert "expected" in unusable_reason(ds, str(ds.file_meta.TransferSyntaxUID))
    assert ds.get_item(0x7FE00010, keep_deferred=True).value is None


def test_an_instance_under_the_limit_is_streamed_to_the_spool_byte_identical(
    make_server, study: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The data set is written to the spool as it arrives (no copy in memory, no file in the system temp folder)
    and stored exactly as sent: the stored file is pynetdicom's file meta + the sender's data set bytes."""
    import tempfile

    from pynetdicom.dsutils import split_dataset

    f = _large_instance(study, tmp_path / "big.dcm", side=1100)
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)  # the file's data set bytes go on the wire
    before = set(Path(tempfile.gettempdir()).glob("tmp*.dcm"))
    srv = make_server(storage={"max_instance_mb": 4})
    assert store_files(srv.port, [f]) == [0]
    ((*_, stored),) = srv.spool.scan()
    _meta, sent_at = split_dataset(f)
    _meta, stored_at = split_dataset(stored)
    assert stored.read_bytes()[stored_at:] == f.read_bytes()[sent_at:]
    got = dcmread(stored)
    assert got.file_meta.TransferSyntaxUID == dcmread(f).file_meta.TransferSyntaxUID
    assert got.file_meta.MediaStorageSOPInstanceUID == got.SOPInstanceUID
    assert _spool_files(srv) == [stored] and stored.stat().st_mode & 0o777 == 0o640
    assert set(Path(tempfile.gettempdir()).glob("tmp*.dcm")) <= before
    (row,) = srv.state.list_studies()
    assert row.n_instances == 1


def test_disk_full_while_receiving_is_out_of_resources_and_nothing_is_left(
    make_server, study: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.listener.spool import IncomingFile

    def enospc(self: IncomingFile, data: memoryview) -> int:
        raise OSError(28, "No space left on device")

    srv = make_server()
    files = dicom_files(study)[:2]
    monkeypatch.setattr(IncomingFile, "_write_chunk", enospc)
    assert store_files(srv.port, files) == [0xA700, 0xA700]
    assert _spool_files(srv) == [] and srv.state.list_studies() == []
    monkeypatch.undo()
    assert store_files(srv.port, files) == [0, 0]  # space is back: the sender's retry is stored
    assert len(list(srv.spool.scan())) == 2


def test_an_interrupted_transfer_leaves_no_file_behind(make_server, study: Path) -> None:
    """A sender that goes away in the middle of a data set: its partial file is removed when the connection
    closes (and at start-up, after a crash), never acknowledged, never in the study."""
    import time

    from tests.listener_helpers import c_store_rq, pdata_pdu, raw_associate

    srv = make_server()
    data = dicom_files(study)[0].read_bytes()[1000:]
    sock = raw_associate(srv.port)
    sock.sendall(pdata_pdu(1, 3, c_store_rq("1.2.3.4.5")) + pdata_pdu(1, 0, data[:5000]))
    deadline = time.monotonic() + 5
    while not list((srv.spool.root / "incoming").iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list((srv.spool.root / "incoming").iterdir()), "the data set is written to the spool as it arrives"
    sock.close()
    deadline = time.monotonic() + 10
    while list((srv.spool.root / "incoming").iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _spool_files(srv) == [] and list((srv.spool.root / "incoming").iterdir()) == []
    assert _echo_ok(srv.port)


def test_a_data_set_in_pynetdicoms_own_temporary_file_is_copied_in(
    make_server, study: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Should a pynetdicom version stop creating its file through the hook, the handler copies pynetdicom's file
    into the spool: the same statuses and the same stored bytes."""
    import tempfile

    from pynetdicom import dimse_messages

    srv = make_server(storage={"max_instance_mb": 1})
    monkeypatch.setattr(dimse_messages, "NamedTemporaryFile", tempfile.NamedTemporaryFile)
    f = dicom_files(study)[0]
    assert store_files(srv.port, [f]) == [0]
    ((*_, stored),) = srv.spool.scan()
    assert dcmread(stored).PixelData == dcmread(f).PixelData
    assert _spool_files(srv) == [stored]


@pytest.mark.parametrize("sent", [b"", b"\x01\x00\x00\x00\x00\xcd\x00\x01", b"\x09garbage"], ids=["probe", "rq", "bad"])
def test_connections_closed_before_their_association_request_free_their_slot_at_once(make_server, sent: bytes) -> None:
    """Found by benchmarks/faults.py (issue 19 fuzzing): a connection closed before its A-ASSOCIATE-RQ was read (a
    port probe, a truncated request, garbage) kept one of network.max_associations for acse_timeout_s, because
    pynetdicom's acceptor went on waiting for the request; a few of them refused every caller ("local limit
    exceeded") for that long. Now the slot is freed when the connection closes."""
    import socket
    import time

    srv = make_server(network={"max_associations": 2, "acse_timeout_s": 60})
    for _ in range(6):
        with socket.create_connection(("127.0.0.1", srv.port)) as s:
            s.sendall(sent)
    time.sleep(0.5)
    assert _echo_ok(srv.port)
