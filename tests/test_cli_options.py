"""Shared options of the commands (pipeline/cli/options.py): declared once, so run and batch (listen and queue)
cannot drift apart; parsed once, with errors that name the option."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from pipeline.cli import build_parser
from pipeline.cli.options import anchor_option, outputs_option, require_input
from pipeline.errors import ConfigError, UsageError
from pipeline.levels import Level
from pipeline.report.outputs import DEFAULT_OUTPUTS, OutputKind


def _sub(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    return next(a for a in parser._actions if a.dest == "command").choices[command]


def _option(parser: argparse.ArgumentParser, flag: str) -> argparse.Action:
    return next(a for a in parser._actions if flag in a.option_strings)


@pytest.mark.parametrize("flag", ["--outputs", "--anchor", "--config-dir"])
def test_run_and_batch_share_their_common_options(flag):
    full = build_parser()
    run, batch = _option(_sub(full, "run"), flag), _option(_sub(full, "batch"), flag)
    assert (run.default, run.metavar, run.type) == (batch.default, batch.metavar, batch.type)
    if flag != "--anchor":  # the anchor's help says what it applies to (one study / every study)
        assert run.help == batch.help


@pytest.mark.parametrize("flag", ["--config", "--spool"])
def test_listen_and_queue_share_their_common_options(flag):
    full = build_parser()
    listen, queue = _option(_sub(full, "listen"), flag), _option(_sub(full, "queue"), flag)
    assert (listen.default, listen.metavar, listen.type) == (queue.default, queue.metavar, queue.type)


def test_the_outputs_default_is_the_registrys():
    args = build_parser("run").parse_args(["run", "study", "--out", "o"])
    assert outputs_option(args) == DEFAULT_OUTPUTS
    args = build_parser("batch").parse_args(["batch", "root", "--out", "o", "--outputs", "sr"])
    assert outputs_option(args) == {OutputKind.JSON, OutputKind.SEG, OutputKind.SR}
    with pytest.raises(ConfigError, match="--outputs: unknown output 'pdf'"):
        outputs_option(argparse.Namespace(outputs="json,pdf"))


def test_anchor_is_parsed_once_and_a_bad_one_names_the_option():
    assert anchor_option(argparse.Namespace(anchor=None)) is None
    anchor = anchor_option(argparse.Namespace(anchor="L5=lowest"))
    assert anchor is not None and anchor.level is Level.L5 and anchor.position == "lowest"
    with pytest.raises(ConfigError, match=r"^--anchor: invalid level anchor 'X9=lowest'"):
        anchor_option(argparse.Namespace(anchor="X9=lowest"))


def test_a_missing_input_is_a_usage_error(tmp_path):
    require_input(tmp_path, "STUDY_DIR")
    with pytest.raises(UsageError, match=r"STUDY_DIR .*missing: no such file or folder"):
        require_input(Path(tmp_path / "missing"), "STUDY_DIR")
