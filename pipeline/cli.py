"""Command line: ``spine-assess <command> ...``.

Exit status: 0 success, 1 some studies/items failed, 2 usage or configuration error.
A :class:`~pipeline.errors.PipelineError` prints one clear line; anything else prints a traceback.
Each subcommand is a ``_add_<name>(subparsers)`` builder plus a ``_cmd_<name>(args) -> int`` handler.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from pipeline import __version__
from pipeline.errors import ConfigError, PipelineError

logger = logging.getLogger("pipeline.cli")

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
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
    for add in _SUBCOMMANDS:
        add(sub)
    return parser


def _configure_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", stream=sys.stderr)
    if verbose < 2:
        for noisy in ("pynetdicom", "distributed", "highdicom", "PIL", "matplotlib"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose, args.quiet)
    handler: Handler = args.handler
    try:
        return handler(args)
    except ConfigError as exc:
        print(f"spine-assess: configuration error: {exc}", file=sys.stderr)
        return 2
    except PipelineError as exc:
        print(f"spine-assess: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("spine-assess: interrupted", file=sys.stderr)
        return 130


# --------------------------------------------------------------------------- inspect
def _add_inspect(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "inspect",
        help="list the studies and series in a folder and which series would be used",
        description=(
            "Look through a folder (PACS export, CD copy, scanner export, or a NIfTI file) without analysing "
            "anything: for each study, list its series with orientation, recognised role (T1 / T2 / STIR / "
            "other) and how sure the program is, number of slices, pixel size, slice spacing and thickness, "
            "compression, and whether the series would be used and why. Files that are not images are "
            "counted with the reason. Patient names are not shown unless you add --show-patient."
        ),
    )
    p.add_argument("study_dir", metavar="STUDY_DIR", type=Path, help="folder (or one file) to look through")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON instead of a table")
    p.add_argument("--show-patient", action="store_true",
                   help="also show patient name, ID and birth date (only on a screen nobody else can see)")
    p.add_argument("--config", type=Path, default=None, metavar="FILE",
                   help="ingest settings file (default: configs/ingest.yaml)")
    p.set_defaults(handler=_cmd_inspect)


def _cmd_inspect(args: argparse.Namespace) -> int:
    import json

    from pipeline.ingest import choose_series, discover, load_ingest_config
    from pipeline.ingest.summary import format_skipped, format_study, patient_identity, study_json

    cfg = load_ingest_config(args.config)
    ingest_log = logging.getLogger("pipeline.ingest")
    level = ingest_log.level
    if args.verbose == 0:
        # One line per skipped file is useful in a run's log, but here the table already summarises them.
        ingest_log.setLevel(logging.WARNING)
    try:
        found = discover(args.study_dir, cfg=cfg)
        studies = [(s, choose_series(s, cfg=cfg)) for s in found.studies]
    finally:
        ingest_log.setLevel(level)
    if args.json:
        doc = {
            "root": str(found.root),
            "files_examined": found.n_files,
            "studies": [study_json(s, c, patient=patient_identity(s) if args.show_patient else None)
                        for s, c in studies],
            "skipped": [{"path": str(k.path), "reason": k.reason} for k in found.skipped],
        }
        print(json.dumps(doc, indent=2))
    else:
        print(f"{found.root}: {found.n_files} files, {len(studies)} "
              f"stud{'y' if len(studies) == 1 else 'ies'}, {len(found.skipped)} skipped")
        for s, c in studies:
            print()
            print(format_study(s, c, patient=patient_identity(s) if args.show_patient else None))
        print()
        print(format_skipped(found.skipped, root=found.root if found.root.is_dir() else None))
    if not studies:
        print(f"spine-assess: no DICOM image series or NIfTI image in {args.study_dir}", file=sys.stderr)
        return 1
    return 0


# Subcommand builders are appended below as the stages land; each sets ``handler``.
_SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_inspect]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
