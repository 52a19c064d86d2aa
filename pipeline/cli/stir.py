"""``spine-assess stir``: STIR marrow oedema per vertebra on given image files and a given label map."""

from __future__ import annotations

import argparse
from pathlib import Path


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
    from pipeline.model import StirStatus, Substitute
    from pipeline.run_stir import StirInputs, run_stir
    from pipeline.stir import load_stir_config

    cfg = load_stir_config(args.config)
    inputs = StirInputs(
        anatomy=args.anatomy,
        labels=args.labels,
        stir=args.stir,
        t1=args.t1,
        levels=args.levels,
        substitute=Substitute(args.substitute) if args.substitute else None,
        different_frame=args.different_frame,
    )
    done = run_stir(inputs, args.out, cfg=cfg)
    findings = {f.label: f for f in done.assessment.findings}
    for v in done.segmentation.vertebrae:
        f = findings[v.label]
        edema = {True: "OEDEMA", False: "no oedema", None: "not assessable"}[f.edema]
        print(f"{v.level.value if v.level else v.label}: {edema} ({f.reason})")
    print(f"status: {done.assessment.status}; written to {done.out_dir}")
    return 0 if done.assessment.status != StirStatus.FAILED else 1
