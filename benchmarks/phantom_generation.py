"""Phantom generation speed and study sizes; optionally the contact sheet of the sample studies.

    python benchmarks/phantom_generation.py                     # timings and sizes
    python benchmarks/phantom_generation.py --sheet docs/phantom_samples.png

Prints CPU and wall time of ``render_phantom`` for the default spec and for every sample study, the
write time and the size of each written study (transfer syntax as in sample_dicom/).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.phantom import SAMPLE_STUDIES, PhantomSpec, render_phantom, write_study  # noqa: E402


def _timed(fn, *args, **kwargs):
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - w0, time.process_time() - c0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3, help="renders of the default spec to time (default 3)")
    ap.add_argument("--sheet", type=Path, help="write a T2/STIR contact sheet PNG of the four samples here")
    args = ap.parse_args()

    walls, cpus = [], []
    for seed in range(args.repeat):
        _, wall, cpu = _timed(render_phantom, PhantomSpec(seed=seed))
        walls.append(wall)
        cpus.append(cpu)
    print(
        f"default PhantomSpec (15 x 384 x 384, T1+T2+STIR+labels+truth): "
        f"CPU {np.median(cpus):.2f} s, wall {np.median(walls):.2f} s (median of {args.repeat})"
    )
    rendered = {}
    total = 0
    with tempfile.TemporaryDirectory() as tmp:
        print(
            f"{'study':32s} {'shape':>14s} {'CPU s':>6s} {'wall s':>6s} {'write s':>7s} {'files':>5s} "
            f"{'MB':>6s}  transfer syntax"
        )
        for sample in SAMPLE_STUDIES:
            ph, wall, cpu = _timed(render_phantom, sample.spec)
            rendered[sample.name] = ph
            out, wwall, _ = _timed(write_study, ph, Path(tmp) / sample.name, transfer_syntax=sample.transfer_syntax)
            files = [f for f in out.rglob("*") if f.is_file()]
            size = sum(f.stat().st_size for f in files)
            total += size
            shape = "x".join(str(n) for n in ph.t2.shape)
            print(
                f"{sample.name:32s} {shape:>14s} {cpu:6.2f} {wall:6.2f} {wwall:7.2f} {len(files):5d} "
                f"{size / 1e6:6.2f}  {sample.transfer_syntax}"
            )
    print(f"total size of the sample studies: {total / 1e6:.2f} MB")
    if args.sheet is not None:
        contact_sheet(rendered, args.sheet)
        print(f"contact sheet: {args.sheet} ({args.sheet.stat().st_size / 1e3:.0f} kB)")
    return 0


def contact_sheet(phantoms: dict, path: Path, px_per_mm: float = 0.8) -> None:
    """Mid-sagittal T2 (top row) and STIR (bottom row) of each sample, cropped to the spine; body outlines
    red, oedema outlines yellow."""
    from PIL import Image, ImageDraw

    columns = []
    for name, ph in phantoms.items():
        mid = int(np.bincount([v["mid_slice"] for v in ph.truth["vertebrae"]]).argmax())
        lab = ph.labels.array[mid]
        rows = np.nonzero(lab.any(axis=1))[0]
        cols = np.nonzero(lab.any(axis=0))[0]
        sp = ph.t2.spacing_mm[1]
        r0, r1 = max(rows.min() - int(15 / sp), 0), min(rows.max() + int(15 / sp), lab.shape[0])
        c0, c1 = max(cols.min() - int(40 / sp), 0), min(cols.max() + int(70 / sp), lab.shape[1])
        pair = []
        for vol, seq in ((ph.t2, "T2"), (ph.stir, "STIR")):
            a = vol.array[mid, r0:r1, c0:c1]
            g = np.clip(a / np.percentile(a, 99.5) * 235.0, 0, 235).astype(np.uint8)
            img = Image.fromarray(g, mode="L")
            size = (int(img.width * sp * px_per_mm), int(img.height * sp * px_per_mm))
            img = img.resize(size, Image.LANCZOS)
            g = np.asarray(img).copy()
            lab_small = np.asarray(
                Image.fromarray((lab[r0:r1, c0:c1] > 0).astype(np.uint8)).resize(size, Image.NEAREST)
            )
            oed = np.asarray(
                Image.fromarray((ph.edema.array[mid, r0:r1, c0:c1] > 0).astype(np.uint8)).resize(size, Image.NEAREST)
            )
            g = np.minimum(g, 235)
            g[_edges(lab_small > 0)] = 254
            g[_edges(oed > 0)] = 255
            img = Image.fromarray(g, mode="L").convert("P")
            pal = [i for v in range(256) for i in (v, v, v)]
            pal[254 * 3 : 254 * 3 + 3] = [230, 40, 40]
            pal[255 * 3 : 255 * 3 + 3] = [255, 220, 0]
            img.putpalette(pal)
            ImageDraw.Draw(img).text((3, 2), f"{name[:2]} {seq}", fill=255)
            pair.append(img)
        columns.append(pair)
    w = sum(max(p[0].width, p[1].width) for p in columns) + 4 * (len(columns) - 1)
    h0 = max(p[0].height for p in columns)
    h1 = max(p[1].height for p in columns)
    sheet = Image.new("P", (w, h0 + h1 + 4), 0)
    sheet.putpalette(columns[0][0].getpalette())
    x = 0
    for top, bottom in columns:
        sheet.paste(top, (x, 0))
        sheet.paste(bottom, (x, h0 + 4))
        x += max(top.width, bottom.width) + 4
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, optimize=True)


def _edges(mask: np.ndarray) -> np.ndarray:
    inner = mask.copy()
    inner[1:, :] &= mask[:-1, :]
    inner[:-1, :] &= mask[1:, :]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    return mask & ~inner


if __name__ == "__main__":
    sys.exit(main())
