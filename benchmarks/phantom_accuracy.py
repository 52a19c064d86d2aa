"""How exactly does a phantom's pixel data reproduce its truth.json? Measured back from the images.

    python benchmarks/phantom_accuracy.py [--seeds 5]

For several seeds and a set of fractures (wedge, biconcave, crush, with oedema bands, diffuse oedema
and retropulsion) it prints:
- heights (Ha/Hm/Hp) and height loss measured on a 0.05 mm re-render of each body's mid-sagittal plane
  with the phantom's own painters, vs the truth;
- the same measured on the 0.85 mm x 4.4 mm series label mask (bilinear, sub-voxel), vs the truth;
- label-mask centroid error and volume ratio for every labelled body;
- oedema fraction: truth vs request, a 0.4 mm re-render vs truth, the series oedema map vs truth.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.levels import Level  # noqa: E402
from pipeline.model import EdemaPattern, Morphology  # noqa: E402
from pipeline.tools.phantom import FractureSpec, PhantomSpec, render_phantom  # noqa: E402
from pipeline.tools.phantom.anatomy import build_anatomy  # noqa: E402
from pipeline.tools.phantom.verify import (  # noqa: E402
    edema_fraction_hires,
    height_loss_pct,
    heights_on_mask,
    mask_centroid_and_volume,
    mid_plane_labels,
    vertebra,
)

FRACTURE_SETS = (
    (
        FractureSpec(
            Level.T11, Morphology.WEDGE, 22.0, edema=True, edema_pattern=EdemaPattern.BAND, edema_fraction=0.2
        ),
        FractureSpec(
            Level.L1,
            Morphology.BICONCAVE,
            33.0,
            edema=True,
            edema_pattern=EdemaPattern.DIFFUSE,
            edema_fraction=0.6,
        ),
        FractureSpec(Level.L3, Morphology.CRUSH, 55.0, retropulsion_mm=2.5),
    ),
    (
        FractureSpec(
            Level.T12, Morphology.WEDGE, 45.0, edema=True, edema_pattern=EdemaPattern.BAND, edema_fraction=0.4
        ),
        FractureSpec(Level.L2, Morphology.CRUSH, 25.0, edema=True, edema_pattern=EdemaPattern.BAND, edema_fraction=0.3),
        FractureSpec(
            Level.L4,
            Morphology.BICONCAVE,
            40.0,
            edema=True,
            edema_pattern=EdemaPattern.DIFFUSE,
            edema_fraction=0.45,
            retropulsion_mm=3.0,
        ),
    ),
)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=4)
    args = ap.parse_args()
    hires_h, hires_loss, mask_loss, cen_err, vol_ratio = [], [], [], [], []
    e_truth, e_hires, e_mask = [], [], []
    for seed in range(args.seeds):
        fractures = FRACTURE_SETS[seed % len(FRACTURE_SETS)]
        spec = PhantomSpec(seed=1000 + seed, fractures=fractures)
        ph = render_phantom(spec)
        anatomy = build_anatomy(spec)
        for fx in fractures:
            rec = vertebra(ph, fx.level.value)
            labels, vol = mid_plane_labels(anatomy, fx.level.value)
            h = heights_on_mask(labels == rec["label"], vol, 0, rec)
            hires_h.extend(abs(h[k] - rec["heights_mm"][k]) for k in h)
            hires_loss.append(height_loss_pct(h, rec["reference_height_mm"]) - fx.height_loss_pct)
            s = rec["mid_slice"]
            hm = heights_on_mask(ph.labels.array[s] == rec["label"], ph.labels, s, rec)
            mask_loss.append(height_loss_pct(hm, rec["reference_height_mm"]) - fx.height_loss_pct)
            if fx.edema:
                e_truth.append(rec["edema"]["fraction"] - fx.edema_fraction)
                e_hires.append(edema_fraction_hires(anatomy, fx.level.value) - rec["edema"]["fraction"])
                n = (ph.labels.array == rec["label"]).sum()
                e_mask.append((ph.edema.array == rec["label"]).sum() / n - rec["edema"]["fraction"])
            print(
                f"seed {spec.seed} {fx.level.value} {fx.kind.value:9s} request {fx.height_loss_pct:5.1f} %  "
                f"truth {rec['height_loss_pct']:6.2f} %  0.05 mm render {hires_loss[-1]:+.2f} pp  "
                f"series mask {mask_loss[-1]:+.2f} pp"
            )
        for rec in ph.truth["vertebrae"]:
            c, v = mask_centroid_and_volume(ph, rec["label"])
            cen_err.append(float(np.linalg.norm(c - np.asarray(rec["centroid_lps_mm"]))))
            vol_ratio.append(v / rec["volume_mm3"])

    def stat(name: str, vals: list[float], unit: str) -> None:
        a = np.asarray(vals, float)
        print(f"{name:58s} mean {a.mean():+.3f} {unit}, max |.| {np.abs(a).max():.3f} {unit} (n={a.size})")

    print()
    stat("heights, 0.05 mm re-render vs truth (abs error)", hires_h, "mm")
    stat("height loss, 0.05 mm re-render - requested", hires_loss, "pp")
    stat("height loss, series label mask (0.85 x 4.4 mm) - requested", mask_loss, "pp")
    stat("centroid, series label mask vs truth (distance)", cen_err, "mm")
    stat("volume, series label mask / truth", vol_ratio, "")
    stat("oedema fraction, truth - requested", e_truth, "")
    stat("oedema fraction, 0.4 mm re-render - truth", e_hires, "")
    stat("oedema fraction, series oedema map - truth", e_mask, "")
    return 0


if __name__ == "__main__":
    sys.exit(main())
