"""``spine-assess run``: assess one study folder (:func:`pipeline.run.run_study`) and print a short summary."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.cli.options import add_anchor, add_config_dir, add_outputs, anchor_option, outputs_option, require_input

if TYPE_CHECKING:  # --help imports no stage library
    from pipeline.report.study_report import StudyReport, VertebraReport


def add_parser(sub: argparse._SubParsersAction, one_line: str) -> None:
    p = sub.add_parser(
        "run",
        help=one_line,
        description=(
            "Assess one MRI study of the spine. STUDY_DIR is a folder holding one study (DICOM files from a "
            "PACS export, a CD or the scanner, in any sub-folders; or a NIfTI file). The program picks the "
            "sagittal T2 (or T1) series for anatomy and the STIR for oedema, finds and names the vertebral "
            "bodies, measures their heights and STIR signal, checks the published eligibility rules for "
            "vertebroplasty / kyphoplasty, and writes report.json, report.html, labels.nii.gz and DICOM SEG + "
            "SR into --out. If a clinical.yaml is in the study folder (or given with --clinical) the clinical "
            "rules are checked too; otherwise the report lists the clinical questions to answer. "
            "The result supports a clinician's decision; it does not replace it."
        ),
    )
    p.add_argument("study_dir", metavar="STUDY_DIR", type=Path, help="folder with one study (or a NIfTI file)")
    p.add_argument(
        "--out",
        required=True,
        type=Path,
        metavar="DIR",
        help="output folder for this study: new, empty, or an earlier spine-assess output of the same study "
        "(replaced as a whole when the run finishes). A folder holding anything else is refused, and so is a "
        "folder inside the input",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="replace an earlier spine-assess output of ANOTHER study in --out (files spine-assess did not write "
        "are never removed)",
    )
    add_outputs(p)
    p.add_argument(
        "--clinical",
        type=Path,
        default=None,
        metavar="FILE",
        help="clinical inputs (clinical.yaml / .json; default: the one in STUDY_DIR, if any)",
    )
    add_anchor(
        p,
        "correct the level count: e.g. L5=lowest (the lowest lumbar-type body is L5: the body just above "
        "the sacrum when the sacrum is detected, else the lowest body found), L1=3 (the 3rd body from the top is "
        "L1), L3=z:-120.5 (the body nearest that patient z in mm is L3). An anchor that names the detected sacrum "
        "otherwise is used, with a warning in the report and here",
    )
    add_config_dir(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from pipeline.outdir import check_not_overlapping, check_output_folder
    from pipeline.run import RunOptions, load_pipeline_config, run_study

    outputs = outputs_option(args)
    anchor = anchor_option(args)
    require_input(args.study_dir, "STUDY_DIR")
    check_not_overlapping(args.study_dir, args.out)
    check_output_folder(args.out, force=args.force)  # refuse before the long work; run_study checks again
    config = load_pipeline_config(args.config_dir)
    result = run_study(
        args.study_dir,
        args.out,
        config=config,
        options=RunOptions(outputs=outputs, clinical_path=args.clinical, anchor=anchor, force=args.force),
    )
    print(format_study_summary(result.report, result.out_dir))
    return 0


def format_study_summary(report: StudyReport, out_dir: Path) -> str:
    """A few lines for the terminal: levels, fractures, oedema, decisions, where the files are."""
    from pipeline.model import GradeState

    lines = [f"study {report.study.study_uid}"]
    verts = [v for v in report.vertebrae if not v.is_sacrum]
    if verts:
        lines.append(f"  vertebral bodies: {len(verts)} ({_level(verts[0])}..{_level(verts[-1])})")
    for v in verts:
        g = v.grade
        edema = v.stir.edema if v.stir is not None else None
        if (g.grade or 0) >= 1 or edema or g.state is GradeState.UNCERTAIN:
            m = v.morphometry
            loss = m.height_loss_pct if m is not None and m.height_loss_pct is not None else "?"
            shape = f", {m.morphology.value}" if m is not None and g.state is GradeState.DEFINITE else ""
            lines.append(
                f"  {_level(v):>4}: height loss {loss} %, {g.text}{shape}, "
                f"STIR oedema {'yes' if edema else ('no' if edema is False else 'unknown')}"
                + (f"\n        ({g.note})" if g.note else "")
            )
    if report.eligibility is not None and report.eligibility.summary:
        lines.append(f"  eligibility: {report.eligibility.summary}")
    for w in report.warnings:
        lines.append(f"  warning: {w}")
    lines.append(
        f"  report: {out_dir / 'report.json'}" + (f" and {out_dir / 'report.html'}" if report.outputs.html else "")
    )
    return "\n".join(lines)


def _level(v: VertebraReport) -> str:
    return v.level.value if v.level is not None else "?"
