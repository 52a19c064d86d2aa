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
from pipeline.errors import ConfigError, InputError, PipelineError

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
        for noisy in ("pynetdicom", "distributed", "highdicom", "PIL", "matplotlib", "openjpeg"):
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
    if not studies:
        print(f"spine-assess: no DICOM image series or NIfTI image in {args.study_dir}", file=sys.stderr)
        return 1
    return 0


# Subcommand builders are appended below as the stages land; each sets ``handler``.
_SUBCOMMANDS: list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]] = []


# --------------------------------------------------------------------------- rules (eligibility)
def _add_rules(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "rules",
        help="check the eligibility rules and a clinical file; list the rules with their sources",
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
    print(f"rules: {rules.path} (sha256 {rules.sha256[:12]}, {len(rules.rules)} rules) - valid")
    for r in rules.rules:
        cites = "; ".join(f"{s.seed[:3]}_* {s.section}" for s in r.sources if s.seed)
        print(f"  {r.id:<45} {r.kind.value:<10} {r.scope.value:<7} {cites}")
    if args.clinical is None:
        return 0
    path = args.clinical
    if path.is_dir():
        found = find_clinical_file(path)
        if found is None:
            raise ConfigError(f"{path}: no clinical.yaml, clinical.yml or clinical.json in this folder")
        path = found
    clinical = load_clinical(path)
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
        help="make a synthetic spine MRI study (DICOM + truth.json) for testing",
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


def _cmd_phantom(args: argparse.Namespace) -> int:
    from pipeline.phantom import PhantomSpec, parse_fracture, render_phantom, write_samples, write_study

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
    spec = PhantomSpec(
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
    phantom = render_phantom(spec)
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
        help="measure STIR marrow oedema per vertebra on given images and a given label map",
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
    from pipeline.report.json_report import jsonable, stir_sections
    from pipeline.stir import assess_stir, load_stir_config
    from pipeline.stir.labelmap import segmentation_from_label_map
    from pipeline.stir.overlay import overlay_rgb
    from pipeline.volume import Volume

    cfg = load_stir_config(args.config)

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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


# --------------------------------------------------------------------------- run (one study)
def _add_run(sub: argparse._SubParsersAction) -> None:
    from pipeline.report.outputs import OUTPUTS_HELP

    p = sub.add_parser(
        "run",
        help="assess one study folder: vertebral bodies, height loss, STIR oedema, eligibility, reports",
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
        help="output folder for this study (replaced as a whole when the run finishes)",
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
        help="correct the level count: e.g. L5=lowest (the lowest body found is L5), L1=3 (the 3rd "
        "body from the top is L1), L3=z:-120.5 (the body nearest that patient z in mm is L3)",
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
    from pipeline.report.outputs import parse_outputs
    from pipeline.run import RunOptions, load_pipeline_config, run_study
    from pipeline.segment import parse_anchor

    outputs = parse_outputs(args.outputs)
    try:
        anchor = parse_anchor(args.anchor) if args.anchor else None
    except ValueError as exc:
        raise ConfigError(f"--anchor: {exc}") from None
    config = load_pipeline_config(args.config_dir)
    result = run_study(
        args.study_dir,
        args.out,
        config=config,
        options=RunOptions(outputs=outputs, clinical_path=args.clinical, anchor=anchor),
    )
    print(format_study_summary(result.report, result.out_dir))
    return 0


def format_study_summary(report: dict, out_dir: Path) -> str:
    """A few lines for the terminal: levels, fractures, oedema, decisions, where the files are."""
    lines = [f"study {report['study']['study_instance_uid']}"]
    verts = [v for v in report.get("vertebrae", []) if not v.get("is_sacrum")]
    if verts:
        lines.append(f"  vertebral bodies: {len(verts)} ({verts[0]['level'] or '?'}..{verts[-1]['level'] or '?'})")
    for v in verts:
        grade = v.get("genant_grade")
        edema = (v.get("stir") or {}).get("edema")
        if (grade or 0) >= 1 or edema:
            loss = v.get("height_loss_pct")
            lines.append(
                f"  {v['level'] or '?':>4}: height loss {loss if loss is not None else '?'} %, Genant {grade}, "
                f"{v.get('morphology')}, STIR oedema {'yes' if edema else ('no' if edema is False else 'unknown')}"
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
