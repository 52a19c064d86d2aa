"""Accuracy and repeatability of height-loss morphometry (issue 5). Prints figures; asserts nothing.

Sections (each runs when what it needs is available, otherwise it prints why it was skipped):

1. Phantoms (``pipeline.tools.phantom``): a spread of wedge / biconcave / crush fractures (0-80 % loss, several
   levels and seeds) measured on the phantom's truth labels (isolates morphometry error) and, when
   ``pipeline.segment`` is present, on the pipeline's own segmentation. Height-loss MAE (points), Genant exact
   agreement, fractured-vs-not agreement, morphology agreement, canal compromise error.
2. Real scans (``../shared/realdata``, healthy volunteers): Ha/Hp, Hm/Hp distribution and Genant grades on the
   manual masks; with ``pipeline.segment``: ratio MAE of the pipeline's segmentation vs the manual masks.
3. Repeatability: the same study resampled (shifted by half a pixel in-plane and rotated 3 degrees about the
   left-right axis, image linear, labels label-linear): change of height loss % per body.

Usage (from the repository root)::

    python benchmarks/morphometry.py [--realdata DIR] [--seeds 6] [--max-cases 0]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipeline.levels import Level  # noqa: E402
from pipeline.model import Morphology, SegmentationResult, VertebraMorphometry, VertebraSeg  # noqa: E402
from pipeline.morphometry import MorphometryConfig, load_morphometry_config, measure_vertebrae  # noqa: E402
from pipeline.volume import Volume  # noqa: E402


# --------------------------------------------------------------------------- helpers
def find_realdata(arg: str | None) -> Path | None:
    candidates = [Path(arg)] if arg else []
    if os.environ.get("SPINE_ASSESS_REALDATA"):
        candidates.append(Path(os.environ["SPINE_ASSESS_REALDATA"]))
    candidates += [REPO.parent / "shared" / "realdata", REPO.parent.parent / "shared" / "realdata"]
    return next((c for c in candidates if (c / "vb2").is_dir() or (c / "vb3").is_dir()), None)


def seg_from_labels(labels: Volume, levels: dict[int, Level | None], method: str = "manual") -> SegmentationResult:
    """A SegmentationResult for a given label map (mid slice = centroid slice, quality 1)."""
    arr = np.asarray(labels.array)
    objects = ndimage.find_objects(arr.astype(np.int64))
    verts = []
    for lab in sorted(int(x) for x in np.unique(arr) if x):
        m = arr == lab
        com = ndimage.center_of_mass(m)
        sl = objects[lab - 1]
        level = levels.get(lab)
        verts.append(
            VertebraSeg(
                label=lab,
                level=level,
                level_confidence=1.0,
                centroid_lps_mm=tuple(float(x) for x in labels.index_to_lps(com)),  # type: ignore[arg-type]
                mid_slice=int(round(com[0])),
                bbox=(sl[0].start, sl[1].start, sl[2].start, sl[0].stop, sl[1].stop, sl[2].stop),
                quality=1.0,
                volume_mm3=float(m.sum() * labels.voxel_volume_mm3),
                is_sacrum=level is Level.S1,
            )
        )
    return SegmentationResult(labels, tuple(verts), "benchmark", any(v.is_sacrum for v in verts), method)


def load_real_case(case: Path) -> tuple[Volume, Volume, dict[int, Level | None]]:
    img = Volume.from_sitk(sitk.ReadImage(str(case / "image.nii.gz")))
    lab = Volume.from_sitk(sitk.ReadImage(str(case / "labels.nii.gz")))
    if not lab.same_grid(img):  # a few label maps carry one extra slice; same origin and spacing
        lab = lab.resample_like(img, linear=False)
    lab = lab.with_array(np.asarray(lab.array).astype(np.uint16))
    levels = {int(k): Level.parse(v) for k, v in json.loads((case / "levels.json").read_text()).items()}
    return img, lab, levels


def resample_shift_rotate(img: Volume, lab: Volume, angle_deg: float, shift_px: float) -> tuple[Volume, Volume]:
    """Image and labels resampled after rotating ``angle_deg`` about the slice normal through the volume centre
    and shifting ``shift_px`` in-plane pixels along rows and columns (SimpleITK, same output grid)."""
    centre = img.index_to_lps((np.asarray(img.shape) - 1) / 2.0)
    tx = sitk.Euler3DTransform()
    tx.SetCenter(tuple(float(c) for c in centre))
    axis = img.axes_lps[0]
    rot = sitk.VersorTransform(tuple(float(a) for a in axis), math.radians(angle_deg))
    tx.SetMatrix(rot.GetMatrix())
    shift = img.vector_to_lps((0.0, shift_px, shift_px))
    tx.SetTranslation(tuple(float(s) for s in shift))
    ref = img.to_sitk()
    out_img = sitk.Resample(sitk.Cast(img.to_sitk(), sitk.sitkFloat32), ref, tx, sitk.sitkLinear, 0.0)
    out_lab = sitk.Resample(lab.to_sitk(), ref, tx, sitk.sitkLabelLinear, 0)
    return Volume.from_sitk(out_img), Volume.from_sitk(out_lab).with_array(
        sitk.GetArrayFromImage(out_lab).astype(np.uint16)
    )


def pct(x: Iterable[float], q: float) -> float:
    a = np.asarray(list(x), dtype=float)
    return float(np.percentile(a, q)) if a.size else float("nan")


def fmt(x: float, nd: int = 2) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.{nd}f}"


def match_labels(a: np.ndarray, b: np.ndarray) -> dict[int, int]:
    """label in ``a`` -> label in ``b`` with the largest overlap (Dice >= 0.5)."""
    out = {}
    for la in (int(x) for x in np.unique(a) if x):
        ma = a == la
        vals, counts = np.unique(b[ma], return_counts=True)
        best, best_dice = None, 0.0
        for lb, c in zip(vals, counts, strict=True):
            if lb == 0:
                continue
            dice = 2 * c / (ma.sum() + (b == lb).sum())
            if dice > best_dice:
                best, best_dice = int(lb), dice
        if best is not None and best_dice >= 0.5:
            out[la] = best
    return out


def segmenter():
    """``f(image, role) -> SegmentationResult`` with the pipeline's own segmentation, or None when absent."""
    if importlib.util.find_spec("pipeline.segment") is None:
        return None
    from pipeline.model import Role
    from pipeline.segment import load_segmentation_config, segment_vertebrae  # type: ignore[attr-defined]

    seg_cfg = load_segmentation_config()

    def run(img: Volume, role: Role = Role.T2) -> SegmentationResult:
        return segment_vertebrae(img, cfg=seg_cfg, series_uid="benchmark", contrast=role)

    return run


# --------------------------------------------------------------------------- 1. phantoms
CACHE: Path | None = None  # set by --cache: rendered phantoms are pickled there and reused


def render_cached(seed: int, fractures: tuple):
    """``render_phantom`` for (seed, fractures), through the optional pickle cache."""
    import pickle

    from pipeline.tools.phantom import PhantomSpec, render_phantom  # type: ignore[attr-defined]

    path = CACHE / f"{seed}.pkl" if CACHE is not None else None
    if path is not None and path.exists():
        ph = pickle.loads(path.read_bytes())
        if tuple(ph.spec.fractures) == tuple(fractures):
            return ph
    ph = render_phantom(PhantomSpec(seed=seed, fractures=fractures))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pickle.dumps(ph))
    return ph


@dataclass(frozen=True)
class PhantomRow:
    seed: int
    level: Level
    true_loss: float
    true_kind: Morphology
    true_retro_mm: float
    true_canal_mm: float
    m: VertebraMorphometry | None


def phantom_cases(n_seeds: int) -> list[tuple[int, tuple]]:
    """(seed, fractures) pairs: loss 0-80 % spread over kinds and levels, one to three fractures per study."""
    from pipeline.tools.phantom import FractureSpec  # type: ignore[attr-defined]

    rng = np.random.default_rng(2024)
    levels = [Level.T11, Level.T12, Level.L1, Level.L2, Level.L3, Level.L4, Level.L5]
    kinds = [Morphology.WEDGE, Morphology.BICONCAVE, Morphology.CRUSH]
    cases = []
    for i in range(n_seeds):
        n_frac = 1 + i % 3
        lv = rng.choice(len(levels), size=n_frac, replace=False)
        fr = []
        for j, k in enumerate(sorted(lv)):
            kind = kinds[(i + j) % 3]
            loss = float(np.round(rng.uniform(12.0, 80.0), 1))
            retro = float(np.round(rng.uniform(0.0, 6.0), 1)) if rng.random() < 0.4 else 0.0
            fr.append(FractureSpec(level=levels[k], kind=kind, height_loss_pct=loss, retropulsion_mm=retro))
        cases.append((1000 + i, tuple(fr)))
    return cases


def run_phantoms(cfg: MorphometryConfig, n_seeds: int, with_segmentation: bool) -> None:
    print("\n== 1. Phantoms ==")
    if importlib.util.find_spec("pipeline.tools.phantom") is None:
        print("skipped: pipeline.tools.phantom is not available on this branch yet")
        return
    rows: dict[str, list[PhantomRow]] = {"truth labels": [], "pipeline segmentation": []}
    seg_fn = segmenter() if with_segmentation else None
    t_total = 0.0
    for seed, fractures in phantom_cases(n_seeds):
        ph = render_cached(seed, fractures)
        truth = _phantom_truth(ph)
        levels = dict(ph.levels) if isinstance(ph.levels, dict) else {i + 1: lv for i, lv in enumerate(ph.levels)}
        t0 = time.perf_counter()
        res = measure_vertebrae(ph.t2, seg_from_labels(ph.labels, levels, "truth"), cfg=cfg, canal_image=ph.t2)
        t_total += time.perf_counter() - t0
        for m in res:
            if m.level in truth:
                rows["truth labels"].append(PhantomRow(seed, m.level, *truth[m.level], m))
        if seg_fn is not None:
            seg = seg_fn(ph.t2)
            res = measure_vertebrae(ph.t2, seg, cfg=cfg, canal_image=ph.t2)
            # Bodies are matched by overlap with the truth labels (a level-naming error is not a height error).
            mapping = match_labels(np.asarray(ph.labels.array), np.asarray(seg.labels.array))
            by_label = {m.label: m for m in res}
            for lab, lv in levels.items():
                if lv in truth:
                    m = by_label.get(mapping.get(lab, -1))
                    rows["pipeline segmentation"].append(PhantomRow(seed, lv, *truth[lv], m))
    print(f"{n_seeds} phantom studies, morphometry {t_total / max(1, n_seeds):.2f} s per study (truth labels)")
    for name, rr in rows.items():
        if rr:
            _phantom_report(name, rr, cfg)
    if seg_fn is None:
        print("pipeline segmentation: skipped (pipeline.segment not available)")


def _phantom_truth(ph) -> dict[Level, tuple[float, Morphology, float, float]]:
    """level -> (true height loss %, kind, retropulsion mm, expected canal mm) for every non-sacral labelled body."""
    out: dict[Level, tuple[float, Morphology, float, float]] = {}
    for v in ph.truth["vertebrae"]:
        if v["is_sacrum"]:
            continue
        out[Level(v["level"])] = (
            float(v["height_loss_pct"]),
            Morphology(v["morphology"]),
            float(v["posterior_wall"]["bulge_mm"]),
            float(v["posterior_wall"]["expected_canal_mm"]),
        )
    return out


def _phantom_report(name: str, rows: list[PhantomRow], cfg: MorphometryConfig) -> None:
    def grade(loss: float) -> int:
        return (
            3
            if loss >= cfg.genant_severe_pct
            else 2
            if loss >= cfg.genant_moderate_pct
            else (1 if loss >= cfg.genant_mild_pct else 0)
        )

    found = [r for r in rows if r.m is not None and r.m.assessable]
    n_na = len(rows) - len(found)
    err = np.array([r.m.height_loss_pct - r.true_loss for r in found])  # type: ignore[union-attr,operator]
    in_range = [r for r in found if r.true_loss <= 80.0]
    mae = float(np.mean([abs(r.m.height_loss_pct - r.true_loss) for r in in_range]))  # type: ignore[union-attr]
    g_ok = np.mean([r.m.genant_grade == grade(r.true_loss) for r in found])  # type: ignore[union-attr]
    fx_ok = np.mean([(r.m.genant_grade >= 1) == (grade(r.true_loss) >= 1) for r in found])  # type: ignore
    graded = [r for r in found if grade(r.true_loss) >= 1 or r.true_kind is Morphology.NORMAL]
    mo_ok = np.mean([r.m.morphology is r.true_kind for r in graded])  # type: ignore[union-attr]
    print(
        f"\n-- {name}: {len(rows)} bodies ({sum(r.true_kind is not Morphology.NORMAL for r in rows)} fractured), "
        f"{n_na} not assessable/not found"
    )
    print(
        f"height-loss MAE (truth 0-80 %): {mae:.2f} points; bias {np.mean(err):+.2f}; "
        f"95th pct |error| {pct(np.abs(err), 95):.2f}; max {np.max(np.abs(err)):.2f}"
    )
    print(
        f"Genant exact agreement: {100 * g_ok:.1f} %   fractured-vs-not: {100 * fx_ok:.1f} %   "
        f"morphology agreement (normal + graded fractures, n={len(graded)}): {100 * mo_ok:.1f} %"
    )
    for kind in (Morphology.NORMAL, Morphology.WEDGE, Morphology.BICONCAVE, Morphology.CRUSH):
        k = [r for r in found if r.true_kind is kind]
        if not k:
            continue
        e = [abs(r.m.height_loss_pct - r.true_loss) for r in k]  # type: ignore[union-attr,operator]
        judged = [r for r in k if grade(r.true_loss) >= 1 or kind is Morphology.NORMAL]
        shape = np.mean([r.m.morphology is kind for r in judged]) if judged else float("nan")  # type: ignore
        print(
            f"  {kind.value:9s} n={len(k):3d} MAE {np.mean(e):5.2f}  max {np.max(e):5.2f}  "
            f"shape agreement {100 * shape:5.1f} % (of {len(judged)} graded)"
        )
    retro = [r for r in found if r.true_retro_mm > 0 and r.m.posterior_wall.bulge_mm is not None]  # type: ignore
    if retro:
        e = [r.m.posterior_wall.bulge_mm - r.true_retro_mm for r in retro]  # type: ignore[union-attr,operator]
        print(
            f"posterior-wall bulge vs retropulsion truth (n={len(retro)}): MAE {np.mean(np.abs(e)):.2f} mm, "
            f"bias {np.mean(e):+.2f} mm"
        )
    flat = [
        r.m.posterior_wall.bulge_mm
        for r in found
        if r.true_retro_mm == 0  # type: ignore[union-attr]
        and r.m.posterior_wall.bulge_mm is not None
    ]  # type: ignore[union-attr]
    if flat:
        print(
            f"bulge on bodies without retropulsion (n={len(flat)}): median {np.median(flat):.2f} mm, "
            f"95th pct {pct(flat, 95):.2f} mm, max {max(flat):.2f} mm"
        )
    canal = [r for r in found if r.m.posterior_wall.assessable]  # type: ignore[union-attr]
    print(f"canal compromise assessable for {len(canal)}/{len(found)} bodies")
    if canal:
        e = [r.m.posterior_wall.expected_canal_mm - r.true_canal_mm for r in canal]  # type: ignore
        c = [
            abs(r.m.posterior_wall.canal_compromise_pct - 100 * r.true_retro_mm / r.true_canal_mm)  # type: ignore
            for r in canal
        ]
        print(
            f"expected canal diameter vs truth: MAE {np.mean(np.abs(e)):.2f} mm, bias {np.mean(e):+.2f} mm; "
            f"canal compromise MAE {np.mean(c):.2f} points (max {max(c):.2f})"
        )
    worst = sorted(found, key=lambda r: -abs(r.m.height_loss_pct - r.true_loss))[:5]  # type: ignore
    for r in worst:
        m = r.m
        assert m is not None
        print(
            f"  worst: seed {r.seed} {r.level.value} truth {r.true_kind.value} {r.true_loss:.1f} % -> "
            f"{m.morphology.value} {m.height_loss_pct:.1f} % (ref {m.reference_height_mm} mm, {m.reference_method})"
        )


# --------------------------------------------------------------------------- 2. real scans
def real_cases(root: Path, max_cases: int) -> list[Path]:
    cases = sorted(p for sub in ("vb2", "vb3") for p in (root / sub).glob("case_*") if (p / "labels.nii.gz").exists())
    return cases[:max_cases] if max_cases else cases


def run_real(cfg: MorphometryConfig, root: Path | None, max_cases: int, with_segmentation: bool) -> None:
    print("\n== 2. Real scans (healthy volunteers) ==")
    if root is None:
        print("skipped: ../shared/realdata not found (use --realdata DIR or SPINE_ASSESS_REALDATA)")
        return
    seg_fn = segmenter() if with_segmentation else None
    manual: list[VertebraMorphometry] = []
    pairs: list[tuple[VertebraMorphometry, VertebraMorphometry]] = []
    n_seg_missing = 0
    t_total = 0.0
    cases = real_cases(root, max_cases)
    for case in cases:
        img, lab, levels = load_real_case(case)
        t0 = time.perf_counter()
        res = measure_vertebrae(img, seg_from_labels(lab, levels), cfg=cfg, canal_image=img)
        t_total += time.perf_counter() - t0
        manual += res
        if seg_fn is not None:
            from pipeline.model import Role

            # vb3 is a Dixon water image: fluid bright, fat dark, as on STIR
            seg = seg_fn(img, Role.STIR if case.parent.name == "vb3" else Role.T2)
            auto = measure_vertebrae(img, seg, cfg=cfg, canal_image=img)
            mapping = match_labels(np.asarray(lab.array), np.asarray(seg.labels.array))
            by_label = {m.label: m for m in auto}
            for m in res:
                a = by_label.get(mapping.get(m.label, -1))
                if a is None:
                    n_seg_missing += 1
                else:
                    pairs.append((m, a))
    ok = [m for m in manual if m.assessable]
    print(
        f"{len(cases)} cases, {len(manual)} labelled bodies, {len(ok)} assessable on the manual masks; "
        f"morphometry {t_total / max(1, len(cases)):.2f} s per case"
    )
    for m in manual:
        if not m.assessable:
            print(f"  not assessable: {m.level.value if m.level else m.label}: {m.reason}")
    for key in ("ha_hp", "hm_hp", "hp_ref"):
        v = [m.ratios[key] for m in ok]
        print(f"  {key}: median {np.median(v):.3f}  5-95 % {pct(v, 5):.3f}-{pct(v, 95):.3f}  min {min(v):.3f}")
    loss = [m.height_loss_pct for m in ok]
    grades = np.bincount([m.genant_grade for m in ok], minlength=4)  # type: ignore[misc]
    print(f"  height loss %: median {np.median(loss):.1f}  95th pct {pct(loss, 95):.1f}  max {max(loss):.1f}")  # type: ignore
    print(
        f"  Genant grades on healthy bodies: 0: {grades[0]}  1: {grades[1]}  2: {grades[2]}  3: {grades[3]} "
        f"(target: none >= 2)"
    )
    shapes = {k.value: sum(m.morphology is k for m in ok) for k in Morphology if k is not Morphology.NOT_ASSESSABLE}
    print(f"  morphology: {shapes}")
    for m in ok:
        if m.genant_grade and m.genant_grade >= 1:
            print(
                f"  graded healthy body: {m.level.value if m.level else m.label} loss {m.height_loss_pct} % "
                f"{m.morphology.value} ratios {m.ratios} ({m.reference_method})"
            )
    if seg_fn is None:
        print("pipeline segmentation vs manual masks: skipped (pipeline.segment not available)")
        return
    both = [(a, b) for a, b in pairs if a.assessable and b.assessable]
    print(
        f"pipeline segmentation: {len(pairs)} bodies matched (Dice >= 0.5), {n_seg_missing} not found, "
        f"{len(both)} assessable on both"
    )
    for key in ("ha_hp", "hm_hp"):
        d = [abs(a.ratios[key] - b.ratios[key]) for a, b in both]
        print(f"  {key} MAE {np.mean(d):.3f}  95th pct {pct(d, 95):.3f}  max {max(d):.3f}  (target MAE <= 0.04)")
    g2 = sum(1 for _, b in both if (b.genant_grade or 0) >= 2)
    print(f"  bodies graded >= 2 on the pipeline's segmentation: {g2}")


# --------------------------------------------------------------------------- 3. repeatability
def run_repeatability(cfg: MorphometryConfig, root: Path | None, max_cases: int, n_seeds: int) -> None:
    print("\n== 3. Repeatability (half-pixel shift + 3 deg in-plane rotation) ==")
    studies: list[tuple[str, Volume, Volume, dict[int, Level | None]]] = []
    if root is not None:
        for case in real_cases(root, max_cases):
            img, lab, levels = load_real_case(case)
            studies.append((f"real {case.parent.name}/{case.name}", img, lab, levels))
    if importlib.util.find_spec("pipeline.tools.phantom") is not None:
        for seed, fractures in phantom_cases(n_seeds):
            ph = render_cached(seed, fractures)
            levels = dict(ph.levels) if isinstance(ph.levels, dict) else {i + 1: lv for i, lv in enumerate(ph.levels)}
            studies.append((f"phantom {seed}", ph.t2, ph.labels, levels))
    if not studies:
        print("skipped: no real data and no phantom generator")
        return
    for kind in ("real", "phantom"):
        deltas: list[float] = []
        deltas_graded: list[float] = []
        n_flip = 0
        for _name, img, lab, levels in (s for s in studies if s[0].startswith(kind)):
            a = measure_vertebrae(img, seg_from_labels(lab, levels), cfg=cfg)
            img2, lab2 = resample_shift_rotate(img, lab, 3.0, 0.5)
            b = measure_vertebrae(img2, seg_from_labels(lab2, levels), cfg=cfg)
            by_level = {m.level: m for m in b}
            for m in a:
                m2 = by_level.get(m.level)
                if m.assessable and m2 is not None and m2.assessable:
                    d = abs(m.height_loss_pct - m2.height_loss_pct)  # type: ignore[operator]
                    deltas.append(d)
                    if (m.genant_grade or 0) >= 1:
                        deltas_graded.append(d)
                    n_flip += m.genant_grade != m2.genant_grade
        if deltas:
            print(
                f"{kind}: {len(deltas)} bodies: |change of height loss| mean {np.mean(deltas):.2f}, "
                f"95th pct {pct(deltas, 95):.2f}, max {max(deltas):.2f} points; "
                f"share <= 2 points {100 * np.mean(np.asarray(deltas) <= 2):.1f} %; grade changes {n_flip}"
                + (
                    f"; graded bodies only: mean {np.mean(deltas_graded):.2f}, max {max(deltas_graded):.2f}"
                    if deltas_graded
                    else ""
                )
            )


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--realdata", help="folder with vb2/ and vb3/ (default: ../shared/realdata)")
    ap.add_argument("--config", type=Path, help="morphometry YAML (default: configs/morphometry.yaml)")
    ap.add_argument("--seeds", type=int, default=24, help="phantom studies to generate (default 24)")
    ap.add_argument("--max-cases", type=int, default=0, help="limit the real cases (0 = all)")
    ap.add_argument("--no-segmentation", action="store_true", help="skip the pipeline-segmentation comparisons")
    ap.add_argument("--only", choices=("phantom", "real", "repeat"), help="run one section")
    ap.add_argument("--cache", type=Path, help="keep rendered phantoms (pickles) in this folder and reuse them")
    args = ap.parse_args(argv)
    global CACHE
    CACHE = args.cache
    cfg = load_morphometry_config(args.config)
    root = find_realdata(args.realdata)
    if root is None:
        print("notice: real data not found (../shared/realdata); the real-scan sections are skipped")
    if args.only in (None, "phantom"):
        run_phantoms(cfg, args.seeds, not args.no_segmentation)
    if args.only in (None, "real"):
        run_real(cfg, root, args.max_cases, not args.no_segmentation)
    if args.only in (None, "repeat"):
        run_repeatability(cfg, root, args.max_cases, min(args.seeds, 8))
    return 0


if __name__ == "__main__":
    sys.exit(main())
