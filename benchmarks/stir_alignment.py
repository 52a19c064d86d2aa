"""The same-frame alignment check of the STIR stage (issue 18): does its quick probe ever skip a registration that
the full check would have adopted? Prints figures; asserts nothing.

    python benchmarks/stir_alignment.py            # the four sample studies, STIR and T1, ~13 motions each

For every sample study (``sample_dicom/``: STIR and T1 share the anatomy's frame of reference), the STIR and the
T1 are moved by a known patient motion (none; in-plane shifts of 1, 1.5, 2 and 3 mm in random directions; turns
about the slice normal moving the bodies 1.5, 2 and 3 mm on average; a 2 mm shift through the slices) and given
to both checks:

- probe (``_Registration.looks_aligned``, what ``bring_onto_grid`` runs first): pass = no registration;
- the full check (the registration on the first ``alignment_check_levels`` pyramid levels, run before issue 18
  on every series): its correction, and whether it exceeds ``misalignment_tolerance_mm`` (registration adopted).

A miss is a motion the full check adopts while the probe passes. Both CPU times are printed.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipeline.ingest import choose_series, discover_study, load_usable_series  # noqa: E402
from pipeline.run import load_pipeline_config  # noqa: E402
from pipeline.segment import segment_vertebrae  # noqa: E402
from pipeline.stir.assess import _column_region  # noqa: E402
from pipeline.stir.register import _Registration  # noqa: E402
from pipeline.volume import Volume  # noqa: E402

MOTIONS = [("none", 0.0)] + [("shift", m) for m in (1.0, 1.0, 1.5, 1.5, 2.0, 2.0, 3.0, 3.0)]
MOTIONS += [("turn", m) for m in (1.5, 2.0, 3.0)] + [("through", 2.0)]


def moved(volume: Volume, kind: str, mm: float, centre: np.ndarray, reach: float, rng: np.random.Generator) -> Volume:
    """``volume`` with its content moved (linear resampling on its own grid); the axes are the anatomy's."""
    if kind == "none":
        return volume
    ax = np.asarray(volume.axes_lps)
    t: sitk.Transform
    if kind == "turn":
        t = sitk.VersorRigid3DTransform()
        t.SetCenter(tuple(centre))
        t.SetRotation(tuple(ax[0]), float(rng.choice([-1.0, 1.0])) * mm / reach)
    else:
        t = sitk.Euler3DTransform()
        t.SetCenter(tuple(centre))
        a = rng.uniform(0.0, 2.0 * math.pi)
        t.SetTranslation(tuple(mm * (ax[0] if kind == "through" else math.cos(a) * ax[1] + math.sin(a) * ax[2])))
    img = volume.to_sitk()
    return Volume.from_sitk(sitk.Resample(img, img, t, sitk.sitkLinear, 0.0, sitk.sitkFloat32))


def main() -> int:
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    config = load_pipeline_config()
    cfg = config.stir.registration
    rng = np.random.default_rng(7)
    misses = adopted = passed = n = 0
    t_probe = t_full = 0.0
    for folder in sorted(p for p in (REPO / "sample_dicom").iterdir() if p.is_dir()):
        study = discover_study(folder, cfg=config.ingest)
        choice = choose_series(study, cfg=config.ingest)
        if choice.anatomy is None:
            continue
        anatomy = load_usable_series(choice.anatomy, cfg=config.ingest).volume
        seg = segment_vertebrae(
            anatomy, cfg=config.segmentation, series_uid=choice.anatomy.series_uid, contrast=choice.anatomy.role
        )
        points = np.array([v.centroid_lps_mm for v in seg.vertebrae])
        centre = points.mean(axis=0)
        normal = np.asarray(anatomy.axes_lps)[0]
        offsets = points - centre
        reach = float(np.mean(np.linalg.norm(offsets - np.outer(offsets @ normal, normal), axis=1)))
        region = _column_region(seg.labels, cfg.mask_margin_mm)
        for what, series in (("STIR", choice.stir), ("T1", choice.t1)):
            if series is None or series.frame_of_reference_uid != choice.anatomy.frame_of_reference_uid:
                continue
            volume = load_usable_series(series, cfg=config.ingest).volume
            for kind, mm in MOTIONS:
                reg = _Registration(anatomy, moved(volume, kind, mm, centre, reach, rng), points.tolist(), region, cfg)
                c0 = time.process_time()
                ok = reg.looks_aligned(cfg.misalignment_tolerance_mm, level=cfg.alignment_check_levels)
                c1 = time.process_time()
                corr = reg.correction(reg.run(reg.identity(), levels=cfg.alignment_check_levels).transform)
                c2 = time.process_time()
                adopt = corr > cfg.misalignment_tolerance_mm
                miss = ok and adopt
                n, passed, adopted, misses = n + 1, passed + ok, adopted + adopt, misses + miss
                t_probe, t_full = t_probe + c1 - c0, t_full + c2 - c1
                print(
                    f"{folder.name[:28]:<28} {what:<4} {kind:<7} {mm:3.1f} mm   probe {'pass' if ok else 'register'}"
                    f" ({(c1 - c0) * 1000:3.0f} ms)   full check {corr:4.2f} mm, {'adopt' if adopt else 'keep '}"
                    f" ({(c2 - c1) * 1000:3.0f} ms){'   MISS' if miss else ''}",
                    flush=True,
                )
    print(
        f"\n{n} cases: probe passed {passed}, full check adopted {adopted}, misses {misses}; CPU per case: probe "
        f"{t_probe / max(n, 1) * 1000:.0f} ms, full check {t_full / max(n, 1) * 1000:.0f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
