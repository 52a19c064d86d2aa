"""Benchmark of the STIR oedema stage (issue 6). Prints figures; asserts nothing.

    python benchmarks/stir.py                 # phantoms (+ bias field, + registration) and real vb3
    python benchmarks/stir.py --studies 12    # quicker
    python benchmarks/stir.py --no-realdata

Sections
--------
1. Phantoms: a spread of studies (seeds, levels, oedema fractions 0.2-1.0, band / diffuse, with / without
   fracture, noise levels; 0, 1, 2 or 4 oedematous bodies). Per-body sensitivity for true oedema
   fraction >= 0.20 and specificity on bodies without oedema, fraction error, pattern agreement.
   Bodies with 0 < true fraction < 0.20 are outside the target and reported separately.
2. Bias robustness: the same studies with a smooth multiplicative field of +/-30 % across the field of view
   applied to the STIR; decisions that change are counted.
3. Registration: every third study's STIR given a different frame of reference and a known rigid motion
   (2-5 mm, 2-5 degrees in-plane); error of the recovered transform at the body centroids and the reported
   residual.
4. Real data (../shared/realdata/vb3, healthy volunteers, Dixon water as a flagged substitute): specificity
   with the manual masks and, when ``pipeline.segment`` is available, with the pipeline's own segmentation.
5. A picture: STIR mid-sagittal with the oedema map of a phantom with 4 oedematous bodies (``--out``).

Phantoms come from ``pipeline.tools.phantom`` when it is installed in this checkout, else from the simple synthetic
spines of ``tests/stir_synth.py`` (the header line says which).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipeline.levels import Level  # noqa: E402
from pipeline.model import EdemaPattern, LoadedSeries, SegmentationResult, StirAssessment, Substitute  # noqa: E402
from pipeline.stir import StirConfig, assess_stir, load_stir_config  # noqa: E402
from pipeline.stir.labelmap import segmentation_from_label_map  # noqa: E402
from pipeline.stir.sampling import erosion_radii_mm, sample_bodies  # noqa: E402
from pipeline.volume import Volume  # noqa: E402

# ../shared/realdata beside the repository (CI layout); a git worktree one level deeper also works
REALDATA = next(
    (p for p in (REPO.parent / "shared" / "realdata", REPO.parent.parent / "shared" / "realdata") if p.is_dir()),
    REPO.parent / "shared" / "realdata",
)
UID_A, UID_B = "1.2.826.0.1.3680043.2.1", "1.2.826.0.1.3680043.2.2"


def in_frame(volume: Volume, frame_of_reference_uid: str) -> LoadedSeries:
    return LoadedSeries(volume, frame_of_reference=frame_of_reference_uid)


TARGET_FRACTION = 0.20
LARGE_FRACTION = 0.50  # whole-body truth fraction above which a band covers most of the marrow


# --------------------------------------------------------------------------- studies
@dataclass
class Study:
    name: str
    anatomy: Volume
    stir: Volume
    t1: Volume | None
    segmentation: SegmentationResult
    truth_fraction: dict[int, float]  # label -> true oedema fraction (0 = none)
    truth_pattern: dict[int, str]
    deformity: dict[int, bool]
    n_edema: int
    truth_map: np.ndarray | None = None  # label of the body where a voxel is oedematous (phantom), else None


def _spread(i: int, rng: np.random.Generator, n_levels: int) -> dict:
    """Study i of the spread: number of oedematous bodies cycles 0, 1, 2, 4; the rest random."""
    n_edema = (0, 1, 2, 4)[i % 4]
    chosen = sorted(rng.choice(np.arange(n_levels), size=n_edema, replace=False).tolist())
    bodies = []
    for k in chosen:
        bodies.append(
            {
                "index": int(k),
                "fraction": float(rng.uniform(0.2, 1.0)),
                "pattern": str(rng.choice(["band", "diffuse"])),
                "fracture": bool(rng.random() < 0.7),
                "loss_pct": float(rng.uniform(20, 45)),
            }
        )
    return {"n_edema": n_edema, "bodies": bodies, "noise": float(rng.choice([0.6, 1.0, 1.6, 2.4]))}


def synth_studies(n: int, seed0: int) -> tuple[str, Callable[[int], Study]]:
    sys.path.insert(0, str(REPO / "tests"))
    from stir_synth import make_spine

    def make(i: int) -> Study:
        rng = np.random.default_rng(seed0 + i)
        n_bodies = 8
        sp = _spread(i, rng, n_bodies)
        edema = {b["index"] + 1: (b["fraction"], b["pattern"]) for b in sp["bodies"]}
        s = make_spine(edema, n_bodies=n_bodies, seed=seed0 + i, noise_sd=8.0 * sp["noise"], bias_pct=10.0)
        return Study(
            f"synth-{seed0 + i}",
            s.t2,
            s.stir,
            s.t1,
            s.segmentation,
            s.truth,
            s.patterns,
            {},
            sp["n_edema"],
        )

    return "synthetic spines (tests/stir_synth.py; pipeline.tools.phantom not available)", make


def phantom_studies(n: int, seed0: int) -> tuple[str, Callable[[int], Study]] | None:
    try:
        from pipeline.errors import ConfigError
        from pipeline.model import Morphology
        from pipeline.tools.phantom import FractureSpec, PhantomSpec, render_phantom
    except ImportError:
        return None
    levels = [Level.T10, Level.T11, Level.T12, Level.L1, Level.L2, Level.L3, Level.L4, Level.L5]
    kinds = [Morphology.WEDGE, Morphology.BICONCAVE, Morphology.CRUSH]

    def make(i: int) -> Study:
        rng = np.random.default_rng(seed0 + i)
        sp = _spread(i, rng, len(levels))
        fx = []
        used = set()
        for b in sp["bodies"]:
            lv = levels[b["index"]]
            used.add(lv)
            pattern = EdemaPattern(b["pattern"])
            frac = min(b["fraction"], 0.65)
            if b["fracture"]:
                fx.append((lv, kinds[int(rng.integers(len(kinds)))], b["loss_pct"], True, pattern, frac))
            else:
                fx.append((lv, Morphology.NORMAL, 0.0, True, pattern, frac))
        # a chronic fracture (deformed, no oedema) in every other study: a negative that must stay negative
        if i % 2 == 1:
            free = [lv for lv in levels if lv not in used]
            lv = free[int(rng.integers(len(free)))]
            fx.append(
                (lv, kinds[int(rng.integers(len(kinds)))], float(rng.uniform(20, 40)), False, EdemaPattern.BAND, 0.0)
            )
        noise = {0.6: 1.2, 1.0: 2.0, 1.6: 3.0, 2.4: 4.5}[sp["noise"]]
        while True:
            try:
                spec = PhantomSpec(
                    seed=seed0 + i,
                    noise_pct=noise,
                    fractures=tuple(
                        FractureSpec(level=lv, kind=k, height_loss_pct=loss, edema=e, edema_pattern=p, edema_fraction=f)
                        for lv, k, loss, e, p, f in fx
                    ),
                )
                ph = render_phantom(spec)
                break
            except ConfigError as exc:  # e.g. a fraction above the marrow share of a small body: ask for less
                if "exceeds the marrow share" not in str(exc):
                    raise
                fx = [(lv, k, loss, e, p, f * 0.85 if e else f) for lv, k, loss, e, p, f in fx]
        truth = {int(v["label"]): v for v in ph.truth["vertebrae"]}
        seg = segmentation_from_label_map(ph.labels, ph.levels, series_uid="phantom")
        return Study(
            f"phantom-{seed0 + i}",
            ph.t2,
            ph.stir,
            ph.t1,
            seg,
            {k: float(v["edema"]["fraction"]) if v["edema"]["present"] else 0.0 for k, v in truth.items()},
            {k: str(v["edema"]["pattern"]) for k, v in truth.items()},
            {k: float(v["height_loss_pct"]) >= 20.0 for k, v in truth.items()},
            sp["n_edema"],
            np.asarray(ph.edema.array),
        )

    return "pipeline.tools.phantom (T10-S1, 15 x 4 mm sagittal slices, truth fractions include the cortex)", make


# --------------------------------------------------------------------------- perturbations
def bias_field(v: Volume, amplitude: float, seed: int) -> np.ndarray:
    """Smooth multiplicative field ``1 + amplitude * g`` with ``g`` spanning exactly [-1, 1] over the field of
    view: a sum of random cosines of at most one cycle across the FoV along each array axis."""
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.linspace(0.0, 1.0, n) for n in v.shape], indexing="ij")
    g = np.zeros(v.shape)
    for _ in range(3):
        k = rng.uniform(-0.5, 0.5, size=3) * np.array([0.5, 1.0, 1.0])  # gentler across slices
        g += rng.uniform(0.5, 1.0) * np.cos(
            2 * np.pi * sum(k[a] * grids[a] for a in range(3)) + rng.uniform(0, 2 * np.pi)
        )
    g -= g.min()
    g = g / max(g.max(), 1e-9) * 2 - 1
    return 1.0 + amplitude * g


def moved(v: Volume, rot_deg: float, shift_lps: np.ndarray) -> tuple[Volume, np.ndarray]:
    """Same voxels, geometry rotated about the slice normal through the centre and shifted; returns the
    moved volume and the true 4x4 map anatomy LPS -> moved LPS."""
    a = np.deg2rad(rot_deg)
    nrm = v.axes_lps[0]
    k = np.array([[0, -nrm[2], nrm[1]], [nrm[2], 0, -nrm[0]], [-nrm[1], nrm[0], 0]])
    rot = np.eye(3) + np.sin(a) * k + (1 - np.cos(a)) * k @ k
    centre = v.index_to_lps((np.array(v.shape) - 1) / 2)
    origin = rot @ (np.asarray(v.origin_lps) - centre) + centre + shift_lps
    m = np.eye(4)
    m[:3, :3], m[:3, 3] = rot, centre + shift_lps - rot @ centre
    return Volume(v.array, v.spacing_mm, tuple(origin), v.axes_lps @ rot.T), m


# --------------------------------------------------------------------------- scoring
@dataclass
class Tally:
    tp: int = 0
    fn: int = 0
    tn: int = 0
    fp: int = 0
    under_target: int = 0
    under_target_called: int = 0
    not_assessable: int = 0
    frac_err: list[float] = dataclasses.field(default_factory=list)  # vs the whole-body truth definition
    frac_err_same: list[float] = dataclasses.field(default_factory=list)  # vs truth on the sampled voxels
    pattern_ok: int = 0
    pattern_n: int = 0
    pattern_large_ok: int = 0
    pattern_large_n: int = 0
    misses: list[str] = dataclasses.field(default_factory=list)

    def add(self, st: Study, a: StirAssessment, same_voxels: dict[int, float] | None = None) -> None:
        for f in a.findings:
            truth = st.truth_fraction.get(f.label, 0.0)
            if f.edema is None:
                self.not_assessable += 1
                continue
            if 0 < truth < TARGET_FRACTION:
                self.under_target += 1
                self.under_target_called += int(bool(f.edema))
                continue
            if truth >= TARGET_FRACTION:
                if f.edema:
                    self.tp += 1
                    self.frac_err.append(abs((f.edema_fraction or 0.0) - truth))
                    if same_voxels and f.label in same_voxels:
                        self.frac_err_same.append(abs((f.edema_fraction or 0.0) - same_voxels[f.label]))
                    ok = f.pattern.value == st.truth_pattern.get(f.label)
                    if truth >= LARGE_FRACTION:  # a "band" this large fills the body: not separable from diffuse
                        self.pattern_large_ok += int(ok)
                        self.pattern_large_n += 1
                    else:
                        self.pattern_ok += int(ok)
                        self.pattern_n += 1
                        if not ok:
                            thirds = ", ".join(f"{x:.2f}" for x in (f.thirds or ()))
                            self.misses.append(
                                f"{st.name} label {f.label}: pattern {f.pattern.value}, truth "
                                f"{st.truth_pattern.get(f.label)} (thirds {thirds}, fraction {f.edema_fraction:.2f})"
                            )
                else:
                    self.fn += 1
                    self.misses.append(
                        f"{st.name} label {f.label}: truth {truth:.2f}, measured "
                        f"{f.edema_fraction:.2f} ({st.truth_pattern.get(f.label)})"
                    )
            else:
                if f.edema:
                    self.fp += 1
                    self.misses.append(f"{st.name} label {f.label}: false positive, fraction {f.edema_fraction:.2f}")
                else:
                    self.tn += 1

    def lines(self) -> list[str]:
        sens = self.tp / max(1, self.tp + self.fn)
        spec = self.tn / max(1, self.tn + self.fp)
        out = [
            f"  sensitivity (true fraction >= {TARGET_FRACTION:.2f}): {sens:.3f} ({self.tp}/{self.tp + self.fn})",
            f"  specificity (no oedema): {spec:.3f} ({self.tn}/{self.tn + self.fp})",
        ]
        for what, errs in (
            ("truth (whole body incl. cortex)", self.frac_err),
            ("truth on the sampled (eroded) voxels", self.frac_err_same),
        ):
            if errs:
                e = np.asarray(errs)
                out.append(
                    f"  |fraction error| vs {what}: median {np.median(e):.3f}, 90th pct "
                    f"{np.percentile(e, 90):.3f}, max {e.max():.3f} (n={len(e)})"
                )
        if self.pattern_n or self.pattern_large_n:
            out.append(
                f"  pattern agrees with truth (band/diffuse): {self.pattern_ok}/{self.pattern_n} with true fraction "
                f"< {LARGE_FRACTION:.2f}; {self.pattern_large_ok}/{self.pattern_large_n} above (large bands fill "
                "the body and read as diffuse)"
            )
        out.append(
            f"  bodies with 0 < true fraction < {TARGET_FRACTION:.2f} (outside target): {self.under_target}, "
            f"called oedematous: {self.under_target_called}"
        )
        out.append(f"  not assessable: {self.not_assessable}")
        return out


def sampled_truth(st: Study, cfg: StirConfig) -> dict[int, float] | None:
    """True oedema fraction on exactly the voxels the stage samples (eroded, central width)."""
    if st.truth_map is None:
        return None
    zeros = np.zeros(st.anatomy.shape, dtype=np.float32)
    samples = sample_bodies(
        st.segmentation.labels,
        st.segmentation.vertebrae,
        zeros,
        np.ones(st.anatomy.shape, dtype=bool),
        erosion_radii=erosion_radii_mm(st.anatomy, st.stir, cfg.measurement.erosion_mm),
        cfg=cfg.measurement,
    )
    return {s.label: float(np.mean(st.truth_map[s.crop][s.eroded] == s.label)) for s in samples if s.eroded.any()}


def decisions(a: StirAssessment) -> dict[int, bool | None]:
    return {f.label: f.edema for f in a.findings}


def centroid_error(a: StirAssessment, seg: SegmentationResult, truth: np.ndarray) -> float:
    if a.registration_matrix_lps is None:
        return float("nan")
    pts = np.array([np.r_[v.centroid_lps_mm, 1.0] for v in seg.vertebrae])
    d = (pts @ np.asarray(a.registration_matrix_lps).T - pts @ truth.T)[:, :3]
    return float(np.mean(np.linalg.norm(d, axis=1)))


# --------------------------------------------------------------------------- sections
def run_phantoms(args: argparse.Namespace, cfg: StirConfig) -> Study | None:
    src = None if args.source == "synth" else phantom_studies(args.studies, args.seed)
    if src is None:
        src = synth_studies(args.studies, args.seed)
    header, make = src
    print(f"== 1-3. Phantoms: {args.studies} studies from {header}")
    plain, biased, reg = Tally(), Tally(), Tally()
    changed: list[str] = []
    reg_err, reg_res, reg_time = [], [], []
    times = []
    picture_study = None
    for i in range(args.studies):
        st = make(i)
        t0 = time.perf_counter()
        a = assess_stir(
            in_frame(st.anatomy, UID_A),
            st.segmentation,
            in_frame(st.stir, UID_A),
            cfg=cfg,
            t1=in_frame(st.t1, UID_A) if st.t1 is not None else None,
            deformity=st.deformity,
        )
        times.append(time.perf_counter() - t0)
        same = sampled_truth(st, cfg)
        plain.add(st, a, same)
        if st.n_edema == 4 and picture_study is None:
            picture_study = st
        field = bias_field(st.stir, 0.30, seed=1000 + i)
        b = assess_stir(
            in_frame(st.anatomy, UID_A),
            st.segmentation,
            in_frame(st.stir.with_array((st.stir.array * field).astype(np.float32)), UID_A),
            cfg=cfg,
            deformity=st.deformity,
        )
        biased.add(st, b, same)
        da, db = decisions(a), decisions(b)
        changed += [f"{st.name} label {k}: {da[k]} -> {db[k]}" for k in da if da[k] != db[k]]
        if i % 3 == 0 and not args.no_registration:
            rng = np.random.default_rng(5000 + i)
            rot = float(rng.uniform(2, 5) * rng.choice([-1, 1]))
            shift = rng.uniform(2, 5, size=3) * rng.choice([-1, 1], size=3)
            shift = shift - (shift @ st.stir.axes_lps[0]) * st.stir.axes_lps[0] * 0.5  # less through-plane
            mv, truth = moved(st.stir, rot, shift)
            t0 = time.perf_counter()
            r = assess_stir(
                in_frame(st.anatomy, UID_A), st.segmentation, in_frame(mv, UID_B), cfg=cfg, deformity=st.deformity
            )
            reg_time.append(time.perf_counter() - t0)
            if r.status != "measured":
                print(f"  registration {st.name}: {r.status}: {r.reason}")
                continue
            reg.add(st, r)
            reg_err.append(centroid_error(r, st.segmentation, truth))
            reg_res.append(r.registration_residual_mm or 0.0)
        print(
            f"  {st.name}: {st.n_edema} oedematous; "
            + " ".join(
                f"{f.label}:{'E' if f.edema else '-' if f.edema is False else '?'}"
                f"{(f.edema_fraction or 0):.2f}/{st.truth_fraction.get(f.label, 0):.2f}"
                for f in a.findings
            ),
            flush=True,
        )
    print("-- 1. detection (shipped config, same frame of reference, T1 given)")
    print("\n".join(plain.lines()))
    print(f"  time per study: median {np.median(times):.2f} s")
    print("-- 2. with a +/-30 % smooth bias field on the STIR")
    print("\n".join(biased.lines()))
    print(f"  decisions changed by the bias field: {len(changed)}")
    for c in changed:
        print(f"    {c}")
    if reg_err:
        e = np.asarray(reg_err)
        print(f"-- 3. registration (different frame of reference, known motion): {len(e)} studies")
        print(
            f"  error at body centroids: mean {e.mean():.2f} mm, max {e.max():.2f} mm; reported residual: "
            f"median {np.median(reg_res):.2f} mm, max {np.max(reg_res):.2f} mm; time median {np.median(reg_time):.1f} s"
        )
        print("\n".join(reg.lines()))
    for m in plain.misses + [f"(bias) {m}" for m in biased.misses]:
        print(f"  miss: {m}")
    return picture_study


def run_realdata(args: argparse.Namespace, cfg: StirConfig) -> None:
    root = Path(args.realdata) / "vb3"
    if not root.is_dir():
        print(f"== 4. Real data: {root} not found; skipped")
        return
    import SimpleITK as sitk

    try:  # the pipeline's own segmentation, when that stage is on this branch
        from pipeline.model import Role
        from pipeline.segment import load_segmentation_config, segment_vertebrae

        seg_cfg = load_segmentation_config()

        def own_segmentation(img: Volume) -> SegmentationResult:
            return segment_vertebrae(img, cfg=seg_cfg, contrast=Role.STIR)

    except ImportError:
        own_segmentation = None  # type: ignore[assignment]
    print(f"== 4. Real data: {root} (healthy volunteers, Dixon water as substitute, manual L1-L5 masks)")
    tallies: dict[str, list[int]] = {
        "manual masks": [0, 0, 0],
        "pipeline segmentation": [0, 0, 0],
    }  # bodies, called, not assessable
    for case in sorted(p for p in root.iterdir() if p.is_dir()):
        img = Volume.from_sitk(sitk.ReadImage(str(case / "image.nii.gz")))
        lab = Volume.from_sitk(sitk.ReadImage(str(case / "labels.nii.gz")))
        levels = {int(k): Level.parse(v) for k, v in json.loads((case / "levels.json").read_text()).items()}
        segs = {"manual masks": segmentation_from_label_map(lab, levels)}
        if own_segmentation is not None:
            try:
                segs["pipeline segmentation"] = own_segmentation(img)
            except Exception as exc:  # noqa: BLE001 - benchmark reports and moves on
                print(f"  {case.name}: pipeline segmentation failed: {exc}")
        for name, seg in segs.items():
            a = assess_stir(LoadedSeries(img), seg, LoadedSeries(img, substitute=Substitute.DIXON_WATER), cfg=cfg)
            t = tallies[name]
            for f in a.findings:
                t[0] += 1
                t[1] += int(f.edema is True)
                t[2] += int(f.edema is None)
            called = [f"{f.label}({f.edema_fraction:.2f})" for f in a.findings if f.edema]
            print(
                f"  {case.name} [{name}]: {a.status}; marrow/fluid {a.reference_to_fluid_ratio or float('nan'):.2f}; "
                f"called oedematous: {', '.join(called) or 'none'}"
            )
    for name, counts in tallies.items():
        n, n_called, na = counts
        if n:
            spec = (n - na - n_called) / max(1, n - na)
            print(
                f"  {name}: specificity {spec:.3f} ({n - na - n_called}/{n - na} assessable bodies), "
                f"not assessable {na}"
            )


def save_picture(st: Study, cfg: StirConfig, out: Path) -> None:
    from PIL import Image

    from pipeline.stir.overlay import overlay_rgb

    a = assess_stir(
        in_frame(st.anatomy, UID_A), st.segmentation, in_frame(st.stir, UID_A), cfg=cfg, deformity=st.deformity
    )
    mid = int(round(np.median([v.mid_slice for v in st.segmentation.vertebrae])))
    rgb = overlay_rgb(a, mid, st.segmentation.labels)
    sp = st.anatomy.spacing_mm
    img = Image.fromarray(rgb)
    scale = 2.0
    img = img.resize((int(rgb.shape[1] * sp[2] / min(sp[1:]) * scale), int(rgb.shape[0] * sp[1] / min(sp[1:]) * scale)))
    out.mkdir(parents=True, exist_ok=True)
    path = out / "stir_overlay_4_oedema.png"
    img.save(path)
    print(
        f"== 5. Picture: {path} ({st.name}, slice {mid}; truth: "
        + ", ".join(f"{k}:{v:.2f} {st.truth_pattern[k]}" for k, v in st.truth_fraction.items() if v > 0)
        + "; found: "
        + ", ".join(f"{f.label}:{f.edema_fraction:.2f} {f.pattern.value}" for f in a.findings if f.edema)
        + ")"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--studies", type=int, default=40)
    p.add_argument("--seed", type=int, default=100)
    p.add_argument("--source", choices=("auto", "phantom", "synth"), default="auto")
    p.add_argument("--no-registration", action="store_true")
    p.add_argument("--no-realdata", action="store_true")
    p.add_argument("--realdata", default=str(REALDATA))
    p.add_argument("--out", default="/tmp/stir_benchmark")
    p.add_argument("--config", default=None, help="configs/stir.yaml to use (default: the shipped one)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    cfg = load_stir_config(Path(args.config) if args.config else None)
    t0 = time.perf_counter()
    picture = run_phantoms(args, cfg) if args.studies > 0 else None
    if not args.no_realdata:
        run_realdata(args, cfg)
    if picture is not None:
        save_picture(picture, cfg, Path(args.out))
    print(f"total {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
