"""Loading and validating configuration files.

Each stage owns a frozen dataclass describing its settings; this module turns a YAML mapping into
that dataclass, strictly: unknown fields, wrong types and out-of-range values raise
:class:`~pipeline.errors.ConfigError` naming the file, the section and the field.

Field metadata understood by :func:`parse_section`:

- ``range=(lo, hi)``: inclusive numeric bounds (``None`` for open).
- ``choices=(...)``: allowed values of a string field.
- ``clinical=True``: a clinical threshold; the section must cite its source under ``sources:``
  (``sources: {field_name: "001_* Table 1: ..."}``), so that every number a clinician relies on is traceable.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from pipeline.errors import ConfigError

T = TypeVar("T")

ENV_CONFIG_DIR = "SPINE_ASSESS_CONFIG_DIR"


def default_config_dir() -> Path:
    """``$SPINE_ASSESS_CONFIG_DIR``, else the source tree's ``configs/``, else the copy packaged in the wheel."""
    env = os.environ.get(ENV_CONFIG_DIR)
    if env:
        return Path(env)
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "configs", here / "_configs"):
        if candidate.is_dir():
            return candidate
    raise ConfigError(
        f"no configuration directory found (looked for {here.parent / 'configs'} and {here / '_configs'}); "
        f"set {ENV_CONFIG_DIR} or pass --config-dir"
    )


# libyaml's parser where PyYAML has it: the configuration files parse ~10x faster, which is most of loading the
# configuration at start-up (issue 18). Same SafeConstructor and resolver, so the same values; a file it refuses is
# parsed again by the pure-Python parser, whose message (line, column, problem) is the one users have always seen.
_FAST_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML file whose top level is a mapping."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        data = yaml.load(text, Loader=_FAST_SAFE_LOADER)
    except yaml.YAMLError:
        data = _pure_python_load(path, text)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections, got {type(data).__name__}")
    return data


def _pure_python_load(path: Path, text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}: invalid YAML{where}: {problem}") from None


def file_sha256(*paths: Path) -> str:
    """SHA-256 over the bytes of the given files (in order); recorded in reports."""
    h = hashlib.sha256()
    for p in paths:
        h.update(Path(p).name.encode())
        h.update(b"\0")
        h.update(Path(p).read_bytes())
    return h.hexdigest()


def parse_section(cls: type[T], data: Mapping[str, Any] | None, where: str) -> T:
    """Build the frozen dataclass ``cls`` from ``data``, validating every field.

    Parameters
    ----------
    cls : type
        A dataclass type. Missing keys take the dataclass defaults.
    data : mapping or None
        The YAML section (``None`` means "all defaults").
    where : str
        Prefix for error messages, e.g. ``"configs/pipeline.yaml: morphometry"``.
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: must be a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    sources = data.get("sources", {}) if "sources" not in fields else {}
    if not isinstance(sources, Mapping):
        raise ConfigError(f"{where}: 'sources' must map field names to citations")
    unknown = sorted(set(data) - set(fields) - ({"sources"} if "sources" not in fields else set()))
    if unknown:
        raise ConfigError(f"{where}: unknown field {unknown[0]!r}; known fields: {', '.join(sorted(fields))}")
    for name in sources:
        if name not in fields:
            raise ConfigError(f"{where}: sources: {name!r} is not a field of this section")
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        if f.metadata.get("clinical") and not str(sources.get(name, "")).strip():
            raise ConfigError(
                f"{where}: clinical threshold {name!r} has no source; add 'sources: {{{name}: \"<seed file, table>\"}}'"
            )
        if name not in data:
            continue
        kwargs[name] = _coerce(data[name], hints[name], f"{where}: {name}")
        _check_meta(kwargs[name], f, f"{where}: {name}")
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def section_sources(data: Mapping[str, Any] | None) -> dict[str, str]:
    """The ``sources`` mapping of a section (field -> citation), for reports."""
    if not data or not isinstance(data.get("sources"), Mapping):
        return {}
    return {str(k): str(v) for k, v in data["sources"].items()}


def _check_meta(value: Any, f: dataclasses.Field[Any], where: str) -> None:
    rng = f.metadata.get("range")
    if rng is not None and value is not None:
        values = value if isinstance(value, tuple) else (value,)
        lo, hi = rng
        for v in values:
            if (
                isinstance(v, (int, float))
                and not isinstance(v, bool)
                and ((lo is not None and v < lo) or (hi is not None and v > hi))
            ):
                lo_s = "-inf" if lo is None else lo
                hi_s = "inf" if hi is None else hi
                raise ConfigError(f"{where}: must be in [{lo_s}, {hi_s}], got {v}")
    choices = f.metadata.get("choices")
    if choices is not None and value is not None and value not in choices:
        raise ConfigError(f"{where}: must be one of {', '.join(map(str, choices))}; got {value!r}")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: value {value!r} has the wrong type")
    if typing.get_origin(tp) is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: must be one of {', '.join(map(repr, args))}; got {value!r}")
        return value
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return parse_section(tp, value, where)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: must be a string, got {value!r}")
        return value
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            choices = ", ".join(str(m.value) for m in tp)
            raise ConfigError(f"{where}: must be one of {choices}; got {value!r}") from None
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: must be a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{where}: must be a list of {len(args)} items, got {len(value)}")
        return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
    if origin in (dict, Mapping, typing.Mapping) or tp in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: must be a mapping, got {value!r}")
        kt, vt = args if args else (Any, Any)
        return {_coerce(k, kt, where): _coerce(v, vt, f"{where}.{k}") for k, v in value.items()}
    raise TypeError(f"{where}: unsupported field type {tp!r}")
