"""``spine-assess phantom``: make a synthetic spine MRI study (DICOM + truth.json) for testing."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError


def add_parser(sub: argparse._SubParsersAction, one_line: str) -> None:
    from pipeline.tools.phantom.dicom_writer import TRANSFER_SYNTAXES
    from pipeline.tools.phantom.findings import FRACTURE_SYNTAX
    from pipeline.tools.phantom.spec import Vendor

    p = sub.add_parser(
        "phantom",
        help=one_line,
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
    p.set_defaults(handler=run)


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

    return re.sub(
        "|".join(rf"(?<![\w-]){re.escape(k)}(?![\w])" for k in sorted(_PHANTOM_OPTIONS, key=len, reverse=True)),
        lambda m: _PHANTOM_OPTIONS[m.group(0)],
        text,
    )


def _phantom_spec(args: argparse.Namespace, fractures: tuple[Any, ...]) -> Any:
    from pipeline.tools.phantom import PhantomSpec

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


def run(args: argparse.Namespace) -> int:
    from pipeline.tools.phantom import parse_fracture, render_phantom, write_samples, write_study

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
