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

Phantoms come from ``pipeline.phantom`` when it is installed in this checkout, else from the simple synthetic
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
from pipeline.model import SegmentationResult, StirAssessment, Substitute  # noqa: E402
from pipeline.stir import StirConfig, assess_stir, load_stir_config  # noqa: E402
from pipeline.stir.labelmap import segmentation_from_label_map  # noqa: E402
from pipeline.volume import Volume  # noqa: E402

REALDATA = REPO.parent.parent / "shared" / "realdata"
UID_A, UID_B = "1.2.826.0.1.3680043.2.1", "1.2.826.0.1.3680043.2.2"
TARGET_FRACTION = 0.20


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
    from stir_synth import make_spine  # type: ignore[import-not-found]

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

    return "synthetic spines (tests/stir_synth.py; pipeline.phantom not available)", make


def phantom_studies(n: int, seed0: int) -> tuple[str, Callable[[int], Study]] | None:
    try:
        from pipeline import phantom  # noqa: F401
    except ImportError:
        return None
    return None


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
    frac_err: list[float] = dataclasses.field(default_factory=list)
    pattern_ok: int = 0
    pattern_n: int = 0
    misses: list[str] = dataclasses.field(default_factory=list)

    def add(self, st: Study, a: StirAssessment) -> None:
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
                    self.pattern_n += 1
                    self.pattern_ok += int(f.pattern.value == st.truth_pattern.get(f.label))
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
        if self.frac_err:
            e = np.asarray(self.frac_err)
            out.append(
                f"  |fraction error| on detected bodies: median {np.median(e):.3f}, 90th pct "
                f"{np.percentile(e, 90):.3f}, max {e.max():.3f}"
            )
        if self.pattern_n:
            out.append(f"  pattern agrees with truth (band/diffuse): {self.pattern_ok}/{self.pattern_n}")
        out.append(
            f"  bodies with 0 < true fraction < {TARGET_FRACTION:.2f} (outside target): {self.under_target}, "
            f"called oedematous: {self.under_target_called}"
        )
        out.append(f"  not assessable: {self.not_assessable}")
        return out


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
            st.anatomy,
            st.segmentation,
            st.stir,
            cfg=cfg,
            stir_frame_of_reference_uid=UID_A,
            anatomy_frame_of_reference_uid=UID_A,
            t1=st.t1,
            t1_frame_of_reference_uid=UID_A,
            deformity=st.deformity,
        )
        times.append(time.perf_counter() - t0)
        plain.add(st, a)
        if st.n_edema == 4 and picture_study is None:
            picture_study = st
        field = bias_field(st.stir, 0.30, seed=1000 + i)
        b = assess_stir(
            st.anatomy,
            st.segmentation,
            st.stir.with_array((st.stir.array * field).astype(np.float32)),
            cfg=cfg,
            stir_frame_of_reference_uid=UID_A,
            anatomy_frame_of_reference_uid=UID_A,
            deformity=st.deformity,
        )
        biased.add(st, b)
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
                st.anatomy,
                st.segmentation,
                mv,
                cfg=cfg,
                stir_frame_of_reference_uid=UID_B,
                anatomy_frame_of_reference_uid=UID_A,
                deformity=st.deformity,
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

    try:
        from pipeline.segment import segment_vertebrae  # type: ignore[attr-defined]
    except ImportError:
        segment_vertebrae = None
    print(f"== 4. Real data: {root} (healthy volunteers, Dixon water as substitute, manual L1-L5 masks)")
    tallies = {"manual masks": [0, 0, 0], "pipeline segmentation": [0, 0, 0]}  # bodies, called, not assessable
    for case in sorted(p for p in root.iterdir() if p.is_dir()):
        img = Volume.from_sitk(sitk.ReadImage(str(case / "image.nii.gz")))
        lab = Volume.from_sitk(sitk.ReadImage(str(case / "labels.nii.gz")))
        levels = {int(k): Level.parse(v) for k, v in json.loads((case / "levels.json").read_text()).items()}
        segs = {"manual masks": segmentation_from_label_map(lab, levels)}
        if segment_vertebrae is not None:
            try:
                segs["pipeline segmentation"] = segment_vertebrae(img)
            except Exception as exc:  # noqa: BLE001 - benchmark reports and moves on
                print(f"  {case.name}: pipeline segmentation failed: {exc}")
        for name, seg in segs.items():
            a = assess_stir(img, seg, img, cfg=cfg, substitute=Substitute.DIXON_WATER)
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
    for name, (n, called, na) in tallies.items():
        if n:
            spec = (n - na - called) / max(1, n - na)
            print(
                f"  {name}: specificity {spec:.3f} ({n - na - called}/{n - na} assessable bodies), not assessable {na}"
            )


def save_picture(st: Study, cfg: StirConfig, out: Path) -> None:
    from PIL import Image

    from pipeline.stir.overlay import overlay_rgb

    a = assess_stir(
        st.anatomy,
        st.segmentation,
        st.stir,
        cfg=cfg,
        stir_frame_of_reference_uid=UID_A,
        anatomy_frame_of_reference_uid=UID_A,
        deformity=st.deformity,
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
