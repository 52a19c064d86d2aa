"""``spine-assess stir``: STIR marrow oedema per vertebra on given image files and a given label map."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.errors import InputError


def add_parser(sub: argparse._SubParsersAction, one_line: str) -> None:
    from pipeline.model import Substitute

    p = sub.add_parser(
        "stir",
        help=one_line,
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
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
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
