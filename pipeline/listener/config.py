"""Settings of the PACS listener (``configs/listener.yaml``), validated once at start-up.

None of these numbers is a clinical threshold: they are network, storage and retry settings. Relative paths
(spool, TLS files, pipeline configuration) are resolved against the current working directory of the
process that loads the file, so a service should give absolute paths.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pipeline.config import load_yaml, parse_section
from pipeline.errors import ConfigError
from pipeline.report.outputs import OutputKind

CONFIG_FILE = "listener.yaml"

_AE_RE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # DICOM AE: 16 chars of default repertoire, no backslash


def _check_ae(value: str, what: str) -> None:
    if not _AE_RE.match(value) or not value.strip():
        raise ValueError(f"{what} must be 1-16 printable characters without backslash, got {value!r}")


@dataclass(frozen=True)
class TlsConfig:
    """TLS for DICOM associations (both directions use the same files unless a destination has its own).

    ``cert`` / ``key``: our PEM certificate and private key. ``ca``: PEM bundle of the certificates we trust;
    when set on the listener, callers must present a certificate signed by it (mutual TLS).
    """

    enabled: bool = False
    cert: str = ""
    key: str = ""
    ca: str = ""
    require_client_cert: bool = True  # only with ``ca``
    # A caller has this long to complete the TLS handshake (it runs in the connection's own thread, so a slow or
    # idle client never blocks the others); failed or timed-out handshakes are logged with the peer's address.
    handshake_timeout_s: float = field(default=10.0, metadata={"range": (0.1, 600.0)})

    def __post_init__(self) -> None:
        if self.enabled and not (self.cert and self.key):
            raise ValueError("tls.enabled needs both 'cert' and 'key' (PEM files)")


@dataclass(frozen=True)
class AllowedCaller:
    """One calling AE title that may send to us, optionally only from one host (IP address or name)."""

    ae_title: str
    host: str = ""

    def __post_init__(self) -> None:
        _check_ae(self.ae_title, "access.allowed_callers.ae_title")


@dataclass(frozen=True)
class NetworkConfig:
    ae_title: str = "SPINEAI"
    bind_address: str = "0.0.0.0"
    port: int = field(default=11112, metadata={"range": (0, 65535)})  # 0: any free port (tests, benchmarks)
    max_associations: int = field(default=10, metadata={"range": (1, 1000)})
    max_pdu_bytes: int = field(default=262144, metadata={"range": (0, 1 << 26)})
    acse_timeout_s: float = field(default=30.0, metadata={"range": (1.0, 3600.0)})
    dimse_timeout_s: float = field(default=60.0, metadata={"range": (1.0, 3600.0)})
    network_timeout_s: float = field(default=60.0, metadata={"range": (1.0, 3600.0)})
    # Storage SOP classes accepted (keywords of pydicom's UID dictionary). MR Spectroscopy is not an image.
    sop_classes: tuple[str, ...] = (
        "MRImageStorage",
        "EnhancedMRImageStorage",
        "LegacyConvertedEnhancedMRImageStorage",
    )
    # Transfer syntaxes accepted (keywords); the pipeline decodes all of them.
    transfer_syntaxes: tuple[str, ...] = (
        "ExplicitVRLittleEndian",
        "ImplicitVRLittleEndian",
        "DeflatedExplicitVRLittleEndian",
        "JPEGBaseline8Bit",
        "JPEGExtended12Bit",
        "JPEGLossless",
        "JPEGLosslessSV1",
        "JPEGLSLossless",
        "JPEGLSNearLossless",
        "JPEG2000Lossless",
        "JPEG2000",
        "RLELossless",
    )

    def __post_init__(self) -> None:
        _check_ae(self.ae_title, "network.ae_title")
        for kw in self.sop_classes:
            if not kw.endswith("Storage") or uid_for_keyword(kw, "SOP Class") is None:
                raise ValueError(
                    f"network.sop_classes: {kw!r} is not a storage SOP class keyword (e.g. MRImageStorage)"
                )
        for kw in self.transfer_syntaxes:
            if uid_for_keyword(kw, "Transfer Syntax") is None:
                raise ValueError(f"network.transfer_syntaxes: {kw!r} is not a transfer syntax keyword")


def uid_for_keyword(keyword: str, kind: str) -> str | None:
    """The UID whose pydicom keyword is ``keyword`` and whose type is ``kind`` ("SOP Class", "Transfer Syntax")."""
    from pydicom._uid_dict import UID_dictionary

    for uid, info in UID_dictionary.items():
        if info[4] == keyword:
            return uid if info[1] == kind else None
    return None


@dataclass(frozen=True)
class AccessConfig:
    """Who may open an association.

    Callers not listed are refused with A-ASSOCIATE-RJ (permanent, "calling AE title not recognised");
    a called AE title other than ours is refused with "called AE title not recognised".
    ``allow_any_caller: true`` switches the allow-list off (a test bench only, never a hospital network).
    """

    allowed_callers: tuple[AllowedCaller, ...] = ()
    require_called_ae_title: bool = True
    allow_any_caller: bool = False


@dataclass(frozen=True)
class StorageConfig:
    """Where received instances, results and the state database live."""

    spool_dir: str = "spine-assess-spool"
    # New associations are refused (transient, "temporary congestion") while the spool's file system has less.
    min_free_mb: int = field(default=2048, metadata={"range": (0, None)})
    # A larger instance is refused (C-STORE status 0xA701, out of resources) and none of it is kept. Received data
    # sets are written to the spool as they arrive, so this bounds the disk used by one transfer, not memory.
    # 512 MiB holds a 3-D Enhanced MR of ~1000 frames of 512 x 512; a spine series is usually 5-50 MiB.
    max_instance_mb: int = field(default=512, metadata={"range": (1, 1 << 20)})


@dataclass(frozen=True)
class TriggerConfig:
    # A study is processed once no instance of it has arrived for this long.
    stable_seconds: float = field(default=30.0, metadata={"range": (0.1, 86400.0)})
    # How often the scheduler looks for complete studies, due retries and due exports.
    poll_seconds: float = field(default=0.5, metadata={"range": (0.05, 60.0)})


@dataclass(frozen=True)
class ProcessingConfig:
    """How studies are assessed: the same executor and ``run_study`` as ``spine-assess batch``."""

    outputs: tuple[str, ...] = ("json", "html", "seg", "sr")
    workers: int = field(default=1, metadata={"range": (1, 256)})
    dask_scheduler: str = ""  # e.g. tcp://10.0.0.5:8786 (the spool must be on a file system the workers see)
    config_dir: str = ""  # pipeline configs folder; empty = the shipped configs/
    timeout_s: float = field(default=900.0, metadata={"range": (1.0, 86400.0)})
    memory_limit_mb: int = field(default=4096, metadata={"range": (0, None)})  # 0 = no limit
    max_attempts: int = field(default=3, metadata={"range": (1, 100)})
    retry_backoff_s: float = field(default=60.0, metadata={"range": (0.0, 86400.0)})
    retry_backoff_max_s: float = field(default=3600.0, metadata={"range": (0.0, 604800.0)})

    def __post_init__(self) -> None:
        for kind in self.outputs:
            try:
                OutputKind(kind)
            except ValueError:
                choices = ", ".join(k.value for k in OutputKind)
                raise ValueError(f"processing.outputs: unknown output {kind!r} (choices: {choices})") from None

    @property
    def output_kinds(self) -> frozenset[OutputKind]:
        kinds = {OutputKind(k) for k in self.outputs} | {OutputKind.JSON}
        if OutputKind.SR in kinds:
            kinds.add(OutputKind.SEG)
        return frozenset(kinds)


@dataclass(frozen=True)
class Destination:
    """Where results are sent: a DICOM node (``kind: dimse``, C-STORE) or a DICOMweb server (``kind: stow``)."""

    name: str
    kind: str = field(default="dimse", metadata={"choices": ("dimse", "stow")})
    ae_title: str = ""
    host: str = ""
    port: int = field(default=104, metadata={"range": (1, 65535)})
    tls: TlsConfig = TlsConfig()
    url: str = ""  # DICOMweb base URL, e.g. http://pacs:8042/dicom-web
    # HTTP headers for STOW-RS, e.g. {Authorization: "Bearer ..."}; keep this file readable by the service only.
    headers: dict[str, str] = field(default_factory=dict)
    send: tuple[str, ...] = ("sr", "seg")  # which results: sr, seg, sc
    timeout_s: float = field(default=60.0, metadata={"range": (1.0, 3600.0)})

    def __post_init__(self) -> None:
        if not re.match(r"^[A-Za-z0-9_.-]{1,64}$", self.name):
            raise ValueError(f"destination name must be letters, digits, '_', '.', '-', got {self.name!r}")
        if self.kind == "dimse":
            _check_ae(self.ae_title, f"destination {self.name}: ae_title")
            if not self.host:
                raise ValueError(f"destination {self.name}: 'host' is required for kind dimse")
        elif not self.url.startswith(("http://", "https://")):
            raise ValueError(f"destination {self.name}: 'url' must start with http:// or https:// for kind stow")
        for s in self.send:
            if s not in ("sr", "seg", "sc"):
                raise ValueError(f"destination {self.name}: send: {s!r} is not one of sr, seg, sc")


@dataclass(frozen=True)
class ExportConfig:
    destinations: tuple[Destination, ...] = ()
    # Each file x destination is retried with capped exponential backoff, then marked dead (operator retries).
    max_attempts: int = field(default=50, metadata={"range": (1, 100000)})
    retry_backoff_s: float = field(default=10.0, metadata={"range": (0.0, 86400.0)})
    retry_backoff_max_s: float = field(default=600.0, metadata={"range": (0.0, 604800.0)})
    # Parallel export connections.
    threads: int = field(default=2, metadata={"range": (1, 64)})

    def __post_init__(self) -> None:
        names = [d.name for d in self.destinations]
        if len(set(names)) != len(names):
            raise ValueError("export.destinations: names must be unique")


@dataclass(frozen=True)
class ListenerConfig:
    network: NetworkConfig = NetworkConfig()
    access: AccessConfig = AccessConfig()
    tls: TlsConfig = TlsConfig()
    storage: StorageConfig = StorageConfig()
    trigger: TriggerConfig = TriggerConfig()
    processing: ProcessingConfig = ProcessingConfig()
    export: ExportConfig = ExportConfig()
    source: str = ""  # file it was read from (set by the loader, not a YAML field)

    @property
    def spool_dir(self) -> Path:
        return Path(self.storage.spool_dir).expanduser().resolve()

    def with_overrides(
        self, *, ae_title: str | None = None, port: int | None = None, spool_dir: Path | None = None
    ) -> ListenerConfig:
        """The command line wins over the file (``--ae-title``, ``--port``, ``--spool``)."""
        cfg = self
        try:
            if ae_title is not None:
                cfg = replace(cfg, network=replace(cfg.network, ae_title=ae_title))
            if port is not None:
                if not 0 <= port <= 65535:
                    raise ValueError(f"port must be in 0..65535, got {port}")
                cfg = replace(cfg, network=replace(cfg.network, port=port))
        except ValueError as exc:
            raise ConfigError(f"command line: {exc}") from None
        if spool_dir is not None:
            cfg = replace(cfg, storage=replace(cfg.storage, spool_dir=str(spool_dir)))
        return cfg


SECTIONS = ("network", "access", "tls", "storage", "trigger", "processing", "export")


def parse_listener_config(data: dict[str, Any] | None, where: str) -> ListenerConfig:
    """Validate a ``listener.yaml`` mapping (sections :data:`SECTIONS`)."""
    data = dict(data or {})
    unknown = sorted(set(data) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"{where}: unknown section {unknown[0]!r}; known sections: {', '.join(SECTIONS)}")
    parsed: dict[str, Any] = {
        name: parse_section(_section_type(name), data.get(name), f"{where}: {name}") for name in SECTIONS
    }
    cfg = ListenerConfig(**parsed)
    if not cfg.access.allow_any_caller and not cfg.access.allowed_callers:
        raise ConfigError(
            f"{where}: access.allowed_callers is empty, so every association would be refused; list the PACS "
            "and modalities that may send (ae_title, optional host), or set allow_any_caller: true on a test bench"
        )
    return cfg


def _section_type(name: str) -> type:
    return {
        "network": NetworkConfig,
        "access": AccessConfig,
        "tls": TlsConfig,
        "storage": StorageConfig,
        "trigger": TriggerConfig,
        "processing": ProcessingConfig,
        "export": ExportConfig,
    }[name]


def load_listener_config(path: Path | None = None) -> ListenerConfig:
    """Load ``path`` (default: ``listener.yaml`` of the shipped configuration folder) and validate it.

    Raises
    ------
    ConfigError
        The file is missing or invalid; the message names the file, section and field.
    """
    if path is None:
        from pipeline.config import default_config_dir

        path = default_config_dir() / CONFIG_FILE
    path = Path(path)
    cfg = parse_listener_config(load_yaml(path), str(path))
    return replace(cfg, source=str(path))
