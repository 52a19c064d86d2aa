"""``spine-assess inspect``: the studies and series in a folder and which series would be used (nothing analysed)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.cli.options import add_settings_file, ingest_quiet_unless_verbose, require_input


def add_parser(sub: argparse._SubParsersAction, one_line: str) -> None:
    p = sub.add_parser(
        "inspect",
        help=one_line,
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
    p.add_argument(
        "--show-patient",
        action="store_true",
        help="also show patient name, ID and birth date (only on a screen nobody else can see)",
    )
    add_settings_file(p, "ingest settings file", "ingest.yaml")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from pipeline.ingest import choose_series, discover, load_ingest_config
    from pipeline.ingest.summary import format_skipped, format_study, patient_identity, study_json

    require_input(args.study_dir, "STUDY_DIR")
    cfg = load_ingest_config(args.config)
    with ingest_quiet_unless_verbose(args.verbose):  # the table summarises the skipped files
        found = discover(args.study_dir, cfg=cfg)
        studies = [(s, choose_series(s, cfg=cfg)) for s in found.studies]
    truncated = _truncated_files([s for s, _c in studies])
    if args.json:
        doc = {
            "root": str(found.root),
            "files_examined": found.n_files,
            "truncated": [{"path": str(p), "series_instance_uid": uid, "reason": why} for p, uid, why in truncated],
            "studies": [
                study_json(s, c, patient=patient_identity(s) if args.show_patient else None) for s, c in studies
            ],
            "skipped": [{"path": str(k.path), "reason": k.reason} for k in found.skipped],
        }
        print(json.dumps(doc, indent=2))
    else:
        print(
            f"{found.root}: {found.n_files} files, {len(studies)} "
            f"stud{'y' if len(studies) == 1 else 'ies'}, {len(found.skipped)} skipped"
        )
        for s, c in studies:
            print()
            print(format_study(s, c, patient=patient_identity(s) if args.show_patient else None))
        print()
        print(format_skipped(found.skipped, root=found.root if found.root.is_dir() else None))
        if truncated:
            print(f"\nTruncated files: {len(truncated)} (a series holding one may not load; re-export or re-send them)")
            for p, uid, why in truncated:
                print(f"  {p}: {why} (series {uid})")
    if not studies:
        print(f"spine-assess: no DICOM image series or NIfTI image in {args.study_dir}", file=sys.stderr)
        return 1
    return 0


def _truncated_files(studies: Sequence[Any]) -> list[tuple[Path, str, str]]:
    """(file, series UID, reason) of every DICOM image file that is cut short (pipeline.ingest.integrity)."""
    from pipeline.ingest.integrity import truncation

    out = []
    for study in studies:
        for series in study.series:
            if series.source != "dicom":
                continue
            for path in dict.fromkeys(series.files):
                why = truncation(path)
                if why:
                    out.append((Path(path), series.series_uid, why))
    return out
