"""configs/listener.yaml and its strict validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import ConfigError
from pipeline.listener.config import load_listener_config, parse_listener_config
from pipeline.report.outputs import OutputKind

ALLOW = {"allowed_callers": [{"ae_title": "PACS"}]}


def test_shipped_config_is_valid(repo_root: Path) -> None:
    cfg = load_listener_config(repo_root / "configs" / "listener.yaml")
    assert cfg.network.ae_title == "SPINEAI"
    assert cfg.network.port == 11112
    assert cfg.trigger.stable_seconds == 30
    assert "MRImageStorage" in cfg.network.sop_classes
    assert cfg.storage.max_instance_mb == 512
    assert cfg.access.allowed_callers and not cfg.access.allow_any_caller
    assert cfg.processing.output_kinds >= {OutputKind.SR, OutputKind.SEG, OutputKind.JSON}


def test_defaults_and_overrides(tmp_path: Path) -> None:
    cfg = parse_listener_config({"access": ALLOW}, "t")
    cfg2 = cfg.with_overrides(ae_title="OTHERAE", port=4000, spool_dir=tmp_path)
    assert (cfg2.network.ae_title, cfg2.network.port, cfg2.spool_dir) == ("OTHERAE", 4000, tmp_path.resolve())
    with pytest.raises(ConfigError, match="port must be"):
        cfg.with_overrides(port=70000)
    with pytest.raises(ConfigError, match="ae_title"):
        cfg.with_overrides(ae_title="A" * 17)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"access": ALLOW, "bogus": {}}, "unknown section 'bogus'"),
        ({"access": ALLOW, "network": {"prot": 1}}, "unknown field 'prot'"),
        ({"access": ALLOW, "network": {"port": 70000}}, "port: must be in"),
        ({"access": ALLOW, "network": {"sop_classes": ["MRSpectroscopyStorageX"]}}, "storage SOP class"),
        ({"access": ALLOW, "network": {"transfer_syntaxes": ["MRImageStorage"]}}, "transfer syntax"),
        ({}, "allowed_callers is empty"),
        ({"access": {"allowed_callers": [{"ae_title": "BAD\\AE"}]}}, "backslash"),
        ({"access": ALLOW, "trigger": {"stable_seconds": 0}}, "stable_seconds: must be in"),
        ({"access": ALLOW, "storage": {"max_instance_mb": 0}}, "max_instance_mb: must be in"),
        ({"access": ALLOW, "processing": {"outputs": ["pdf"]}}, "unknown output 'pdf'"),
        ({"access": ALLOW, "tls": {"enabled": True}}, "needs both 'cert' and 'key'"),
        ({"access": ALLOW, "export": {"destinations": [{"name": "p", "kind": "dimse", "ae_title": "X"}]}}, "host"),
        ({"access": ALLOW, "export": {"destinations": [{"name": "w", "kind": "stow", "url": "ftp://x"}]}}, "url"),
        ({"access": ALLOW, "export": {"destinations": [{"name": "w", "kind": "ftp"}]}}, "must be one of"),
        (
            {
                "access": ALLOW,
                "export": {"destinations": [{"name": "p", "kind": "stow", "url": "http://x", "send": ["pdf"]}]},
            },
            "send",
        ),
        (
            {
                "access": ALLOW,
                "export": {"destinations": [{"name": "a", "kind": "stow", "url": "http://x"}] * 2},
            },
            "unique",
        ),
    ],
)
def test_invalid_settings_name_section_and_field(data: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_listener_config(data, "configs/listener.yaml")


def test_destination_parsing() -> None:
    cfg = parse_listener_config(
        {
            "access": {"allow_any_caller": True},
            "export": {
                "destinations": [
                    {"name": "pacs", "ae_title": "ORTHANC", "host": "127.0.0.1", "port": 4242},
                    {"name": "web", "kind": "stow", "url": "http://h/dicom-web", "headers": {"Authorization": "x"}},
                ]
            },
        },
        "t",
    )
    pacs, web = cfg.export.destinations
    assert (pacs.kind, pacs.port, pacs.send, pacs.tls.enabled) == ("dimse", 4242, ("sr", "seg"), False)
    assert web.headers == {"Authorization": "x"}
