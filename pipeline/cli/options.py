"""Options shared by several commands, each declared once with its default (``run`` and ``batch`` take the same
``--outputs``, ``--anchor`` and ``--config-dir``; ``listen`` and ``queue`` the same ``--config`` and ``--spool``),
and the checks every command applies the same way."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.errors import UsageError

if TYPE_CHECKING:
    from pipeline.report.outputs import OutputKind
    from pipeline.segment import Anchor

Parser = argparse.ArgumentParser


def require_input(path: Path, what: str) -> None:
    """A missing input path is a usage error (exit 2), the same for every command."""
    if not path.exists():
        raise UsageError(f"{what} {path}: no such file or folder; give the folder (or NIfTI file) of the study")


def add_outputs(p: Parser) -> None:
    """``--outputs LIST`` (:func:`pipeline.report.outputs.parse_outputs`)."""
    from pipeline.report.outputs import DEFAULT_OUTPUTS_TEXT, OUTPUTS_HELP

    p.add_argument("--outputs", default=DEFAULT_OUTPUTS_TEXT, metavar="LIST", help=OUTPUTS_HELP)


@contextmanager
def ingest_quiet_unless_verbose(verbose: int) -> Iterator[None]:
    """Without -v, no line per skipped file while discovering studies: the command summarises them (a run's log
    keeps them)."""
    log = logging.getLogger("pipeline.ingest")
    level = log.level
    if verbose == 0:
        log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        log.setLevel(level)


def outputs_option(args: argparse.Namespace) -> frozenset[OutputKind]:
    """``--outputs`` parsed (:class:`~pipeline.errors.ConfigError` naming the option when it is wrong)."""
    from pipeline.report.outputs import parse_outputs

    return parse_outputs(args.outputs)


def add_anchor(p: Parser, help: str) -> None:
    """``--anchor LEVEL=POS`` (:func:`pipeline.segment.parse_anchor`); ``help`` says what it applies to."""
    p.add_argument("--anchor", default=None, metavar="LEVEL=POS", help=help)


def anchor_option(args: argparse.Namespace) -> Anchor | None:
    """``--anchor`` parsed: None when not given (:class:`~pipeline.errors.ConfigError` naming the option)."""
    from pipeline.segment import parse_anchor_option

    return parse_anchor_option(args.anchor, "--anchor")


def add_config_dir(p: Parser) -> None:
    """``--config-dir DIR``: the folder of every stage's configuration file."""
    p.add_argument(
        "--config-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="folder with the configuration files (default: the shipped configs/)",
    )


def add_settings_file(p: Parser, what: str, name: str) -> None:
    """``--config FILE``: one settings file, ``configs/<name>`` when not given."""
    p.add_argument("--config", type=Path, default=None, metavar="FILE", help=f"{what} (default: configs/{name})")


def add_spool(p: Parser, help: str) -> None:
    """``--spool DIR``: the listener's spool folder, instead of the one in its settings."""
    p.add_argument("--spool", type=Path, default=None, metavar="DIR", help=help)
