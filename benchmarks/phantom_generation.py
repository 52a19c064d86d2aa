"""Phantom generation speed and study sizes; optionally the contact sheet of the sample studies.

    python benchmarks/phantom_generation.py                     # timings and sizes
    python benchmarks/phantom_generation.py --sheet docs/phantom_samples.png
    python benchmarks/phantom_generation.py --random 20          # random training specs (random_spec)
    python benchmarks/phantom_generation.py --random 6 --variety-sheet docs/phantom_variety.png

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

from pipeline.tools.phantom import SAMPLE_STUDIES, PhantomSpec, random_spec, render_phantom, write_study  # noqa: E402


def _timed(fn, *args, **kwargs):
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - w0, time.process_time() - c0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3, help="renders of the default spec to time (default 3)")
    ap.add_argument("--sheet", type=Path, help="write a T2/STIR contact sheet PNG of the four samples here")
    ap.add_argument("--random", type=int, default=0, help="time random_spec(seed) renders for seeds 0..N-1 only")
    ap.add_argument("--variety-sheet", type=Path, help="with --random: T2/T1/STIR contact sheet of those phantoms")
    args = ap.parse_args()
    if args.random:
        return _random_specs(args.random, args.variety_sheet)

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


def _random_specs(n: int, sheet: Path | None) -> int:
    """Render random_spec(0..n-1); print each study's size, features and time, then the median and maximum."""
    walls, cpus, phantoms = [], [], []
    for seed in range(n):
        spec = random_spec(seed)
        ph, wall, cpu = _timed(render_phantom, spec)
        walls.append(wall)
        cpus.append(cpu)
        if sheet is not None:
            phantoms.append(ph)
        print(f"seed {seed:3d} {'x'.join(str(k) for k in ph.t2.shape):>12s} {_features(spec):60s} CPU {cpu:5.2f} s")
    print(
        f"random_spec render: CPU median {np.median(cpus):.2f} s, max {np.max(cpus):.2f} s; "
        f"wall median {np.median(walls):.2f} s, max {np.max(walls):.2f} s ({n} seeds)"
    )
    if sheet is not None:
        variety_sheet(phantoms, sheet)
        print(f"contact sheet: {sheet} ({sheet.stat().st_size / 1e3:.0f} kB)")
    return 0


def _features(spec: PhantomSpec) -> str:
    out = [f"{spec.top_level.value}-{'S1' if spec.include_sacrum else spec.bottom_level.value}"]
    out.append(f"{spec.slice_thickness_mm:g}mm/{spec.pixel_spacing_mm:.2f}")
    out += [f"{f.level.value}{f.kind.value[0]}{f.height_loss_pct:.0f}{'e' if f.edema else ''}" for f in spec.fractures]
    if spec.desiccated_discs:
        out.append("dry:" + ",".join(d.value for d in spec.desiccated_discs))
    out += [f"slip{s.level.value}:{s.slip_mm:g}" for s in spec.slips]
    out += [f"M{m.modic_type}@{m.level.value}" for m in spec.modic]
    out += [f"SN{n.level.value}" for n in spec.schmorl_nodes]
    if spec.scoliosis_mm:
        out.append(f"scol{spec.scoliosis_mm:+g}@{spec.scoliosis_apex.value}")
    if spec.pelvic_anatomy:
        out.append("pelvis")
    return " ".join(out)


def variety_sheet(phantoms: list, path: Path, px_per_mm: float = 0.55) -> None:
    """One column per phantom: whole-field mid-sagittal T2, T1 and STIR (top to bottom) at a common scale,
    labelled bodies outlined in red, oedema in yellow; the mid slice is the most common one of the bodies."""
    from PIL import Image, ImageDraw

    columns = []
    for ph in phantoms:
        mid = int(np.bincount([v["mid_slice"] for v in ph.truth["vertebrae"]]).argmax())
        sp = ph.t2.spacing_mm[1]
        lab = ph.labels.array[mid]
        tiles = []
        for vol, seq in ((ph.t2, "T2"), (ph.t1, "T1"), (ph.stir, "STIR")):
            a = vol.array[mid]
            g = np.clip(a / np.percentile(a, 99.5) * 235.0, 0, 235).astype(np.uint8)
            img = Image.fromarray(g, mode="L")
            size = (int(img.width * sp * px_per_mm), int(img.height * sp * px_per_mm))
            g = np.minimum(np.asarray(img.resize(size, Image.LANCZOS)).copy(), 235)
            lab_small = np.asarray(Image.fromarray((lab > 0).astype(np.uint8)).resize(size, Image.NEAREST))
            oed = np.asarray(Image.fromarray((ph.edema.array[mid] > 0).astype(np.uint8)).resize(size, Image.NEAREST))
            g[_edges(lab_small > 0)] = 254
            g[_edges(oed > 0)] = 255
            tile = Image.fromarray(g, mode="L")
            ImageDraw.Draw(tile).text((3, 2), f"seed {ph.spec.seed} {seq}", fill=250)
            tiles.append(tile)
        columns.append(tiles)
    w = sum(c[0].width for c in columns) + 4 * (len(columns) - 1)
    heights = [max(c[i].height for c in columns) for i in range(3)]
    sheet = Image.new("L", (w, sum(heights) + 8), 0)
    x = 0
    for tiles in columns:
        y = 0
        for i, tile in enumerate(tiles):
            sheet.paste(tile, (x, y))
            y += heights[i] + 4
        x += tiles[0].width + 4
    out = sheet.convert("P")
    pal = [i for v in range(256) for i in (v, v, v)]
    pal[254 * 3 : 254 * 3 + 3] = [230, 40, 40]
    pal[255 * 3 : 255 * 3 + 3] = [255, 220, 0]
    out.putpalette(pal)
    path.parent.mkdir(parents=True, exist_ok=True)
    out.save(path, optimize=True)


def _edges(mask: np.ndarray) -> np.ndarray:
    inner = mask.copy()
    inner[1:, :] &= mask[:-1, :]
    inner[:-1, :] &= mask[1:, :]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    return mask & ~inner


if __name__ == "__main__":
    sys.exit(main())
