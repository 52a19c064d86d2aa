"""Strict parsing of configuration sections."""

from dataclasses import dataclass, field
from enum import StrEnum

import pytest

from pipeline.config import load_yaml, parse_section
from pipeline.errors import ConfigError


class Colour(StrEnum):
    RED = "red"
    BLUE = "blue"


@dataclass(frozen=True)
class Inner:
    k: int = 1


@dataclass(frozen=True)
class Section:
    threshold: float = field(default=0.5, metadata={"range": (0.0, 1.0), "clinical": True})
    count: int = 3
    name: str = "x"
    flag: bool = False
    cutoffs: tuple[float, ...] = (20.0, 25.0)
    mode: str = field(default="a", metadata={"choices": ("a", "b")})
    colour: Colour = Colour.RED
    inner: Inner = Inner()
    optional: float | None = None


SRC = {"sources": {"threshold": "001_* Table 1"}}


def test_defaults_and_values_are_parsed():
    s = parse_section(Section, {**SRC, "threshold": 1, "cutoffs": [1, 2.5], "colour": "blue", "inner": {"k": 4}}, "t")
    assert s.threshold == 1.0 and isinstance(s.threshold, float)
    assert s.cutoffs == (1.0, 2.5)
    assert s.colour is Colour.BLUE
    assert s.inner == Inner(4)
    assert s.count == 3


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"thresold": 0.2}, r"t: unknown field 'thresold'; known fields: .*threshold"),
        ({"threshold": 1.5}, r"t: threshold: must be in \[0.0, 1.0\], got 1.5"),
        ({"threshold": "high"}, r"t: threshold: must be a number, got 'high'"),
        ({"count": 2.5}, r"t: count: must be an integer"),
        ({"count": True}, r"t: count: must be an integer"),
        ({"flag": "yes"}, r"t: flag: must be true or false"),
        ({"mode": "c"}, r"t: mode: must be one of a, b; got 'c'"),
        ({"colour": "green"}, r"t: colour: must be one of red, blue"),
        ({"inner": {"j": 1}}, r"t: inner: unknown field 'j'"),
        ({"cutoffs": 3}, r"t: cutoffs: must be a list"),
    ],
)
def test_invalid_values_name_the_field(data, match):
    with pytest.raises(ConfigError, match=match):
        parse_section(Section, {**SRC, **data}, "t")


def test_clinical_threshold_without_source_is_refused():
    with pytest.raises(ConfigError, match="clinical threshold 'threshold' has no source"):
        parse_section(Section, {"threshold": 0.3}, "t")


def test_source_for_unknown_field_is_refused():
    with pytest.raises(ConfigError, match="sources: 'nope' is not a field"):
        parse_section(Section, {"sources": {"threshold": "x", "nope": "y"}}, "t")


def test_yaml_errors_name_file_and_line(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("a: 1\nb: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: invalid YAML at line \d+"):
        load_yaml(p)
    with pytest.raises(ConfigError, match="file not found"):
        load_yaml(tmp_path / "missing.yaml")


def test_the_fast_parser_gives_the_shipped_configs_the_same_values(repo_root):
    import yaml

    for path in sorted((repo_root / "configs").glob("*.yaml")):
        assert load_yaml(path) == yaml.safe_load(path.read_text(encoding="utf-8")), path.name


def test_a_refused_file_gets_the_pure_python_parsers_message(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("a: 1\nb: [1, 2\n")
    with pytest.raises(ConfigError) as err:
        load_yaml(p)
    assert str(err.value) == f"{p}: invalid YAML at line 3, column 1: expected ',' or ']', but got '<stream end>'"
