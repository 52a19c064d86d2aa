"""Who may talk to the listener, and over what: the access decision on an association request, and the TLS
contexts of the listener and of the connections to destinations.

Refusals are A-ASSOCIATE-RJ with the standard reasons (see :mod:`pipeline.listener.scp`); host names in
``access.allowed_callers`` are resolved when a caller connects, so a changed address needs no restart.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable

from pipeline.listener.config import AccessConfig, TlsConfig

# A-ASSOCIATE-RJ (result, source, reason)
REJECT_CALLING_AE = (0x01, 0x01, 0x03)
REJECT_CALLED_AE = (0x01, 0x01, 0x07)
REJECT_CONGESTION = (0x02, 0x03, 0x01)


def access_decision(
    access: AccessConfig,
    *,
    our_ae_title: str,
    calling_ae_title: str,
    called_ae_title: str,
    peer_host: str,
    free_mb: float,
    min_free_mb: float,
    resolve: Callable[[str], set[str]] | None = None,
) -> tuple[tuple[int, int, int], str] | None:
    """Whether to refuse an association: ``((result, source, reason), why)`` or None to accept.

    ``resolve`` maps a configured host name to its addresses (default: the system resolver).
    """
    calling = calling_ae_title.strip()
    called = called_ae_title.strip()
    if access.require_called_ae_title and called != our_ae_title.strip():
        return REJECT_CALLED_AE, f"called AE title {called!r} is not ours ({our_ae_title!r})"
    if not access.allow_any_caller:
        entries = [a for a in access.allowed_callers if a.ae_title.strip() == calling]
        if not entries:
            return REJECT_CALLING_AE, f"calling AE title {calling!r} is not in access.allowed_callers"
        if not any(not a.host or _host_matches(a.host, peer_host, resolve or _resolve) for a in entries):
            return REJECT_CALLING_AE, f"calling AE title {calling!r} is not allowed from host {peer_host}"
    if free_mb < min_free_mb:
        return REJECT_CONGESTION, f"spool has {free_mb:.0f} MiB free, below storage.min_free_mb={min_free_mb:.0f}"
    return None


def _host_matches(configured: str, peer: str, resolve: Callable[[str], set[str]]) -> bool:
    if configured == peer:
        return True
    try:
        return peer in resolve(configured)
    except OSError:
        return False


def _resolve(host: str) -> set[str]:
    return {str(info[4][0]) for info in socket.getaddrinfo(host, None)}


def server_ssl_context(tls: TlsConfig) -> ssl.SSLContext:
    """TLS context of the listener: our certificate; with ``ca``, callers must present one signed by it."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(certfile=tls.cert, keyfile=tls.key)
    if tls.ca:
        ctx.load_verify_locations(cafile=tls.ca)
        ctx.verify_mode = ssl.CERT_REQUIRED if tls.require_client_cert else ssl.CERT_OPTIONAL
    return ctx


def client_ssl_context(tls: TlsConfig) -> ssl.SSLContext:
    """TLS context to reach a destination: trust ``ca`` (else the system store); our cert if given."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=tls.ca or None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls.cert and tls.key:
        ctx.load_cert_chain(certfile=tls.cert, keyfile=tls.key)
    return ctx
