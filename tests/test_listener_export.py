"""Sending results: C-STORE to a DICOM peer and STOW-RS to an HTTP peer, and what counts as delivered."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.sop_class import MRImageStorage

from pipeline.listener.config import Destination
from pipeline.listener.export import send_files, stow_results
from tests.listener_helpers import dicom_files, free_port, make_small_study

pytestmark = pytest.mark.network


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return dicom_files(make_small_study(tmp_path_factory.mktemp("export") / "s", seed=12))[:3]


def _uids(files: list[Path]) -> list[str]:
    return [str(dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files]


def _response(stored: list[str], failed: dict[str, int]) -> Dataset:
    ds = Dataset()
    ds.ReferencedSOPSequence = [Dataset() for _ in stored]
    for item, uid in zip(ds.ReferencedSOPSequence, stored, strict=True):
        item.ReferencedSOPInstanceUID = uid
    ds.FailedSOPSequence = [Dataset() for _ in failed]
    for item, (uid, reason) in zip(ds.FailedSOPSequence, failed.items(), strict=True):
        item.ReferencedSOPInstanceUID = uid
        item.FailureReason = reason
    return ds


# --------------------------------------------------------------------------- STOW-RS response rules
def test_stow_results_200_202_409(files: list[Path]) -> None:
    a, b, c = _uids(files)
    datasets = {f: dcmread(f, stop_before_pixels=True) for f in files}
    assert set(stow_results(datasets, None, 200).values()) == {None}
    partial = stow_results(datasets, _response([a], {b: 0xA700}), 202)
    assert partial[files[0]] is None
    assert partial[files[1]] == "STOW-RS HTTP 202: failure reason 0xA700"
    assert "not acknowledged" in partial[files[2]]  # neither stored nor failed: not delivered
    conflict = stow_results(datasets, _response([], {a: 0xC122}), 409)
    assert conflict[files[0]] == "STOW-RS HTTP 409: failure reason 0xC122"
    assert "no instance stored" in conflict[files[1]]


class _StowPeer:
    """A DICOMweb STOW-RS endpoint on localhost answering with a set status and body; records what it got."""

    def __init__(self) -> None:
        self.status = 200
        self.body: dict | None = None
        self.requests: list[tuple[str, str, int]] = []
        peer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                n = int(self.headers.get("Content-Length") or 0)
                data = self.rfile.read(n) if n else self._read_chunked()
                peer.requests.append((self.path, self.headers.get("Content-Type", ""), len(data)))
                payload = json.dumps(peer.body).encode() if peer.body is not None else b""
                self.send_response(peer.status)
                self.send_header("Content-Type", "application/dicom+json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _read_chunked(self) -> bytes:
                out = b""
                while True:
                    size = int(self.rfile.readline().strip(), 16)
                    if size == 0:
                        self.rfile.readline()
                        return out
                    out += self.rfile.read(size)
                    self.rfile.readline()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/dicom-web"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def stow_peer() -> Iterator[_StowPeer]:
    p = _StowPeer()
    yield p
    p.close()


def test_stow_over_http(stow_peer: _StowPeer, files: list[Path]) -> None:
    a, b, c = _uids(files)
    dest = Destination(name="web", kind="stow", url=stow_peer.url, headers={"Authorization": "Bearer t"})
    stow_peer.body = _response([a, b, c], {}).to_json_dict()
    assert set(send_files(dest, files, calling_ae_title="SPINEAI").values()) == {None}
    path, ctype, size = stow_peer.requests[-1]
    assert path == "/dicom-web/studies" and ctype.startswith("multipart/related") and size > 1000

    stow_peer.status, stow_peer.body = 202, _response([a], {b: 0xA700, c: 0xC000}).to_json_dict()
    r = send_files(dest, files, calling_ae_title="SPINEAI")
    assert r[files[0]] is None and r[files[1]].endswith("0xA700") and r[files[2]].endswith("0xC000")

    stow_peer.status, stow_peer.body = 409, _response([], {a: 0xC122}).to_json_dict()
    r = send_files(dest, files, calling_ae_title="SPINEAI")
    assert r[files[0]].endswith("0xC122") and all(v is not None for v in r.values())

    stow_peer.status, stow_peer.body = 503, None
    assert set(send_files(dest, files, calling_ae_title="SPINEAI").values()) == {"STOW-RS HTTP 503"}


def test_stow_peer_down(files: list[Path]) -> None:
    dest = Destination(name="web", kind="stow", url=f"http://127.0.0.1:{free_port()}/dicom-web", timeout_s=3)
    r = send_files(dest, files[:1], calling_ae_title="SPINEAI")
    assert "ConnectionError" in r[files[0]]


# --------------------------------------------------------------------------- C-STORE
class _StorePeer:
    def __init__(self, status: int = 0) -> None:
        self.status = status
        self.received: list[str] = []
        self.calling: list[str] = []
        ae = AE(ae_title="PACS")
        ae.add_supported_context(MRImageStorage)
        self.server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, self._store)])
        self.port = int(self.server.server_address[1])

    def _store(self, event: object) -> int:
        self.received.append(str(event.dataset.SOPInstanceUID))  # type: ignore[attr-defined]
        self.calling.append(event.assoc.requestor.ae_title)  # type: ignore[attr-defined]
        return self.status

    def close(self) -> None:
        self.server.shutdown()


def test_cstore_delivered_warning_and_failure(files: list[Path]) -> None:
    peer = _StorePeer()
    try:
        dest = Destination(name="pacs", ae_title="PACS", host="127.0.0.1", port=peer.port)
        assert set(send_files(dest, files, calling_ae_title="SPINEAI").values()) == {None}
        assert peer.received == _uids(files) and set(peer.calling) == {"SPINEAI"}
        peer.status = 0xB000  # coercion: stored with a warning
        assert set(send_files(dest, files[:1], calling_ae_title="SPINEAI").values()) == {None}
        peer.status = 0xA700
        assert send_files(dest, files[:1], calling_ae_title="SPINEAI")[files[0]] == "C-STORE status 0xA700"
    finally:
        peer.close()


def test_cstore_peer_down_or_wrong_ae(files: list[Path]) -> None:
    dest = Destination(name="pacs", ae_title="PACS", host="127.0.0.1", port=free_port(), timeout_s=3)
    r = send_files(dest, files[:1], calling_ae_title="SPINEAI")
    assert "association with PACS@127.0.0.1" in r[files[0]]
    assert "no connection" in r[files[0]] or "aborted" in r[files[0]]


def test_unreadable_result_file_is_reported(tmp_path: Path) -> None:
    bad = tmp_path / "sr.dcm"
    bad.write_bytes(b"not dicom")
    dest = Destination(name="pacs", ae_title="PACS", host="127.0.0.1", port=free_port(), timeout_s=3)
    assert "cannot read result file" in send_files(dest, [bad], calling_ae_title="SPINEAI")[bad]
