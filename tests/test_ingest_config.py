"""configs/ingest.yaml is valid and strict."""

from pathlib import Path

import pytest
import yaml

from pipeline.errors import ConfigError
from pipeline.ingest.config import IngestConfig, load_ingest_config
from pipeline.model import Role, Substitute


def test_shipped_config_loads_with_rules(repo_root: Path):
    cfg = load_ingest_config(repo_root / "configs" / "ingest.yaml")
    assert isinstance(cfg, IngestConfig)
    assert cfg.geometry.orientation_tolerance_deg == 20.0
    assert len(cfg.roles.name_rules) >= 10 and len(cfg.roles.physics_rules) >= 10
    roles = {r.role for r in cfg.roles.name_rules} | {r.role for r in cfg.roles.physics_rules}
    assert roles == set(Role)
    subs = {r.substitute for r in cfg.roles.physics_rules} - {None}
    assert subs == set(Substitute)
    assert cfg.selection.anatomy_roles == (Role.T2, Role.T1)
    assert cfg.roles.refinements == ((Role.STIR, Role.T2),)


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "ingest.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (
            {"geometry": {"orientation_tolerance_deg": 60}},
            r"orientation_tolerance_deg: must be in \[0.0, 45.0\]",
        ),
        ({"geometry": {"min_slice": 3}}, r"geometry: unknown field 'min_slice'"),
        (
            {"roles": {"name_rules": [{"name": "x", "pattern": "(", "role": "T2"}]}},
            r"name rule 'x': pattern is not a valid regular expression",
        ),
        ({"roles": {"name_rules": [{"name": "x", "pattern": "t2", "role": "T3"}]}}, r"role: must be one of"),
        (
            {"roles": {"physics_rules": [{"name": "y", "role": "STIR", "ti_ms": [300, 100]}]}},
            r"physics rule 'y': ti_ms range \[300.0, 100.0\] is empty",
        ),
        ({"selection": {"stir_preference": ["STIR", "DIXON"]}}, r"stir_preference: unknown entry 'DIXON'"),
    ],
)
def test_bad_config_is_refused_with_the_field_named(tmp_path: Path, data: dict, match: str):
    with pytest.raises(ConfigError, match=match):
        load_ingest_config(_write(tmp_path, data))


def test_missing_file_is_a_config_error(tmp_path: Path):
    with pytest.raises(ConfigError, match="file not found"):
        load_ingest_config(tmp_path / "nope.yaml")
