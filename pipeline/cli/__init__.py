"""Command line: ``spine-assess <command> ...``.

Exit status: 0 success, 1 some studies/items failed, 2 usage or configuration error, 130 interrupted, 141 the
reader of the output went away (``| head``).
A :class:`~pipeline.errors.PipelineError` prints one clear line; anything else prints a traceback.
Each subcommand is a module ``pipeline.cli.<command>`` with ``add_parser(sub, one_line)`` (its options) and
``run(args) -> int`` (its handler); shared options are built by :mod:`pipeline.cli.options`. A command's module is
imported only when that command is named, and imports its stage libraries only inside ``run`` (issue 18).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Callable, Sequence

from pipeline import __version__
from pipeline.errors import ConfigError, PipelineError, UsageError

logger = logging.getLogger("pipeline.cli")

Handler = Callable[[argparse.Namespace], int]

# The commands, in the order users meet them in --help (the everyday jobs first, then the tools), with their
# one-line help: what `spine-assess --help` shows without building any command's options.
_COMMANDS = {
    "run": "assess one study folder: vertebral bodies, height loss, STIR oedema, eligibility, reports",
    "batch": "assess every study in a folder (overnight, unattended); resumable; summary table at the end",
    "inspect": "list the studies and series in a folder and which series would be used",
    "listen": "receive studies from a PACS or scanner (DICOM C-STORE), assess them and send the results back",
    "queue": "status of the studies received by the listener and of their results; retry or purge",
    "rules": "check the eligibility rules and a clinical file; list the rules with their sources",
    "stir": "measure STIR marrow oedema per vertebra on given images and a given label map",
    "phantom": "make a synthetic spine MRI study (DICOM + truth.json) for testing",
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``spine-assess`` parser; with ``command`` only that command gets its options (the others are listed
    with their one-line help), because building a command's options imports what its help names (the report
    writers, the phantom's transfer syntaxes, the listener's states): ``--help`` and every other command's
    start-up need not pay for that (issue 18). Unknown ``command``: no command gets its options."""
    parser = argparse.ArgumentParser(
        prog="spine-assess",
        description=(
            "Assess sagittal spine MRI for vertebral augmentation (vertebroplasty / kyphoplasty): "
            "finds and labels vertebral bodies, measures height loss and STIR oedema, and checks the "
            "published eligibility rules. Supports, never replaces, a clinician's decision."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, one_line in _COMMANDS.items():
        if command is None or command == name:
            importlib.import_module(f"pipeline.cli.{name}").add_parser(sub, one_line)
        else:
            sub.add_parser(name, help=one_line)
    return parser


def _command_in(argv: Sequence[str]) -> str:
    """The command named in ``argv``: its first word that is not an option (no global option takes a value)."""
    return next((a for a in argv if not a.startswith("-")), "")


def _configure_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", stream=sys.stderr)
    if verbose < 2:
        for noisy in ("pynetdicom", "distributed", "highdicom", "PIL", "matplotlib", "openjpeg"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(_command_in(argv)).parse_args(argv)
    _configure_logging(args.verbose, args.quiet)
    handler: Handler = args.handler
    try:
        status = handler(args)
        sys.stdout.flush()  # a reader that went away (`| head`) shows here at the latest, not at interpreter exit
        return status
    except BrokenPipeError:
        # stop quietly as a Unix tool does; stdout goes to devnull so the interpreter's own final flush is silent
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a tool killed by it
    except UsageError as exc:
        print(f"spine-assess: usage error: {exc}", file=sys.stderr)
        return 2
    except ConfigError as exc:
        print(f"spine-assess: configuration error: {exc}", file=sys.stderr)
        return 2
    except PipelineError as exc:
        print(f"spine-assess: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("spine-assess: interrupted", file=sys.stderr)
        return 130
