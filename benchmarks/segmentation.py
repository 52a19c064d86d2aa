"""Benchmark: vertebral body segmentation and level labelling.

Runs :func:`pipeline.segment.segment_vertebrae` on

- every case of ``../shared/realdata`` (``vb2``: sagittal T2, T11-L5 labelled; ``vb3``: Dixon water, L1-L5
  labelled), at the published grid and resampled to 4 mm slices (mean of 4 adjacent 1-mm slices; the
  truth on the 4-mm grid is the label covering most of the 4 sub-slices);
- synthetic phantoms from :mod:`pipeline.phantom` when that module is installed (with fractures);
- one 15-slice 512 x 512 series (a vb2 case resampled to 4 mm slices and 0.74 mm pixels) for the runtime
  target,

and prints per case and overall: detection recall and precision (a body is found when Dice > 0.5 with a truth
body), mean Dice of the found bodies, level accuracy, CPU seconds per series. Precision is computed over the
*labelled span* only (predicted bodies whose centroid lies between the top of the most cranial and the bottom
of the most caudal truth body): the research masks leave T10 and above, and S1, unlabelled.

For the found bodies it also says where the error lies: predicted / true volume, voxels on sagittal slices the
true body does not reach, Dice within the true body's slices, predicted / true left-right extent, and extra and
missed voxels by lateral position (core, flank, edge of the true body, beyond it).

Overlays (mid-sagittal, truth green, prediction red, level names) and a contact sheet go to ``--out``.

Usage::

    nice python benchmarks/segmentation.py [--out /tmp/segbench] [--sets vb2,vb3,vb2_4mm,vb3_4mm,phantom,runtime]
        [--cases case_02,case_05] [--realdata PATH]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "1")

import SimpleITK as sitk  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipeline.levels import Level  # noqa: E402
from pipeline.model import Role, SegmentationResult  # noqa: E402
from pipeline.segment import SegmentationConfig, load_segmentation_config, segment_vertebrae  # noqa: E402
from pipeline.volume import Volume  # noqa: E402

sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
# ../shared/realdata beside the repository (CI layout); a git worktree one level deeper also works
DEFAULT_REALDATA = next(
    (p for p in (REPO.parent / "shared" / "realdata", REPO.parent.parent / "shared" / "realdata") if p.is_dir()),
    REPO.parent / "shared" / "realdata",
)


LATERAL_BANDS = ((0.0, 0.6), (0.6, 0.8), (0.8, 1.0), (1.0, np.inf))  # |u|: core, flank, edge, beyond the body


@dataclass
class CaseResult:
    set_name: str
    case: str
    n_truth: int
    n_pred_span: int
    found: int
    matched_in_span: int
    dice: list[float] = field(default_factory=list)
    level_ok: int = 0
    level_known: int = 0
    level_wrong: int = 0  # named, but not the truth's level (unnamed bodies are neither right nor wrong)
    # per found body: predicted / true volume, share of the predicted voxels on sagittal slices where the true
    # body is absent (lateral over-reach), Dice with the prediction clipped to the true body's slices
    volume_ratio: list[float] = field(default_factory=list)
    off_slice_share: list[float] = field(default_factory=list)
    dice_in_span: list[float] = field(default_factory=list)
    # predicted / true left-right extent (sagittal slices), and (true, predicted, overlap) voxels per band of
    # lateral position u = distance from the true body's middle slice / its half-width (LATERAL_BANDS)
    width_ratio: list[float] = field(default_factory=list)
    lateral: np.ndarray = field(default_factory=lambda: np.zeros((len(LATERAL_BANDS), 3), dtype=np.int64))
    cpu_s: float = 0.0
    error: str = ""
    warnings: tuple[str, ...] = ()

    @property
    def recall(self) -> float:
        return self.found / self.n_truth if self.n_truth else float("nan")

    @property
    def precision(self) -> float:
        return self.matched_in_span / self.n_pred_span if self.n_pred_span else float("nan")


def load_case(folder: Path) -> tuple[Volume, np.ndarray, dict[int, Level]]:
    img = Volume.from_sitk(sitk.ReadImage(str(folder / "image.nii.gz")))
    lab = Volume.from_sitk(sitk.ReadImage(str(folder / "labels.nii.gz"))).array
    # a few label files carry one extra, empty slice at the end: crop to the image grid
    if lab.shape != img.shape:
        extra = lab[img.shape[0] :]
        if extra.any() or lab.shape[1:] != img.shape[1:]:
            raise ValueError(f"{folder}: labels {lab.shape} do not match image {img.shape}")
        lab = lab[: img.shape[0]]
    levels = {int(k): Level.parse(v) for k, v in json.loads((folder / "levels.json").read_text()).items()}
    return img, lab.astype(np.uint16), levels


def thick_slices(img: Volume, lab: np.ndarray, factor: int = 4) -> tuple[Volume, np.ndarray]:
    """Average ``factor`` adjacent slices (clinical thick-slice simulation) and take the majority label."""
    n = img.shape[0] // factor
    arr = img.array[: n * factor].astype(np.float32).reshape(n, factor, *img.shape[1:]).mean(axis=1)
    sub = lab[: n * factor].reshape(n, factor, *lab.shape[1:])
    out = np.zeros((n, *lab.shape[1:]), dtype=np.uint16)
    best = np.zeros((n, *lab.shape[1:]), dtype=np.int16)
    for v in np.unique(sub):
        if v == 0:
            continue
        cnt = (sub == v).sum(axis=1)
        take = (cnt > best) & (cnt * 2 >= factor)
        out[take] = v
        best[take] = cnt[take]
    sp = (img.spacing_mm[0] * factor, img.spacing_mm[1], img.spacing_mm[2])
    origin = np.asarray(img.origin_lps) + (factor - 1) / 2.0 * img.spacing_mm[0] * img.axes_lps[0]
    return Volume(arr, sp, tuple(origin), img.axes_lps), out


def evaluate(
    set_name: str,
    case: str,
    truth: np.ndarray,
    levels: dict[int, Level],
    res: SegmentationResult,
    cpu_s: float,
    image: Volume,
) -> CaseResult:
    pred = res.labels.array
    t_ids = [int(v) for v in np.unique(truth) if v]
    p_ids = [v.label for v in res.vertebrae]
    # labelled span along the head-feet axis (LPS z)
    zs = []
    for t in t_ids:
        idx = np.argwhere(truth == t)
        z = image.index_to_lps(idx[:: max(1, len(idx) // 2000)])[:, 2]
        zs.extend([z.min(), z.max()])
    z_lo, z_hi = min(zs), max(zs)
    in_span = [v for v in res.vertebrae if z_lo <= v.centroid_lps_mm[2] <= z_hi]
    # Dice matrix
    dice = np.zeros((len(t_ids), len(p_ids)))
    t_counts = {t: int((truth == t).sum()) for t in t_ids}
    for j, p in enumerate(p_ids):
        pm = pred == p
        pc = int(pm.sum())
        if pc == 0:
            continue
        ov = np.bincount(truth[pm].ravel(), minlength=max(t_ids) + 1)
        for i, t in enumerate(t_ids):
            dice[i, j] = 2.0 * ov[t] / (t_counts[t] + pc)
    cr = CaseResult(set_name, case, len(t_ids), len(in_span), 0, 0, cpu_s=cpu_s, warnings=res.warnings)
    matched_pred = set()
    for i, t in enumerate(t_ids):
        if not p_ids:
            break
        j = int(np.argmax(dice[i]))
        if dice[i, j] > 0.5:
            cr.found += 1
            cr.dice.append(float(dice[i, j]))
            matched_pred.add(p_ids[j])
            v = res.vertebrae[j]
            if t in levels:
                cr.level_known += 1
                cr.level_ok += int(v.level is levels[t])
                cr.level_wrong += int(v.level is not None and v.level is not levels[t])
            _error_breakdown(cr, truth == t, pred == p_ids[j])
    cr.matched_in_span = sum(1 for v in in_span if v.label in matched_pred)
    return cr


def _error_breakdown(cr: CaseResult, t_mask: np.ndarray, p_mask: np.ndarray) -> None:
    """Where a found body's error lies: its volume, its sagittal slices beyond the true body, the rest."""
    on = np.asarray(t_mask.any(axis=(1, 2)), dtype=bool)
    clipped = p_mask & on[:, None, None]
    n_t, n_p = int(t_mask.sum()), int(p_mask.sum())
    cr.volume_ratio.append(n_p / max(n_t, 1))
    cr.off_slice_share.append(1.0 - int(clipped.sum()) / max(n_p, 1))
    cr.dice_in_span.append(2.0 * int((clipped & t_mask).sum()) / max(n_t + int(clipped.sum()), 1))
    t_sl = np.flatnonzero(on)
    p_sl = np.flatnonzero(p_mask.any(axis=(1, 2)))
    cr.width_ratio.append(len(p_sl) / max(len(t_sl), 1))
    centre, half = 0.5 * (t_sl[0] + t_sl[-1]), 0.5 * len(t_sl)
    u = np.abs(np.arange(t_mask.shape[0]) - centre) / half
    n_t_sl = t_mask.sum(axis=(1, 2))
    n_p_sl = p_mask.sum(axis=(1, 2))
    n_tp_sl = (t_mask & p_mask).sum(axis=(1, 2))
    for b, (lo, hi) in enumerate(LATERAL_BANDS):
        pick = (u >= lo) & (u < hi)
        cr.lateral[b] += (int(n_t_sl[pick].sum()), int(n_p_sl[pick].sum()), int(n_tp_sl[pick].sum()))


def overlay(path: Path, image: Volume, truth: np.ndarray | None, res: SegmentationResult, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arr = image.array.astype(np.float32)
    mids = [v.mid_slice for v in res.vertebrae]
    k = int(np.median(mids)) if mids else arr.shape[0] // 2
    fig, ax = plt.subplots(figsize=(4, 5))
    ax.imshow(arr[k], cmap="gray", vmin=0, vmax=float(np.percentile(arr[k], 99.5)) or 1.0)
    if truth is not None and truth[k].any():
        ax.contour(truth[k] > 0, [0.5], colors="lime", linewidths=0.6)
    for v in res.vertebrae:
        m = res.labels.array[k] == v.label
        if m.any():
            ax.contour(m, [0.5], colors="red", linewidths=0.7)
            rr, cc = np.nonzero(m)
            name = v.level.value if v.level else "?"
            ax.text(cc.min() - 3, rr.mean(), name, color="yellow", fontsize=6, ha="right", va="center")
    ax.set_title(title, fontsize=7)
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def contact_sheet(paths: list[Path], out: Path, cols: int = 6, thumb: int = 180) -> None:
    from PIL import Image

    if not paths:
        return
    ims = [Image.open(p).convert("RGB") for p in paths]
    ims = [im.resize((thumb, int(thumb * im.height / im.width))) for im in ims]
    h = max(im.height for im in ims)
    rows = (len(ims) + cols - 1) // cols
    sheet = Image.new("RGB", (cols * thumb, rows * h), "black")
    for i, im in enumerate(ims):
        sheet.paste(im, ((i % cols) * thumb, (i // cols) * h))
    sheet.save(out, optimize=True)


def summarise(name: str, rows: list[CaseResult]) -> str:
    rows = [r for r in rows if not r.error]
    if not rows:
        return f"{name}: no cases"
    n_truth = sum(r.n_truth for r in rows)
    found = sum(r.found for r in rows)
    span = sum(r.n_pred_span for r in rows)
    matched = sum(r.matched_in_span for r in rows)
    dice = [d for r in rows for d in r.dice]
    lk = sum(r.level_known for r in rows)
    lo = sum(r.level_ok for r in rows)
    lw = sum(r.level_wrong for r in rows)
    cpu = [r.cpu_s for r in rows]
    vr = [x for r in rows for x in r.volume_ratio]
    off = [x for r in rows for x in r.off_slice_share]
    din = [x for r in rows for x in r.dice_in_span]
    line = (
        f"{name:10s} cases {len(rows):3d}  recall {found / n_truth:.3f}  precision {matched / max(span, 1):.3f}  "
        f"Dice {np.mean(dice) if dice else float('nan'):.3f}  level acc {lo / max(lk, 1):.3f} ({lo}/{lk}, "
        f"{lw} wrong)  CPU s/series median {np.median(cpu):.2f} max {np.max(cpu):.2f}"
    )
    if vr:
        line += (
            f"\n{'':10s} found bodies: volume predicted/true median {np.median(vr):.2f}; predicted voxels on sagittal "
            f"slices without the true body {100 * np.mean(off):.1f} %; Dice within the true body's slices "
            f"{np.mean(din):.3f}"
        )
        lat = np.sum([r.lateral for r in rows], axis=0)
        n_t = max(int(lat[:, 0].sum()), 1)
        bands = "; ".join(
            f"{lo:.1f}-{hi:.1f}: Dice {2 * tp / max(t + p, 1):.2f} extra {100 * (p - tp) / n_t:.1f} % "
            f"missed {100 * (t - tp) / n_t:.1f} %"
            for (lo, hi), (t, p, tp) in zip(LATERAL_BANDS, lat, strict=True)
        )
        wr = [x for r in rows for x in r.width_ratio]
        line += (
            f"\n{'':10s} left-right extent predicted/true median {np.median(wr):.2f} "
            f"(10-90 % {np.percentile(wr, 10):.2f}-{np.percentile(wr, 90):.2f}); by lateral position |u| "
            f"(of the true half-width), extra and missed "
            f"voxels as % of the true volume: {bands.replace('-inf', '+')}"
        )
    return line


def run_realdata(
    root: Path, set_name: str, cases: list[str] | None, cfg: SegmentationConfig, out: Path, thick: bool
) -> tuple[list[CaseResult], list[Path]]:
    folder = root / set_name
    contrast = Role.T2 if set_name == "vb2" else Role.STIR
    results, pngs = [], []
    label = f"{set_name}_4mm" if thick else set_name
    for case_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        if cases and case_dir.name not in cases:
            continue
        img, lab, levels = load_case(case_dir)
        if thick:
            img, lab = thick_slices(img, lab)
        t0 = time.process_time()
        try:
            res = segment_vertebrae(img, cfg=cfg, series_uid=f"{label}/{case_dir.name}", contrast=contrast)
        except Exception as exc:  # a benchmark records failures and carries on
            cr = CaseResult(label, case_dir.name, int(len(np.unique(lab)) - 1), 0, 0, 0, error=repr(exc))
            print(f"{label:8s} {case_dir.name}: FAILED {exc!r}", flush=True)
            results.append(cr)
            continue
        cpu = time.process_time() - t0
        cr = evaluate(label, case_dir.name, lab, levels, res, cpu, img)
        results.append(cr)
        png = out / f"{label}_{case_dir.name}.png"
        overlay(png, img, lab, res, f"{label} {case_dir.name} Dice {np.mean(cr.dice) if cr.dice else 0:.2f}")
        pngs.append(png)
        lv = " ".join(v.level.value if v.level else "?" for v in res.vertebrae)
        print(
            f"{label:8s} {case_dir.name}: recall {cr.found}/{cr.n_truth} precision {cr.matched_in_span}/"
            f"{cr.n_pred_span} Dice {np.mean(cr.dice) if cr.dice else float('nan'):.3f} levels "
            f"{cr.level_ok}/{cr.level_known} [{lv}] cpu {cpu:.2f}s",
            flush=True,
        )
    return results, pngs


def run_phantoms(cfg: SegmentationConfig, out: Path, n: int) -> tuple[list[CaseResult], list[Path]]:
    if importlib.util.find_spec("pipeline.phantom") is None:
        print("phantom    pipeline.phantom is not available in this checkout: phantom set skipped")
        return [], []
    from pipeline import phantom as ph  # type: ignore[attr-defined]
    from pipeline.model import Morphology

    results, pngs = [], []
    kinds = [Morphology.WEDGE, Morphology.BICONCAVE, Morphology.CRUSH]
    for seed in range(n):
        fractures = ()
        if seed % 2 == 0:
            lv = [Level.T12, Level.L1, Level.L2, Level.L3][seed // 2 % 4]
            fractures = (
                ph.FractureSpec(level=lv, kind=kinds[seed % 3], height_loss_pct=25 + 10 * (seed % 5), edema=True),
            )
        spec = ph.PhantomSpec(seed=seed, fractures=fractures)
        p = ph.render_phantom(spec)
        for role, vol in ((Role.T2, p.t2), (Role.T1, p.t1)):
            name = f"seed{seed}_{role.value}" + ("_fx" if fractures else "")
            t0 = time.process_time()
            try:
                res = segment_vertebrae(vol, cfg=cfg, series_uid=name, contrast=role)
            except Exception as exc:
                print(f"phantom  {name}: FAILED {exc!r}", flush=True)
                results.append(CaseResult("phantom", name, len(p.levels), 0, 0, 0, error=repr(exc)))
                continue
            cpu = time.process_time() - t0
            cr = evaluate("phantom", name, np.asarray(p.labels.array), dict(p.levels), res, cpu, vol)
            results.append(cr)
            png = out / f"phantom_{name}.png"
            overlay(png, vol, np.asarray(p.labels.array), res, f"phantom {name}")
            pngs.append(png)
            print(
                f"phantom  {name}: recall {cr.found}/{cr.n_truth} Dice "
                f"{np.mean(cr.dice) if cr.dice else float('nan'):.3f} levels {cr.level_ok}/{cr.level_known} "
                f"cpu {cpu:.2f}s",
                flush=True,
            )
    return results, pngs


def runtime_series(root: Path, cfg: SegmentationConfig) -> None:
    """CPU time for a 15-slice 512 x 512 series (a vb2 case resampled: 4 mm slices, 381/512 mm pixels)."""
    folder = (
        next((p for p in sorted((root / "vb2").iterdir()) if p.is_dir()), None) if (root / "vb2").is_dir() else None
    )
    if folder is None:
        print("runtime    no vb2 case to build the 15 x 512 x 512 series from; skipped")
        return
    img, _, _ = load_case(folder)
    thick, _ = thick_slices(img, np.zeros(img.shape, np.uint16))
    c = thick.shape[0] // 2
    sub = thick.array[c - 7 : c + 8]
    origin = np.asarray(thick.origin_lps) + (c - 7) * thick.spacing_mm[0] * thick.axes_lps[0]
    small = Volume(sub, thick.spacing_mm, tuple(origin), thick.axes_lps)
    ref = sitk.Image(512, 512, 15, sitk.sitkFloat32)
    fov = np.asarray(small.spacing_mm[1:]) * (np.asarray(small.shape[1:]) - 1)
    ref.SetSpacing((fov[1] / 511, fov[0] / 511, small.spacing_mm[0]))
    ref.SetOrigin(small.origin_lps)
    ref.SetDirection(tuple(float(v) for v in small.axes_lps[::-1].T.ravel()))
    big = Volume.from_sitk(
        sitk.Resample(sitk.Cast(small.to_sitk(), sitk.sitkFloat32), ref, sitk.Transform(), sitk.sitkLinear, 0.0)
    )
    times = []
    for _ in range(3):
        t0 = time.process_time()
        res = segment_vertebrae(big, cfg=cfg, series_uid="runtime", contrast=Role.T2)
        times.append(time.process_time() - t0)
    print(
        f"runtime    15 x 512 x 512 series ({folder.name}): CPU s min {min(times):.2f} median "
        f"{np.median(times):.2f} over 3 runs, {len(res.vertebrae)} bodies"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/segbench"))
    ap.add_argument("--realdata", type=Path, default=DEFAULT_REALDATA)
    ap.add_argument("--sets", default="vb2,vb3,vb2_4mm,vb3_4mm,phantom,runtime")
    ap.add_argument("--cases", default="", help="comma-separated case folder names (default all)")
    ap.add_argument("--phantoms", type=int, default=8, help="number of phantom seeds")
    ap.add_argument("--config", type=Path, default=None, help="segmentation.yaml (default configs/)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    cfg = load_segmentation_config(args.config)
    args.out.mkdir(parents=True, exist_ok=True)
    sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    cases = [c.strip() for c in args.cases.split(",") if c.strip()] or None
    have_real = args.realdata.is_dir() and any((args.realdata / s).is_dir() for s in ("vb2", "vb3"))
    if not have_real:
        print(f"notice: real data not found at {args.realdata}; real-data sets skipped")
    summaries, real_pngs, all_pngs = [], [], []
    for s in sets:
        if s in ("vb2", "vb3", "vb2_4mm", "vb3_4mm"):
            base = s.split("_")[0]
            if not have_real or not (args.realdata / base).is_dir():
                continue
            rows, pngs = run_realdata(args.realdata, base, cases, cfg, args.out, thick=s.endswith("4mm"))
            summaries.append(summarise(s, rows))
            all_pngs += pngs
            if not s.endswith("4mm"):
                real_pngs += pngs
        elif s == "phantom":
            rows, pngs = run_phantoms(cfg, args.out, args.phantoms)
            if rows:
                summaries.append(summarise(s, rows))
            all_pngs += pngs
        elif s == "runtime" and have_real:
            runtime_series(args.realdata, cfg)
    print(
        "\nPrecision counts predicted bodies whose centroid lies inside the labelled span (top of the most cranial "
        "to bottom of the most caudal truth body); bodies outside (T10 and above, S1) are not false positives."
    )
    for line in summaries:
        print(line)
    contact_sheet(real_pngs, args.out / "contact_sheet.png")
    contact_sheet(all_pngs, args.out / "contact_sheet_all.png", cols=8, thumb=140)
    print(f"overlays and contact sheets in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
