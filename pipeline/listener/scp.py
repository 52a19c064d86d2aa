"""The DICOM side of the listener: a pynetdicom Storage SCP (C-ECHO, C-STORE) with access control.

Handlers are thin and never let an exception escape: every failure becomes a DICOM status. Success
(0x0000) is returned only after the instance is durably in the spool (:meth:`Spool.store_received`) and recorded
in the state database. A data set is never held in memory whole: pynetdicom writes its fragments to a file in the
spool's ``incoming/`` folder as they arrive (:func:`install_streaming_receive`), the handler reads its header from
that file and renames the file into place. Statuses used:

- ``0xA700`` refused, out of resources: the spool or the database could not be written (disk full, I/O error).
- ``0xA701`` refused, out of resources: the instance is larger than ``storage.max_instance_mb`` (none of it kept).
- ``0xA900`` data set does not match SOP class: the dataset's SOP Class UID is not the presentation context's.
- ``0xC210`` cannot understand: the dataset cannot be decoded, or its Study / Series / SOP Instance UIDs are
  missing or are not UIDs, or its SOP Instance UID differs from the request's.
- ``0xC211`` an unexpected error in the handler (a bug; logged with a traceback).

An instance that decodes but cannot be an image the pipeline can use (no pixel data, pixel data shorter than its
Rows x Columns x frames) is kept in the spool's ``quarantine/`` folder with the reason, logged, answered with
Success (we do hold it) and left out of processing, so the rest of the study goes on.

Association requests are checked before negotiation (``EVT_REQUESTED``; the rules are in
:mod:`pipeline.listener.security`); refusals are A-ASSOCIATE-RJ with the standard reasons: permanent / service
user / "calling AE title not recognised" (caller not in the allow-list, or from another host than configured),
"called AE title not recognised", and transient / service provider (presentation) / "temporary congestion" when
the spool's disk is below ``storage.min_free_mb``.
Logs name AE titles, hosts and UIDs, never patient attributes.
"""

from __future__ import annotations

import logging
import socket
import ssl
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom.uid
from pydicom import dcmread
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pynetdicom import AE, _config, dimse_messages, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from pynetdicom.transport import ThreadedAssociationServer

from pipeline.errors import ConfigError, InputError
from pipeline.ingest.pixels import decode_problem
from pipeline.listener.config import ListenerConfig, uid_for_keyword
from pipeline.listener.security import access_decision, server_ssl_context
from pipeline.listener.spool import IncomingFile, InstanceKey, Spool, clean_uid, uid_for_log
from pipeline.listener.state import StateDB, now_s

logger = logging.getLogger(__name__)

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
INSTANCE_TOO_LARGE = 0xA701  # "Refused: Out of Resources" (A7xx) too, told apart from a full disk in the sender's log
SOP_CLASS_MISMATCH = 0xA900
CANNOT_UNDERSTAND = 0xC210
HANDLER_FAILURE = 0xC211


def unusable_reason(ds: Dataset, transfer_syntax: str) -> str | None:
    """Why a decoded instance cannot be an image for the pipeline (quarantine), or None.

    Pixel data present, Rows / Columns present; for native (uncompressed) encodings at least
    Rows x Columns x Samples x Frames x BitsAllocated / 8 bytes of pixel data; compressed (encapsulated)
    pixel data is test-decoded with the pipeline's own decoders (:func:`pipeline.ingest.decode_problem`), so a
    corrupt JPEG / JPEG-LS / JPEG 2000 / RLE frame is quarantined at reception instead of failing the run.
    """
    if "PixelData" not in ds:
        return "no Pixel Data (7FE0,0010)"
    rows, cols = ds.get("Rows"), ds.get("Columns")
    if not rows or not cols:
        return "Rows or Columns missing or zero"
    ts = pydicom.uid.UID(transfer_syntax)
    if ts.is_encapsulated:
        if not hasattr(ds, "file_meta") or "TransferSyntaxUID" not in ds.file_meta:
            ds.file_meta = getattr(ds, "file_meta", FileMetaDataset())
            ds.file_meta.TransferSyntaxUID = ts
        return decode_problem(ds)
    try:
        frames = int(ds.get("NumberOfFrames") or 1)
        bits = int(ds.get("BitsAllocated") or 0)
        samples = int(ds.get("SamplesPerPixel") or 1)
    except (TypeError, ValueError):
        return "NumberOfFrames / BitsAllocated / SamplesPerPixel are not integers"
    if bits not in (1, 8, 16, 32, 64):
        return f"BitsAllocated {bits} is not 1, 8, 16, 32 or 64"
    expected = (int(rows) * int(cols) * samples * frames * bits + 7) // 8
    actual = _value_length(ds, 0x7FE00010)
    if actual < expected:
        shape = f"{rows} x {cols} x {samples} x {frames} at {bits} bits"
        return f"Pixel Data holds {actual} bytes, {expected} expected for {shape}"
    return None


def _value_length(ds: Dataset, tag: int) -> int:
    """Length in bytes of an element's value, without reading a value that was deferred (left in the file)."""
    elem = ds.get_item(tag, keep_deferred=True)  # pydicom 3 reads a deferred value here unless told not to
    if isinstance(elem, RawDataElement):
        return len(elem.value) if elem.value is not None else int(elem.length)
    if isinstance(elem, DataElement):
        return len(elem.value or b"")
    return 0


# Values longer than this stay in the received file while its header is checked (the pixel data, mostly).
_DEFER_BYTES = 1 << 20


def _read_received(path: Path) -> Dataset:
    """The received data set, every top-level element converted (a broken encoding fails here, not later) but the
    large ones, which stay in the file: bounded memory whatever the size of the instance."""
    ds = dcmread(path, defer_size=_DEFER_BYTES)
    for tag in list(ds.keys()):
        raw = ds.get_item(tag, keep_deferred=True)
        if isinstance(raw, RawDataElement) and raw.value is None and raw.length:
            continue  # deferred: its length was read and checked against the file, its value is not needed here
        _ = ds[tag]
    return ds


@dataclass
class _AssocStats:
    calling_ae: str
    host: str
    stored: int = 0
    duplicates: int = 0
    quarantined: int = 0
    failed: int = 0


class Receiver:
    """Event handlers of the Storage SCP (bound with :meth:`handlers`)."""

    def __init__(self, cfg: ListenerConfig, spool: Spool, state: StateDB) -> None:
        self.cfg = cfg
        self.spool = spool
        self.state = state
        self._stats: dict[int, _AssocStats] = {}
        self._incoming: dict[str, tuple[int, IncomingFile]] = {}  # path -> (id of the association, file)
        self._lock = threading.Lock()

    def handlers(self) -> list[Any]:
        return [
            (evt.EVT_REQUESTED, self.on_requested),
            (evt.EVT_C_ECHO, self.on_echo),
            (evt.EVT_C_STORE, self.on_store),
            (evt.EVT_RELEASED, self.on_closed),
            (evt.EVT_ABORTED, self.on_closed),
            (evt.EVT_CONN_CLOSE, self.on_connection_closed),
        ]

    # ------------------------------------------------------------------ received data sets
    def open_incoming(self, assoc: Any) -> IncomingFile:
        """The file pynetdicom writes the next C-STORE data set of ``assoc`` to (see :func:`_incoming_file`)."""
        incoming = self.spool.incoming(self.cfg.storage.max_instance_mb * 1024 * 1024)
        with self._lock:
            self._incoming[incoming.name] = (id(assoc), incoming)
        return incoming

    def _take_incoming(self, path: Path) -> IncomingFile | None:
        with self._lock:
            entry = self._incoming.pop(str(path), None)
        return entry[1] if entry else None

    def on_connection_closed(self, event: Any) -> None:
        assoc = event.assoc
        self._discard_incoming(assoc)
        if assoc.is_acceptor and assoc.requestor.primitive is None:
            # Closed before its A-ASSOCIATE-RQ was read (a port probe, a truncated request, garbage): pynetdicom's
            # acceptor thread would go on waiting acse_timeout_s for the request, counted as one of
            # max_associations all that time, so a few such connections refused every caller ("local limit
            # exceeded"; found by benchmarks/faults.py). An empty item in the DUL's queue ends that wait now.
            assoc.dul.to_user_queue.put(None)

    def _discard_incoming(self, assoc: Any) -> None:
        """Delete the partial data sets of an association that ended in the middle of a transfer."""
        with self._lock:
            left = [path for path, (owner, _f) in self._incoming.items() if owner == id(assoc)]
            files = [self._incoming.pop(path)[1] for path in left]
        for f in files:
            f.discard()
            logger.info("association ended in the middle of a C-STORE: %d bytes received and discarded", f.size_bytes)

    # ------------------------------------------------------------------ association
    def on_requested(self, event: Any) -> None:
        assoc = event.assoc
        rq = assoc.requestor.primitive
        calling = _ae_text(rq.calling_ae_title)
        called = _ae_text(rq.called_ae_title)
        host = str(assoc.requestor.address)
        try:
            free_mb = self.spool.free_mb()
        except OSError as exc:
            logger.error("spool %s: cannot read free space (%s)", self.spool.root, exc.strerror)
            free_mb = 0.0
        refusal = access_decision(
            self.cfg.access,
            our_ae_title=self.cfg.network.ae_title,
            calling_ae_title=calling,
            called_ae_title=called,
            peer_host=host,
            free_mb=free_mb,
            min_free_mb=self.cfg.storage.min_free_mb,
        )
        if refusal is not None:
            (result, source, reason), why = refusal
            logger.warning("association from %s@%s refused: %s", calling, host, why)
            assoc.acse.send_reject(result, source, reason)
            assoc.kill()  # as pynetdicom's own rejections do: the DUL sends the A-ASSOCIATE-RJ before the socket closes
            return
        with self._lock:
            self._stats[id(assoc)] = _AssocStats(calling, host)
        logger.info("association from %s@%s accepted", calling, host)

    def on_closed(self, event: Any) -> None:
        self._discard_incoming(event.assoc)
        with self._lock:
            st = self._stats.pop(id(event.assoc), None)
        if st is None:
            return
        how = "released" if event.event is evt.EVT_RELEASED else "aborted"
        logger.info(
            "association from %s@%s %s: %d stored, %d duplicates, %d quarantined, %d failed",
            st.calling_ae,
            st.host,
            how,
            st.stored,
            st.duplicates,
            st.quarantined,
            st.failed,
        )

    def _stat(self, event: Any) -> _AssocStats:
        with self._lock:
            st = self._stats.get(id(event.assoc))
            if st is None:  # cannot happen after on_requested, but never fail a store on bookkeeping
                st = self._stats[id(event.assoc)] = _AssocStats("?", str(event.assoc.requestor.address))
            return st

    # ------------------------------------------------------------------ services
    def on_echo(self, event: Any) -> int:
        return SUCCESS

    def on_store(self, event: Any) -> int | Dataset:
        st = self._stat(event)
        incoming: IncomingFile | None = None
        try:
            path = Path(event.dataset_path)
            incoming = self._take_incoming(path)
            if incoming is None:  # pynetdicom wrote the data set to a file of its own (see _incoming_file)
                incoming = self.spool.receive_file(path, self.cfg.storage.max_instance_mb * 1024 * 1024)
            status = self._store(event, st, incoming)
        except Exception:  # a bug: say so, never Success, never a crashed association
            logger.exception("C-STORE from %s@%s: unexpected error", st.calling_ae, st.host)
            status = HANDLER_FAILURE
        finally:
            if incoming is not None:
                incoming.discard()  # refused, or already moved into the study by store_received
        code = int(status.Status) if isinstance(status, Dataset) else status
        if code != SUCCESS:
            st.failed += 1
        return status

    def _store(self, event: Any, st: _AssocStats, incoming: IncomingFile) -> int | Dataset:
        if incoming.error is not None:
            logger.error(
                "C-STORE from %s@%s: instance %s not stored: %s: status 0xA700",
                st.calling_ae,
                st.host,
                _request_uid(event),
                incoming.error.strerror or incoming.error,
            )
            return OUT_OF_RESOURCES
        if incoming.too_large:
            limit = self.cfg.storage.max_instance_mb
            logger.warning(
                "C-STORE from %s@%s: instance %s refused: %.1f MiB, over storage.max_instance_mb=%d: status 0xA701",
                st.calling_ae,
                st.host,
                _request_uid(event),
                incoming.size_bytes / (1024 * 1024),
                limit,
            )
            status = Dataset()
            status.Status = INSTANCE_TOO_LARGE
            status.ErrorComment = f"instance larger than {limit} MiB (max_instance_mb)"
            return status
        try:
            ds = _read_received(incoming.path)
        except Exception as exc:
            logger.warning(
                "C-STORE from %s@%s: instance %s cannot be decoded (%s): status 0xC210",
                st.calling_ae,
                st.host,
                _request_uid(event),
                type(exc).__name__,
            )
            return CANNOT_UNDERSTAND
        try:
            key = InstanceKey(
                study_uid=clean_uid(ds.get("StudyInstanceUID"), "StudyInstanceUID"),
                series_uid=clean_uid(ds.get("SeriesInstanceUID"), "SeriesInstanceUID"),
                sop_uid=clean_uid(ds.get("SOPInstanceUID"), "SOPInstanceUID"),
                sop_class_uid=clean_uid(ds.get("SOPClassUID"), "SOPClassUID"),
            )
        except InputError as exc:
            logger.warning(
                "C-STORE from %s@%s: instance %s refused: %s: status 0xC210",
                st.calling_ae,
                st.host,
                _request_uid(event),
                exc,
            )
            return CANNOT_UNDERSTAND
        if key.sop_uid != _request_uid(event):
            logger.warning(
                "C-STORE from %s@%s: dataset SOP Instance UID %s differs from the request's %s: status 0xC210",
                st.calling_ae,
                st.host,
                key.sop_uid,
                _request_uid(event),
            )
            return CANNOT_UNDERSTAND
        if key.sop_class_uid != str(event.context.abstract_syntax):
            logger.warning(
                "C-STORE from %s@%s: instance %s has SOP class %s on a %s presentation context: status 0xA900",
                st.calling_ae,
                st.host,
                key.sop_uid,
                key.sop_class_uid,
                event.context.abstract_syntax,
            )
            return SOP_CLASS_MISMATCH
        reason = unusable_reason(ds, str(event.context.transfer_syntax))
        now = now_s()
        try:
            stored = self.spool.store_received(key, incoming, quarantine_reason=reason)
        except OSError as exc:
            logger.error(
                "C-STORE: instance %s of study %s not stored: %s: status 0xA700",
                key.sop_uid,
                key.study_uid,
                exc.strerror or exc,
            )
            return OUT_OF_RESOURCES
        changed = False
        try:
            if reason is not None:
                self.state.record_quarantine(
                    study_uid=key.study_uid, sop_uid=key.sop_uid, path=str(stored.path), reason=reason, now=now
                )
            else:
                changed = self.state.record_instance(
                    study_uid=key.study_uid,
                    series_uid=key.series_uid,
                    sop_uid=key.sop_uid,
                    sop_class_uid=key.sop_class_uid,
                    path=str(stored.path),
                    sha256=stored.sha256,
                    size_bytes=stored.size_bytes,
                    calling_ae=st.calling_ae,
                    now=now,
                )
        except Exception as exc:  # sqlite3.Error and anything else: the file is on disk, the record is not
            logger.error(
                "C-STORE: instance %s of study %s stored but not recorded (%s): status 0xA700",
                key.sop_uid,
                key.study_uid,
                exc,
            )
            return OUT_OF_RESOURCES
        if reason is not None:
            st.quarantined += 1
            logger.warning(
                "study %s: instance %s quarantined (%s): %s", key.study_uid, key.sop_uid, reason, stored.path
            )
        elif not changed:
            st.duplicates += 1
            logger.debug("study %s: duplicate of %s (same content, counted once)", key.study_uid, key.sop_uid)
        else:
            st.stored += 1
            logger.debug("study %s series %s: stored %s", key.study_uid, key.series_uid, key.sop_uid)
        return SUCCESS


def _request_uid(event: Any) -> str:
    """The request's Affected SOP Instance UID, fit for a log line (an invalid value is hashed)."""
    try:
        return uid_for_log(event.request.AffectedSOPInstanceUID)
    except AttributeError:
        return "?"


def _ae_text(value: object) -> str:
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    return str(value).strip()


_system_temp_file = tempfile.NamedTemporaryFile


def _incoming_file(*args: Any, **kwargs: Any) -> Any:
    """Stands in for ``NamedTemporaryFile`` in :mod:`pynetdicom.dimse_messages`: the file a C-STORE data set is
    written to. For an association of our server (pynetdicom calls this in the association's network thread) it
    is a file in the spool (:meth:`Receiver.open_incoming`); for any other SCP in the process, pynetdicom's own."""
    assoc = getattr(threading.current_thread(), "assoc", None)
    receiver = getattr(getattr(assoc, "_server", None), "receiver", None)
    if isinstance(receiver, Receiver):
        return receiver.open_incoming(assoc)
    return _system_temp_file(*args, **kwargs)


def install_streaming_receive() -> None:
    """Have pynetdicom write received C-STORE data sets to files as they arrive, ours into the spool.

    Without ``STORE_RECV_CHUNKED_DATASET`` pynetdicom collects a data set in memory and the handler made two more
    copies of it (issue 19: one 256 MiB instance took the listener from 244 MB to 1.04 GB resident). With it,
    pynetdicom (>= 2.0) writes the fragments to a temporary file and hands the handler ``event.dataset_path``. The
    setting is process-wide: any other SCP in this process (a test's peer) then reads its data sets from a file,
    which ``event.dataset`` does by itself. pynetdicom creates that file with ``NamedTemporaryFile`` in the system
    temporary folder; for our associations :func:`_incoming_file` creates it in the spool instead, so that storing
    it is a rename, its size is capped while it arrives, a full disk becomes a status rather than an exception in
    pynetdicom's network thread, and a crash leaves nothing outside the spool. Should a pynetdicom version stop
    calling it, the handler copies pynetdicom's file into the spool (:meth:`Spool.receive_file`): same results.
    """
    _config.STORE_RECV_CHUNKED_DATASET = True
    if getattr(dimse_messages, "NamedTemporaryFile", None) is not _incoming_file:
        dimse_messages.NamedTemporaryFile = _incoming_file


def build_ae(cfg: ListenerConfig) -> AE:
    """The Application Entity of the listener: Verification plus the configured storage SOP classes."""
    net = cfg.network
    ae = AE(ae_title=net.ae_title)
    ae.maximum_associations = net.max_associations
    ae.maximum_pdu_size = net.max_pdu_bytes
    ae.acse_timeout = net.acse_timeout_s
    ae.dimse_timeout = net.dimse_timeout_s
    ae.network_timeout = net.network_timeout_s
    ae.require_called_aet = False  # checked in Receiver.on_requested with the rest of the access rules
    ae.require_calling_aet = []
    syntaxes = [str(uid_for_keyword(kw, "Transfer Syntax")) for kw in net.transfer_syntaxes]  # checked by config
    ae.add_supported_context(Verification, syntaxes)
    for kw in net.sop_classes:
        ae.add_supported_context(str(uid_for_keyword(kw, "SOP Class")), syntaxes)
    return ae


class _Server(ThreadedAssociationServer):
    """pynetdicom's threaded server with the TLS handshake moved off the accept thread.

    pynetdicom wraps each accepted socket with TLS in ``get_request``, i.e. in the single thread that accepts
    connections, with no time limit: one client that connects and never completes the handshake stopped
    everybody else from associating (issue 19). Here ``get_request`` only accepts; the handshake runs in the
    connection's own thread (``process_request_thread``) with ``handshake_timeout_s``, and a failed or timed-out
    handshake is logged with the peer's address and the connection closed.
    """

    handshake_timeout_s: float = 10.0
    read_timeout_s: float | None = None
    receiver: Receiver | None = None  # where _incoming_file finds the spool of an association's server

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        assert self.socket is not None
        client, address = self.socket.accept()
        return client, address

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        ctx = self.ssl_context
        if ctx is not None and isinstance(request, socket.socket) and not isinstance(request, ssl.SSLSocket):
            peer = client_address[0] if isinstance(client_address, tuple) else str(client_address)
            try:
                request.settimeout(self.handshake_timeout_s)
                request = ctx.wrap_socket(request, server_side=True)
            except (OSError, ssl.SSLError, ValueError) as exc:
                what = "timed out" if isinstance(exc, TimeoutError | socket.timeout) else "failed"
                logger.warning(
                    "TLS handshake with %s %s after at most %.0f s (%s): connection closed",
                    peer,
                    what,
                    self.handshake_timeout_s,
                    exc,
                )
                self.shutdown_request(request)
                return
        if isinstance(request, socket.socket):
            # pynetdicom reads the rest of a PDU with a blocking recv() and no time limit: a client that sent the
            # first bytes of a PDU and then nothing held its connection (and one of max_associations) for ever.
            # With a timeout the read fails after network_timeout_s and the association is closed.
            request.settimeout(self.read_timeout_s)
        super().process_request_thread(request, client_address)


def start_server(cfg: ListenerConfig, receiver: Receiver) -> Any:
    """Start the SCP in background threads; returns the pynetdicom server (call ``.shutdown()`` to stop)."""
    ae = build_ae(cfg)
    install_streaming_receive()
    try:
        ctx = server_ssl_context(cfg.tls) if cfg.tls.enabled else None
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"{cfg.source or 'listener config'}: tls: cannot load certificate / key / CA ({exc}); check the paths "
            "and that the key matches the certificate"
        ) from None
    try:
        server = ae.make_server(
            (cfg.network.bind_address, cfg.network.port),
            ssl_context=ctx,
            evt_handlers=receiver.handlers(),
            server_class=_Server,
        )
    except OSError as exc:
        raise ConfigError(
            f"cannot listen on {cfg.network.bind_address}:{cfg.network.port} ({exc.strerror or exc}); is another "
            "listener running, or is the port below 1024 without privileges?"
        ) from None
    assert isinstance(server, _Server)
    server.handshake_timeout_s = cfg.tls.handshake_timeout_s
    server.read_timeout_s = cfg.network.network_timeout_s
    server.receiver = receiver
    ae._servers.append(server)  # as AE.start_server does: AE.shutdown() and the server's shutdown() expect it
    thread = threading.Thread(target=server.serve_forever, name="spine-assess-scp-accept", daemon=True)
    thread.start()
    logger.info(
        "listening as %s on %s:%d%s",
        cfg.network.ae_title,
        cfg.network.bind_address,
        server.server_address[1],
        " (TLS)" if ctx else "",
    )
    return server
