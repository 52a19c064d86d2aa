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
from typing import Any

from pipeline import __version__
from pipeline.errors import ConfigError, InputError, PipelineError, UsageError

logger = logging.getLogger("pipeline.cli")

Handler = Callable[[argparse.Namespace], int]


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
    builders = {add.__name__.removeprefix("_add_"): add for add in _SUBCOMMANDS}
    for name, one_line in _COMMANDS.items():
        if command is None or command == name:
            builders[name](sub)
        else:
            sub.add_parser(name, help=one_line)
    return parser


def _command_in(argv: Sequence[str]) -> str:
    """The command named in ``argv``: its first word that is not an option (no global option takes a value)."""
    return next((a for a in argv if not a.startswith("-")), "")


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


def _configure_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", stream=sys.stderr)
    if verbose < 2:
        for noisy in ("pynetdicom", "distributed", "highdicom", "PIL", "matplotlib", "openjpeg"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


def _require_input(path: Path, what: str) -> None:
    """A missing input path is a usage error (exit 2), the same for every command."""
    if not path.exists():
        raise UsageError(f"{what} {path}: no such file or folder; give the folder (or NIfTI file) of the study")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(_command_in(argv)).parse_args(argv)
    _configure_logging(args.verbose, args.quiet)
    handler: Handler = args.handler
    try:
        return handler(args)
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


# --------------------------------------------------------------------------- inspect
def _add_inspect(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "inspect",
        help=_COMMANDS["inspect"],
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
    p.add_argument(
        "--config", type=Path, default=None, metavar="FILE", help="ingest settings file (default: configs/ingest.yaml)"
    )
    p.set_defaults(handler=_cmd_inspect)


def _cmd_inspect(args: argparse.Namespace) -> int:
    import json

    from pipeline.ingest import choose_series, discover, load_ingest_config
    from pipeline.ingest.summary import format_skipped, format_study, patient_identity, study_json

    _require_input(args.study_dir, "STUDY_DIR")
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


# Subcommand builders are appended below as the stages land; each sets ``handler``.
_SUBCOMMANDS: list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]] = []


# --------------------------------------------------------------------------- rules (eligibility)
def _add_rules(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "rules",
        help=_COMMANDS["rules"],
        description=(
            "Checks the vertebral augmentation eligibility rules (configs/eligibility.yaml) and, with "
            "--clinical, a patient's clinical file (clinical.yaml or clinical.json, see "
            "docs/clinical_inputs.md). Prints each rule with its kind and source, and which clinical "
            "fields are still empty. Exit 0 if everything is valid, 2 if a file has a mistake (the message "
            "names the file and the field)."
        ),
    )
    p.add_argument(
        "--rules",
        type=Path,
        default=None,
        metavar="FILE",
        help="rules file to check (default: the installed configs/eligibility.yaml)",
    )
    p.add_argument(
        "--clinical",
        type=Path,
        default=None,
        metavar="FILE",
        help="clinical.yaml / clinical.json to check, or a study folder that contains one",
    )
    p.set_defaults(handler=_cmd_rules)


def _cmd_rules(args: argparse.Namespace) -> int:
    from pipeline.eligibility import find_clinical_file, load_clinical, load_rules
    from pipeline.eligibility.inputs import INPUTS, Origin, Scope

    rules = load_rules(args.rules)
    # both files are checked before anything is printed: a mistake is the first (and only) thing shown
    path = args.clinical
    clinical = None
    if path is not None:
        if not path.exists():
            raise UsageError(f"--clinical {path}: no such file or folder")
        if path.is_dir():
            found = find_clinical_file(path)
            if found is None:
                raise ConfigError(f"{path}: no clinical.yaml, clinical.yml or clinical.json in this folder")
            path = found
        clinical = load_clinical(path)
    print(f"rules: {rules.path} (sha256 {rules.sha256[:12]}, {len(rules.rules)} rules) - valid")
    for r in rules.rules:
        cites = dict.fromkeys(f"{rules.references[s.seed].short}, {s.section}" for s in r.sources if s.seed)
        print(f"  {r.id:<45} {r.kind.value:<10} {r.scope.value:<7} {'; '.join(cites)}")
    print("references (the seed documents in shared/seeds):")
    for ref in rules.cited_references():
        print(f"  {ref.short}: {ref.citation} [{ref.seed}]")
    if path is None or clinical is None:
        return 0
    print(f"clinical: {path} - valid")

    def given(spec_field: str) -> bool:
        obj: object = clinical
        for part in spec_field.split("."):
            obj = getattr(obj, part, None)
        return obj is not None

    empty = [
        s
        for s in INPUTS.values()
        if s.origin is Origin.CLINICAL
        and (s.value(None, clinical) is None if s.scope is Scope.PATIENT else not given(s.field))
    ]
    for spec in empty:
        print(f"  not given: {spec.field:<40} {spec.question}")
    read = ", ".join(lv.value for lv in clinical.radiologist_findings) or "none"
    print(f"  radiologist findings given for: {read}")
    return 0


_SUBCOMMANDS.append(_add_rules)
_SUBCOMMANDS.append(_add_inspect)


# --------------------------------------------------------------------------- phantom
def _add_phantom(sub: argparse._SubParsersAction) -> None:
    from pipeline.phantom.dicom_writer import TRANSFER_SYNTAXES
    from pipeline.phantom.spec import FRACTURE_SYNTAX, Vendor

    p = sub.add_parser(
        "phantom",
        help=_COMMANDS["phantom"],
        description=(
            "Generate a synthetic sagittal spine MRI study: T1, T2 and STIR series of an artificial "
            "patient (T10 to sacrum by default) with optional vertebral fractures, written as DICOM files "
            "together with truth.json (exact heights, height loss, Genant grade, oedema, canal compromise "
            "of every vertebra). The images are for testing software only; the patient is synthetic."
        ),
        epilog=(
            "examples:\n"
            "  spine-assess phantom out/normal --seed 1\n"
            "  spine-assess phantom out/wedge --seed 2 --fracture L1:wedge:35:edema=band:0.4\n"
            "  spine-assess phantom out/two --fracture T12:crush:72:retro=3 \\\n"
            "      --fracture L3:biconcave:30:edema=diffuse --vendor ge --transfer-syntax rle\n"
            "  spine-assess phantom --samples sample_dicom/      (regenerate the committed sample studies)\n"
            f"\nfracture syntax: {FRACTURE_SYNTAX}"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("out", nargs="?", type=Path, metavar="OUT", help="folder to write the study into (created)")
    p.add_argument(
        "--samples",
        type=Path,
        metavar="DIR",
        help="write every sample study (01_normal ... 04_myeloma_four_acute_levels) into DIR instead",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="random seed: same seed and options give identical files (default 0)"
    )
    p.add_argument(
        "--fracture",
        action="append",
        default=[],
        metavar="SPEC",
        help="add a fractured vertebra, e.g. L1:wedge:35:edema=band:0.4 (repeat for more levels)",
    )
    p.add_argument(
        "--top-level",
        default="T10",
        type=_level_arg,
        metavar="LEVEL",
        help="highest vertebra fully in the picture and labelled (default T10)",
    )
    p.add_argument(
        "--no-sacrum",
        action="store_true",
        help="leave the sacrum out of the picture (lowest labelled body: --bottom-level)",
    )
    p.add_argument(
        "--bottom-level",
        default="L4",
        type=_level_arg,
        metavar="LEVEL",
        help="lowest labelled vertebra with --no-sacrum (default L4)",
    )
    p.add_argument("--slices", type=int, default=15, help="number of sagittal slices (default 15)")
    p.add_argument("--thickness", type=float, default=4.0, help="slice thickness in mm (default 4)")
    p.add_argument("--gap", type=float, default=0.4, help="gap between slices in mm (default 0.4)")
    p.add_argument("--pixel-spacing", type=float, default=0.85, help="in-plane pixel size in mm (default 0.85)")
    p.add_argument("--matrix", type=int, default=384, help="image matrix, rows = columns (default 384)")
    p.add_argument(
        "--noise", type=float, default=2.0, help="noise level in percent of the brightest tissue (default 2)"
    )
    p.add_argument(
        "--vendor",
        choices=[v.value for v in Vendor],
        default="siemens",
        help="scanner naming style of the series (default siemens)",
    )
    p.add_argument(
        "--transfer-syntax",
        choices=list(TRANSFER_SYNTAXES),
        default="explicit",
        help="DICOM encoding: explicit (uncompressed, default), rle, jpeg-ls or jpeg2000 (all lossless)",
    )
    p.add_argument("--axial", action="store_true", help="also write an oblique axial T2 stack through L3-S1")
    p.add_argument("--localizer", action="store_true", help="also write a 3-plane localizer series")
    p.add_argument("--overwrite", action="store_true", help="replace a phantom study already in OUT")
    p.set_defaults(handler=_cmd_phantom)


def _level_arg(text: str) -> object:
    from pipeline.levels import Level

    try:
        return Level.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# PhantomSpec field -> the phantom option that sets it: messages name what the user typed.
_PHANTOM_OPTIONS = {
    "pixel_spacing_mm": "--pixel-spacing",
    "slice_thickness_mm": "--thickness",
    "slice_gap_mm": "--gap",
    "n_slices": "--slices",
    "noise_pct": "--noise",
    "top_level": "--top-level",
    "bottom_level": "--bottom-level",
    "include_sacrum": "--no-sacrum",
    "rows": "--matrix",
    "cols": "--matrix",
    "overwrite=True": "--overwrite",
}


def _option_names(text: str) -> str:
    import re

    return re.sub(
        "|".join(rf"(?<![\w-]){re.escape(k)}(?![\w])" for k in sorted(_PHANTOM_OPTIONS, key=len, reverse=True)),
        lambda m: _PHANTOM_OPTIONS[m.group(0)],
        text,
    )


def _phantom_spec(args: argparse.Namespace, fractures: tuple[Any, ...]) -> Any:
    from pipeline.phantom import PhantomSpec

    return PhantomSpec(
        seed=args.seed,
        top_level=args.top_level,
        include_sacrum=not args.no_sacrum,
        bottom_level=args.bottom_level,
        fractures=fractures,
        n_slices=args.slices,
        slice_thickness_mm=args.thickness,
        slice_gap_mm=args.gap,
        pixel_spacing_mm=args.pixel_spacing,
        rows=args.matrix,
        cols=args.matrix,
        noise_pct=args.noise,
        vendor=args.vendor,
        include_axial_t2=args.axial,
        include_localizer=args.localizer,
    )


def _cmd_phantom(args: argparse.Namespace) -> int:
    from pipeline.phantom import parse_fracture, render_phantom, write_samples, write_study

    if args.samples is not None:
        if args.out is not None:
            raise ConfigError("give either OUT or --samples DIR, not both")
        for rec in write_samples(args.samples):
            print(
                f"{args.samples / rec.name}: {rec.files} files, {rec.bytes / 1e6:.1f} MB, rendered in "
                f"{rec.render_s:.1f} s, written in {rec.write_s:.1f} s ({rec.transfer_syntax})"
            )
        return 0
    if args.out is None:
        raise ConfigError("missing OUT folder (or use --samples DIR); see spine-assess phantom --help")
    fractures = tuple(parse_fracture(text) for text in args.fracture)
    try:
        phantom = render_phantom(_phantom_spec(args, fractures))
    except ConfigError as exc:
        raise ConfigError(_option_names(str(exc))) from None
    out = write_study(phantom, args.out, transfer_syntax=args.transfer_syntax, overwrite=args.overwrite)
    levels = ", ".join(
        f"{v['level']}"
        + (
            f" ({v['morphology']} {v['height_loss_pct']:.0f} %" + (", oedema" if v["edema"]["present"] else "") + ")"
            if v["fractured"] or v["edema"]["present"]
            else ""
        )
        for v in phantom.truth["vertebrae"]
    )
    n_series = len(phantom.truth["study"]["series"])
    print(f"{out}: {n_series} series, vertebrae {levels}; truth in {out / 'truth.json'}")
    return 0


_SUBCOMMANDS.append(_add_phantom)


# --------------------------------------------------------------------------- stir
def _add_stir(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from pipeline.model import Substitute

    p = sub.add_parser(
        "stir",
        help=_COMMANDS["stir"],
        description=(
            "Measure bone-marrow oedema (STIR hyperintensity) in every labelled vertebral body. "
            "Inputs are image files (NIfTI, NRRD, MHA) with correct geometry: the anatomy series the labels "
            "were drawn on, its label map (1 = most cranial body), and the STIR (or a fat-saturated T2 / "
            "Dixon water image, flagged with --substitute). Writes stir.json (per-vertebra ratio, oedema "
            "fraction, decision, pattern, confidence and reasons), edema_map.nii.gz and a mid-sagittal "
            "overlay PNG into --out."
        ),
    )
    p.add_argument("--anatomy", required=True, type=Path, help="image the labels belong to (e.g. T2)")
    p.add_argument("--labels", required=True, type=Path, help="vertebral-body label map on the anatomy grid")
    p.add_argument("--levels", type=Path, help='JSON {"1": "L1", ...}; S1 is reported, never the reference')
    p.add_argument("--stir", type=Path, help="STIR image; leave out to record that oedema cannot be assessed")
    p.add_argument("--t1", type=Path, help="T1 image for corroboration (optional)")
    p.add_argument("--substitute", choices=[s.value for s in Substitute], help="--stir is this substitute")
    p.add_argument(
        "--different-frame",
        action="store_true",
        help="the STIR (and T1) were not acquired in the anatomy's frame of reference: register them",
    )
    p.add_argument("--config", type=Path, help="stir.yaml to use instead of the shipped configs/stir.yaml")
    p.add_argument("--out", required=True, type=Path, help="output folder (created)")
    p.set_defaults(handler=_cmd_stir)


def _cmd_stir(args: argparse.Namespace) -> int:
    import json

    import numpy as np
    import SimpleITK as sitk
    from PIL import Image

    from pipeline.levels import Level
    from pipeline.model import Substitute
    from pipeline.outdir import check_output_folder
    from pipeline.report.json_report import jsonable, stir_sections
    from pipeline.stir import assess_stir, load_stir_config
    from pipeline.stir.labelmap import segmentation_from_label_map
    from pipeline.stir.overlay import overlay_rgb
    from pipeline.volume import Volume

    cfg = load_stir_config(args.config)
    # only its own three files are ever overwritten; a folder holding anything else is refused
    check_output_folder(args.out, names={"stir.json", "edema_map.nii.gz", "stir_overlay.png"})

    def read(path: Path) -> Volume:
        try:
            return Volume.from_sitk(sitk.ReadImage(str(path)))
        except RuntimeError as exc:
            why = str(exc).strip().splitlines()[-1][:160]
            raise InputError(f"{path}: cannot read image ({why})") from None

    levels = {}
    if args.levels:
        try:
            levels = {int(k): Level.parse(v) for k, v in json.loads(args.levels.read_text()).items()}
        except (OSError, ValueError, AttributeError) as exc:
            raise InputError(f"{args.levels}: not a JSON mapping of label -> level ({exc})") from None
    anatomy = read(args.anatomy)
    seg = segmentation_from_label_map(read(args.labels), levels, method=f"label map {args.labels.name}")
    stir = read(args.stir) if args.stir else None
    t1 = read(args.t1) if args.t1 else None
    uid_b = "2" if args.different_frame else "1"
    result = assess_stir(
        anatomy,
        seg,
        stir,
        cfg=cfg,
        stir_frame_of_reference_uid=uid_b,
        anatomy_frame_of_reference_uid="1",
        substitute=Substitute(args.substitute) if args.substitute else None,
        t1=t1,
        t1_frame_of_reference_uid=uid_b,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    section, per_label = stir_sections(result)
    section["warnings"] = list(result.warnings)
    section["vertebrae"] = [
        {"label": v.label, "level": v.level.value if v.level else None, **per_label[v.label]} for v in seg.vertebrae
    ]
    (args.out / "stir.json").write_text(json.dumps(jsonable(section), indent=2) + "\n", encoding="utf-8")
    if result.edema_map is not None and result.stir_on_grid is not None:
        sitk.WriteImage(result.edema_map.to_sitk(), str(args.out / "edema_map.nii.gz"))
        mid = int(round(float(np.median([v.mid_slice for v in seg.vertebrae]))))
        Image.fromarray(overlay_rgb(result, mid, seg.labels)).save(args.out / "stir_overlay.png")
    for f in section["vertebrae"]:
        edema = {True: "OEDEMA", False: "no oedema", None: "not assessable"}[f["edema"]]
        print(f"{f['level'] or f['label']}: {edema} ({f['reason']})")
    print(f"status: {result.status}; written to {args.out}")
    return 0 if result.status != "failed" else 1


_SUBCOMMANDS.append(_add_stir)


# --------------------------------------------------------------------------- run (one study)
def _add_run(sub: argparse._SubParsersAction) -> None:
    from pipeline.report.outputs import OUTPUTS_HELP

    p = sub.add_parser(
        "run",
        help=_COMMANDS["run"],
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
    p.add_argument("--outputs", default="json,html,seg,sr", metavar="LIST", help=OUTPUTS_HELP)
    p.add_argument(
        "--clinical",
        type=Path,
        default=None,
        metavar="FILE",
        help="clinical inputs (clinical.yaml / .json; default: the one in STUDY_DIR, if any)",
    )
    p.add_argument(
        "--anchor",
        default=None,
        metavar="LEVEL=POS",
        help="correct the level count: e.g. L5=lowest (the lowest lumbar-type body is L5: the body just above "
        "the sacrum when the sacrum is detected, else the lowest body found), L1=3 (the 3rd body from the top is "
        "L1), L3=z:-120.5 (the body nearest that patient z in mm is L3). An anchor that names the detected sacrum "
        "otherwise is used, with a warning in the report and here",
    )
    p.add_argument(
        "--config-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="folder with the configuration files (default: the shipped configs/)",
    )
    p.set_defaults(handler=_cmd_run)


def _cmd_run(args: argparse.Namespace) -> int:
    from pipeline.outdir import check_not_overlapping, check_output_folder
    from pipeline.report.outputs import parse_outputs
    from pipeline.run import RunOptions, load_pipeline_config, run_study
    from pipeline.segment import parse_anchor_option

    outputs = parse_outputs(args.outputs)
    anchor = parse_anchor_option(args.anchor, "--anchor")
    _require_input(args.study_dir, "STUDY_DIR")
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


def format_study_summary(report: dict, out_dir: Path) -> str:
    """A few lines for the terminal: levels, fractures, oedema, decisions, where the files are."""
    from pipeline.model import GradeState
    from pipeline.report.views import vertebra_grade

    lines = [f"study {report['study']['study_instance_uid']}"]
    verts = [v for v in report.get("vertebrae", []) if not v.get("is_sacrum")]
    if verts:
        lines.append(f"  vertebral bodies: {len(verts)} ({verts[0]['level'] or '?'}..{verts[-1]['level'] or '?'})")
    for v in verts:
        g = vertebra_grade(v)
        edema = (v.get("stir") or {}).get("edema")
        if (g.grade or 0) >= 1 or edema or g.state is GradeState.UNCERTAIN:
            loss = v.get("height_loss_pct")
            shape = f", {v.get('morphology')}" if g.state is GradeState.DEFINITE else ""
            lines.append(
                f"  {v['level'] or '?':>4}: height loss {loss if loss is not None else '?'} %, {g.text}{shape}, "
                f"STIR oedema {'yes' if edema else ('no' if edema is False else 'unknown')}"
                + (f"\n        ({g.note})" if g.note else "")
            )
    summary = (report.get("eligibility") or {}).get("summary")
    if summary:
        lines.append(f"  eligibility: {summary if isinstance(summary, str) else summary.get('text', summary)}")
    for w in report.get("warnings", []):
        lines.append(f"  warning: {w}")
    lines.append(
        f"  report: {out_dir / 'report.json'}"
        + (f" and {out_dir / 'report.html'}" if report.get("outputs", {}).get("html") else "")
    )
    return "\n".join(lines)


_SUBCOMMANDS.insert(0, _add_run)


# --------------------------------------------------------------------------- batch (many studies)
def _add_batch(sub: argparse._SubParsersAction) -> None:
    from pipeline.batch.task import DEFAULT_MEMORY_LIMIT_MB, DEFAULT_TIMEOUT_S
    from pipeline.report.outputs import OUTPUTS_HELP

    p = sub.add_parser(
        "batch",
        help=_COMMANDS["batch"],
        description=(
            "Assess every study found under ROOT (any folder layout: one folder per study, PACS or CD exports, "
            "NIfTI files) and write each study's results into its own folder under --out, named after the "
            "study's folder (never after the patient). Studies run in separate worker processes: a study that "
            "fails, takes too long or runs out of memory is recorded with the reason and the others carry on. "
            "--out/summary.csv (opens in a spreadsheet) and summary.json list every study: status, vertebral "
            "levels found, fractures, oedema, eligibility, run time and error. If the batch is stopped (Ctrl-C, "
            "power cut), run the same command again with --resume: finished studies are kept and only the "
            "others are run. Exit status: 0 all studies assessed, 1 some could not be, 2 a mistake in the "
            "command, the settings or a clinical file (nothing was run), 130 stopped with Ctrl-C."
        ),
        epilog=(
            "examples:\n"
            "  spine-assess batch /data/exports --out /data/results -j 2\n"
            "  spine-assess batch /data/exports --out /data/results -j 2 --resume      (continue after a stop)\n"
            "  spine-assess batch /data/exports --out /data/results --clinical-dir /data/clinical\n"
            "  spine-assess batch /shared/exports --out /shared/results --dask-scheduler tcp://10.0.0.5:8786\n"
            "\nclinical files with --clinical-dir D: D/<StudyInstanceUID>.yaml, or D/<study folder>.yaml where\n"
            "<study folder> is the study's folder relative to ROOT (e.g. D/site1/study07.yaml for\n"
            "ROOT/site1/study07); without them, a clinical.yaml inside the study's own folder is used.\n"
            "Details: docs/batch.md"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("root", metavar="ROOT", type=Path, help="folder holding the studies (searched in all sub-folders)")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder (one sub-folder per study)")
    p.add_argument(
        "-j",
        "--jobs",
        type=int,
        default=1,
        metavar="N",
        help="studies processed at the same time (default 1; at most the number of CPU cores)",
    )
    p.add_argument(
        "--clinical-dir", type=Path, default=None, metavar="D", help="folder with one clinical file per study"
    )
    again = p.add_mutually_exclusive_group()
    again.add_argument(
        "--resume",
        action="store_true",
        help="continue an earlier batch into the same --out: keep finished studies whose files did not change",
    )
    again.add_argument("--force", action="store_true", help="run every study again, replacing earlier results")
    p.add_argument(
        "--retry-failed",
        action="store_true",
        help="with --resume, also run again the studies that failed last time (default: keep their error)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        metavar="S",
        help=f"stop a study after S seconds (default {DEFAULT_TIMEOUT_S:g}; 0 = no limit)",
    )
    p.add_argument(
        "--memory-limit",
        type=int,
        default=DEFAULT_MEMORY_LIMIT_MB,
        metavar="MB",
        help=f"stop a study whose worker uses more memory than this (default {DEFAULT_MEMORY_LIMIT_MB}; 0 = no limit)",
    )
    p.add_argument("--outputs", default="json,html,seg,sr", metavar="LIST", help=OUTPUTS_HELP)
    p.add_argument(
        "--anchor",
        default=None,
        metavar="LEVEL=POS",
        help="level-count correction applied to EVERY study (see spine-assess run --help); rarely right for a batch",
    )
    p.add_argument(
        "--config-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="folder with the configuration files (default: the shipped configs/)",
    )
    p.add_argument(
        "--dask-scheduler",
        default=None,
        metavar="tcp://HOST:PORT",
        help="run the studies on a Dask cluster instead of this computer (see docs/batch.md); -j is then ignored",
    )
    p.set_defaults(handler=_cmd_batch)


def _cmd_batch(args: argparse.Namespace) -> int:
    import signal
    import time

    from pipeline import __version__
    from pipeline.batch.executor import make_executor
    from pipeline.batch.ledger import batch_lock
    from pipeline.batch.plan import options_salt, plan_batch
    from pipeline.batch.runner import BatchSettings, Mode, StopRequest, check_folders, prepare_out_dir, run_batch
    from pipeline.batch.summary import format_end_screen
    from pipeline.report.outputs import parse_outputs
    from pipeline.run import load_pipeline_config
    from pipeline.segment import parse_anchor_option

    t0 = time.monotonic()
    if args.jobs < 1:
        raise ConfigError(f"-j/--jobs must be at least 1, got {args.jobs}")
    if args.timeout < 0 or args.memory_limit < 0:
        raise ConfigError("--timeout and --memory-limit must be positive (0 = no limit)")
    if args.retry_failed and not args.resume:
        raise ConfigError("--retry-failed goes with --resume")
    outputs = frozenset(o.value for o in parse_outputs(args.outputs))
    parse_anchor_option(args.anchor, "--anchor")  # refuse a bad anchor before any study starts
    root: Path = args.root
    if not root.is_dir():
        raise ConfigError(f"{root}: no such folder; give the folder that holds the studies")
    if args.clinical_dir is not None and not args.clinical_dir.is_dir():
        raise ConfigError(f"--clinical-dir {args.clinical_dir}: no such folder")
    check_folders(root, args.out)
    config = load_pipeline_config(args.config_dir)
    mode = Mode.RESUME if args.resume else Mode.FORCE if args.force else Mode.NEW
    prepare_out_dir(args.out, mode)
    ingest_log = logging.getLogger("pipeline.ingest")
    level = ingest_log.level
    with batch_lock(args.out):
        logger.info("looking for studies under %s ...", root)
        if args.verbose == 0:
            ingest_log.setLevel(logging.WARNING)  # one line per skipped file: only with -v
        try:
            salt = options_salt(version=__version__, config_sha256=config.sha256, outputs=outputs, anchor=args.anchor)
            plan = plan_batch(root, ingest=config.ingest, salt=salt, clinical_dir=args.clinical_dir)
        finally:
            ingest_log.setLevel(level)
        if not plan.studies and not plan.unreadable:
            print(f"spine-assess: no studies found under {root} ({plan.n_files} files looked at)", file=sys.stderr)
            return 1
        worker_level = logging.DEBUG if args.verbose > 1 else logging.INFO if args.verbose else logging.WARNING
        executor = make_executor(workers=args.jobs, dask_scheduler=args.dask_scheduler, log_level=worker_level)
        label = (
            f"Dask {args.dask_scheduler}, {getattr(executor, 'capacity', '?')} worker thread(s)"
            if args.dask_scheduler
            else f"{args.jobs} worker process{'es' if args.jobs > 1 else ''}"
        )
        settings = BatchSettings(
            outputs=outputs,
            anchor=args.anchor,
            config_dir=config.config_dir.resolve(),
            config_sha256=config.sha256,
            timeout_s=args.timeout or None,
            memory_limit_mb=args.memory_limit or None,
        )
        stop = StopRequest()
        previous = {
            signal.SIGINT: signal.signal(signal.SIGINT, lambda signum, frame: stop.request(signum)),
            signal.SIGTERM: signal.signal(signal.SIGTERM, lambda signum, frame: stop.request(signum, now=True)),
        }
        try:
            result = run_batch(
                plan,
                args.out,
                executor=executor,
                settings=settings,
                mode=mode,
                retry_failed=args.retry_failed,
                progress_tty=False if args.quiet else None,
                stop=stop,
                workers_label=label,
            )
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    print(
        format_end_screen(
            result.rows,
            root=plan.root,
            out_root=args.out,
            elapsed_s=time.monotonic() - t0,
            workers=label,
            n_skipped_files=plan.n_skipped,
            interrupted=result.interrupted,
        )
    )
    return result.exit_code


_SUBCOMMANDS.append(_add_batch)


# --------------------------------------------------------------------------- listen (PACS listener)
def _add_listen(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "listen",
        help=_COMMANDS["listen"],
        description=(
            "Run the DICOM listener: the PACS (or a scanner) sends sagittal spine MRI studies to this AE title "
            "and port. Every image is saved to the spool folder before it is acknowledged. When no new image of a "
            "study has arrived for trigger.stable_seconds, the study is assessed and its DICOM SR and SEG are sent "
            "to the destinations in the configuration. Keeps running until Ctrl-C or SIGTERM; after a restart it "
            "carries on where it stopped. Check progress with 'spine-assess queue list'. Set-up and operations: "
            "docs/pacs.md."
        ),
    )
    p.add_argument(
        "--config", type=Path, default=None, metavar="FILE", help="listener settings (default: configs/listener.yaml)"
    )
    p.add_argument("--ae-title", default=None, metavar="AET", help="our AE title (overrides network.ae_title)")
    p.add_argument("--port", type=int, default=None, help="TCP port to listen on (overrides network.port)")
    p.add_argument("--spool", type=Path, default=None, metavar="DIR", help="spool folder (overrides storage.spool_dir)")
    p.set_defaults(handler=_cmd_listen)


def _listener_config(args: argparse.Namespace) -> object:
    from pipeline.listener import load_listener_config

    cfg = load_listener_config(args.config)
    return cfg.with_overrides(
        ae_title=getattr(args, "ae_title", None), port=getattr(args, "port", None), spool_dir=args.spool
    )


def _cmd_listen(args: argparse.Namespace) -> int:
    import signal
    import threading

    import pydicom.config

    from pipeline.listener import serve

    cfg = _listener_config(args)
    # Value validation warnings quote the offending value (a patient name, say) into the log: not in this service.
    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    stop = threading.Event()

    def _on_signal(signum: int, _frame: object) -> None:
        logger.info("signal %d: stopping the listener", signum)
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    serve(cfg, stop)  # type: ignore[arg-type]
    return 0


_SUBCOMMANDS.append(_add_listen)


# --------------------------------------------------------------------------- queue (listener operations)
def _add_queue(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "queue",
        help=_COMMANDS["queue"],
        description=(
            "Look at and manage what the listener has received: which studies are arriving, waiting, being "
            "assessed, done or failed (dead letters), and whether their results reached the PACS. Works while "
            "the listener runs. Studies are named by their Study Instance UID."
        ),
        epilog=(
            "examples:\n"
            "  spine-assess queue list                      all studies, newest last\n"
            "  spine-assess queue list --status dead        only the failed ones\n"
            "  spine-assess queue show 1.2.840.113619.2.1   details, exports, quarantined images\n"
            "  spine-assess queue retry 1.2.840.113619.2.1  try a failed study / its failed exports again\n"
            "  spine-assess queue retry --dead              try every dead letter again\n"
            "  spine-assess queue purge --done --older-than-days 30\n"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--config", type=Path, default=None, metavar="FILE", help="listener settings (default: configs/listener.yaml)"
    )
    p.add_argument("--spool", type=Path, default=None, metavar="DIR", help="spool folder (overrides the settings)")
    qs = p.add_subparsers(dest="queue_command", metavar="ACTION")
    qs.required = True
    from pipeline.listener.state import StudyStatus

    pl = qs.add_parser("list", help="one line per study: status, images, attempts, export status, last error")
    pl.add_argument("--status", choices=[s.value for s in StudyStatus], help="only studies in this state")
    pl.add_argument("--json", action="store_true", help="machine-readable output")
    ps = qs.add_parser("show", help="everything about one study")
    ps.add_argument("study_uid", metavar="STUDY_UID")
    ps.add_argument("--json", action="store_true", help="machine-readable output")
    pr = qs.add_parser("retry", help="queue a failed study (or its failed exports) again")
    pr.add_argument("study_uid", nargs="?", metavar="STUDY_UID")
    pr.add_argument("--dead", action="store_true", help="every dead study and every dead export")
    pr.add_argument("--rerun", action="store_true", help="assess a finished study again (e.g. after a config change)")
    pp = qs.add_parser("purge", help="delete a study's images, results and state")
    pp.add_argument("study_uid", nargs="?", metavar="STUDY_UID")
    pp.add_argument("--done", action="store_true", help="every finished study whose results were all delivered ...")
    pp.add_argument(
        "--older-than-days", type=float, default=None, metavar="N", help="... finished more than N days ago"
    )
    pp.add_argument("--force", action="store_true", help="also purge a study that is still arriving or running")
    p.set_defaults(handler=_cmd_queue)


def _cmd_queue(args: argparse.Namespace) -> int:
    import json

    from pipeline.listener import load_listener_config, operations
    from pipeline.listener.state import StudyStatus

    spool_dir = args.spool if args.spool is not None else load_listener_config(args.config).spool_dir
    spool, state = operations.open_state(spool_dir)
    try:
        if args.queue_command == "list":
            rows = operations.list_studies(state, StudyStatus(args.status) if args.status else None)
            print(json.dumps(rows, indent=2) if args.json else operations.format_list(rows))
            return 0
        if args.queue_command == "show":
            d = operations.study_detail(state, spool, args.study_uid)
            print(json.dumps(d, indent=2) if args.json else operations.format_detail(d))
            return 0
        if args.queue_command == "retry":
            print(operations.retry(state, args.study_uid, dead=args.dead, rerun=args.rerun))
            return 0
        if args.done and args.older_than_days is None:
            raise ConfigError("--done needs --older-than-days N")
        purged = operations.purge(
            state,
            spool,
            args.study_uid,
            done_older_than_days=args.older_than_days if args.done else None,
            force=args.force,
        )
        for uid in purged:
            print(f"purged {uid}")
        print(f"{len(purged)} stud{'y' if len(purged) == 1 else 'ies'} purged")
        return 0
    finally:
        state.close()


_SUBCOMMANDS.append(_add_queue)


# Last, after every subcommand above has registered itself in _SUBCOMMANDS.
if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
