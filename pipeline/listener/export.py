"""Sending results to destinations: C-STORE (pynetdicom SCU) and STOW-RS (dicomweb-client).

Each function sends a list of files to one destination and returns, per file, ``None`` (delivered) or the
reason it was not. Nothing here retries or raises for a network problem: the outbox (:mod:`.state`) records
the result and retries with capped exponential backoff.

Delivered means:

- C-STORE: status Success (0x0000) or a warning (0xB000 coercion, 0xB006 elements discarded, 0xB007 data set
  does not match SOP class - the SCP stored it anyway).
- STOW-RS: HTTP 200 (all stored) and the instance is not in the response's FailedSOPSequence; HTTP 202 (some
  stored) and the instance is in ReferencedSOPSequence and not in FailedSOPSequence. HTTP 409 (none stored) and
  every other error mark every file failed, with the FailureReason of the response where it gives one.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from pipeline.listener.config import Destination
from pipeline.listener.security import client_ssl_context

logger = logging.getLogger(__name__)

STORE_OK = {0x0000, 0xB000, 0xB006, 0xB007}


def send_files(dest: Destination, paths: Sequence[Path], *, calling_ae_title: str) -> dict[Path, str | None]:
    """Send ``paths`` to ``dest`` by its kind (``dimse`` or ``stow``)."""
    if not paths:
        return {}
    try:
        if dest.kind == "stow":
            return send_stow(dest, paths)
        return send_dimse(dest, paths, calling_ae_title=calling_ae_title)
    except Exception as exc:  # never lose the outbox loop to an unexpected error; record it and retry later
        logger.exception("export to %s: unexpected error", dest.name)
        return {Path(p): f"unexpected error: {type(exc).__name__}: {exc}" for p in paths}


def _read(paths: Sequence[Path]) -> tuple[dict[Path, Dataset], dict[Path, str | None]]:
    datasets: dict[Path, Dataset] = {}
    results: dict[Path, str | None] = {}
    for p in paths:
        try:
            datasets[Path(p)] = dcmread(p)
        except Exception as exc:
            results[Path(p)] = f"cannot read result file {p}: {type(exc).__name__}: {exc}"
    return datasets, results


def send_dimse(dest: Destination, paths: Sequence[Path], *, calling_ae_title: str) -> dict[Path, str | None]:
    """C-STORE every file over one association to ``dest`` (AE title, host, port, optional TLS)."""
    from pynetdicom import AE

    datasets, results = _read(paths)
    if not datasets:
        return results
    ae = AE(ae_title=calling_ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = dest.timeout_s
    contexts: dict[str, set[str]] = {}
    for ds in datasets.values():
        ts = str(ds.file_meta.TransferSyntaxUID)
        contexts.setdefault(str(ds.SOPClassUID), set()).update({ts, ExplicitVRLittleEndian, ImplicitVRLittleEndian})
    for sop_class, syntaxes in contexts.items():
        ae.add_requested_context(sop_class, sorted(syntaxes))
    tls_args = (client_ssl_context(dest.tls), dest.host) if dest.tls.enabled else None
    assoc = ae.associate(dest.host, dest.port, ae_title=dest.ae_title, tls_args=tls_args)
    if not assoc.is_established:
        why = "rejected" if assoc.is_rejected else ("aborted" if assoc.is_aborted else "no connection")
        msg = f"association with {dest.ae_title}@{dest.host}:{dest.port} failed ({why})"
        logger.warning("export to %s: %s", dest.name, msg)
        results.update({p: msg for p in datasets})
        return results
    try:
        for p, ds in datasets.items():
            if not assoc.is_established:
                results[p] = "association closed by the peer"
                continue
            try:
                status = assoc.send_c_store(ds)
            except (ValueError, RuntimeError) as exc:  # e.g. no accepted presentation context
                results[p] = f"not sent: {exc}"
                continue
            code = int(status.Status) if status and "Status" in status else None
            if code is None:
                results[p] = "no C-STORE response (timeout or connection lost)"
            elif code in STORE_OK:
                results[p] = None
                if code:
                    logger.warning("export to %s: %s stored with warning 0x%04X", dest.name, ds.SOPInstanceUID, code)
            else:
                comment = str(status.get("ErrorComment", "") or "").strip()
                results[p] = f"C-STORE status 0x{code:04X}" + (f" ({comment})" if comment else "")
    finally:
        if assoc.is_established:
            assoc.release()
    return results


def send_stow(dest: Destination, paths: Sequence[Path]) -> dict[Path, str | None]:
    """STOW-RS every file in one request to ``dest.url`` (see the module docstring for what counts)."""
    import requests
    from dicomweb_client.api import DICOMwebClient

    datasets, results = _read(paths)
    if not datasets:
        return results
    codes: list[int] = []  # dicomweb-client returns the body only: read the HTTP status with a response hook
    session = requests.Session()
    session.hooks["response"].append(lambda r, *args, **kwargs: codes.append(r.status_code))
    client = DICOMwebClient(url=dest.url, session=session, headers=dict(dest.headers) or None, timeout=dest.timeout_s)
    client.set_http_retry_params(retry=False)  # the outbox retries, with its own backoff
    response: Dataset | None
    try:
        response = client.store_instances(list(datasets.values()))
        status_code = codes[-1] if codes else 200
    except requests.HTTPError as exc:
        status_code = exc.response.status_code if exc.response is not None else (codes[-1] if codes else 0)
        response = _parse_stow_body(exc.response)
        if status_code != 409:
            msg = f"STOW-RS HTTP {status_code}"
            results.update({p: msg for p in datasets})
            return results
    except (requests.RequestException, OSError, ValueError) as exc:
        msg = f"STOW-RS request to {dest.url} failed: {type(exc).__name__}: {exc}"
        logger.warning("export to %s: %s", dest.name, msg)
        results.update({p: msg for p in datasets})
        return results
    finally:
        session.close()
    results.update(stow_results(datasets, response, status_code))
    return results


def stow_results(datasets: dict[Path, Dataset], body: Dataset | None, status_code: int) -> dict[Path, str | None]:
    """Per file: delivered (None) or why not, from a STOW-RS response body and its HTTP status."""
    response = body if body is not None else Dataset()
    failed = {
        str(item.get("ReferencedSOPInstanceUID", "")): item.get("FailureReason")
        for item in response.get("FailedSOPSequence", [])
    }
    stored = {str(item.get("ReferencedSOPInstanceUID", "")) for item in response.get("ReferencedSOPSequence", [])}
    out: dict[Path, str | None] = {}
    for p, ds in datasets.items():
        uid = str(ds.SOPInstanceUID)
        if uid in failed:
            reason = failed[uid]
            out[p] = f"STOW-RS HTTP {status_code}: failure reason " + (
                f"0x{int(reason):04X}" if reason is not None else "not given"
            )
        elif status_code == 409:
            out[p] = "STOW-RS HTTP 409: no instance stored (conflict)"
        elif status_code == 202 and uid not in stored:
            out[p] = "STOW-RS HTTP 202: instance not acknowledged in ReferencedSOPSequence"
        elif status_code in (200, 202):
            out[p] = None
        else:
            out[p] = f"STOW-RS HTTP {status_code}"
    return out


def _parse_stow_body(response: object) -> Dataset | None:
    if response is None:
        return None
    try:
        ctype = str(response.headers.get("Content-Type", ""))  # type: ignore[attr-defined]
        if "json" in ctype:
            body = response.json()  # type: ignore[attr-defined]
            if isinstance(body, list):  # some servers wrap the dataset in a list
                body = body[0] if body else {}
            return Dataset.from_json(body)
    except Exception:  # an unreadable error body only loses the per-instance reasons
        logger.debug("STOW-RS error body not parsed", exc_info=True)
    return None
