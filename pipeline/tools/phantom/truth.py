"""Ground truth of a phantom: exact geometry of every labelled vertebra, written as ``truth.json``.

Definitions (the morphometry and STIR stages are measured against these)
----------------------------------------------------------------------------
Body frame
    ``u`` anterior, ``v`` cranial, ``w`` left (LPS unit vectors ``axes_lps`` in the truth). ``v`` is
    perpendicular to the mid-plane of the *unfractured* body; for the fracture types generated
    (superior-endplate collapse; the inferior endplate rim and the posterior wall stay in place) it is
    also perpendicular to the inferior endplate rim line and parallel to the posterior wall.
AP depth ``D``
    Anterior to posterior outer cortex of the unfractured footprint in the body's mid-sagittal plane
    (``w = 0``); retropulsion is not counted.
Heights ``Ha``, ``Hm``, ``Hp`` (mm)
    Measured along ``v``, outer cortex to outer cortex (superior endplate surface to inferior endplate
    surface), in the mid-sagittal plane, on the lines at 10 %, 50 % and 90 % of ``D`` from the anterior
    outer cortex. Concave endplates are measured where they are (the centre of a concave endplate counts).
Reference height
    The body's own ``Hp`` before fracture (for a crush fracture this differs from the measured Hp).
Height loss (%)
    ``100 * (1 - min(Ha, Hm, Hp) / reference_height)``. Normal bodies show a few percent (physiological
    wedging of thoracic bodies, endplate concavity).
Genant grade
    From the height loss: 0 below 20 %, 1 for 20-25 %, 2 for 25-40 %, 3 at 40 % or more (Genant HK et al.,
    J Bone Miner Res 1993;8:1137-48, semi-quantitative method). This labels the phantom; it is not the
    pipeline's clinical configuration.
Morphology
    The requested fracture type (wedge / biconcave / crush), else ``normal``.
Oedema fraction
    Oedematous volume / whole body volume (cortex included; cortex is never oedematous), evaluated on a
    0.5 mm grid of the analytic shape. Pattern ``band``: within a distance below the fractured endplate
    (both endplates for biconcave); ``diffuse``: patchy throughout.
Posterior wall
    ``bulge_mm``: largest posterior displacement of the posterior outer cortex beyond the unfractured wall
    in the mid-sagittal plane. ``expected_canal_mm``: bony canal AP diameter at that level (posterior wall
    to the laminae/ligamentum flavum). ``canal_compromise_pct = 100 * bulge_mm / expected_canal_mm``.
Centroid and volume
    Of the exact body (0.5 mm grid of the analytic shape), LPS mm.
Label map voxels
    A voxel of the series grid belongs to a body when more than half of its sub-samples
    (supersample^2 in-plane x slice_subsamples across the slice thickness) lie inside it; exact ties are
    broken by a fixed checkerboard over (slice, row, col), which keeps mask volumes unbiased. The oedema
    map uses the same rule for oedematous sub-samples, so near the cortex it slightly under-counts.
Opt-in anatomy (``column`` keys present only when used, so classic truth.json files are unchanged)
    ``spondylolisthesis``: per slip, the posterior-inferior corner of the slipping body in front of the
    posterior-superior corner of the body below, along that body's superior rim line (``slip_mm``), as a
    percentage of its depth and as a Meyerding grade (1: < 25 %, 2: 25-50 %, ...). ``scoliosis``: lateral
    shift of each labelled body (mm, + = patient's left); ``mid_slice`` follows each body. ``modic``: never
    counted as oedema (``edema`` of the bodies and the oedema map ignore it). ``schmorl_nodes``: the pits are
    outside the body, so ``volume_mm3`` and the centroid exclude them (heights are unaffected: the pits are
    kept clear of the height lines). ``desiccated_discs``: discs named by the body above them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.levels import Level
from pipeline.model import EdemaPattern, Morphology
from pipeline.tools.phantom.body import HEIGHT_FRACTIONS
from pipeline.tools.phantom.column import FINE_STEP_MM, PlacedBody, fine_samples
from pipeline.tools.phantom.spec import GENERATOR_VERSION, PhantomSpec

if TYPE_CHECKING:  # pragma: no cover
    from pipeline.tools.phantom.anatomy import Anatomy

TRUTH_SCHEMA_VERSION = 1
#: Genant semi-quantitative cut-offs (height loss %, lower bounds of grades 1, 2, 3); Genant et al. 1993.
GENANT_LOWER_BOUNDS_PCT = (20.0, 25.0, 40.0)


def genant_grade(height_loss_pct: float) -> int:
    """Genant grade 0-3 of a height loss (see :data:`GENANT_LOWER_BOUNDS_PCT`)."""
    return int(sum(height_loss_pct >= b for b in GENANT_LOWER_BOUNDS_PCT))


def vertebra_truth(body: PlacedBody, level: Level, spec: PhantomSpec, expected_canal_mm: float) -> dict[str, Any]:
    """Truth record of one labelled body (see the module docstring for definitions)."""
    s = body.shape
    smp = fine_samples(body)
    inside = smp["inside"]
    n = int(inside.sum())
    vol = n * FINE_STEP_MM**3
    idx = np.nonzero(inside)
    local_c = np.array([smp["u"][idx].mean(), smp["v"][idx].mean(), smp["w"][idx].mean()])
    heights = s.heights()
    ref = s.reference_height()
    loss = 100.0 * (1.0 - min(heights.values()) / ref)
    fx = spec.fracture_at(level)
    morph = fx.kind if fx is not None else Morphology.NORMAL
    edema_frac = float(smp["edema"].sum() / n) if n else 0.0
    has_edema = fx is not None and fx.edema
    landmarks: dict[str, list[float]] = {}
    for name, f in HEIGHT_FRACTIONS.items():
        u = s.u_at(f)
        top = float(s.v_sup(np.array(u), np.array(0.0)))
        bot = float(s.v_inf(np.array(u), np.array(0.0)))
        landmarks[f"{name}_superior"] = _r(body.to_lps([u, top, 0.0]))
        landmarks[f"{name}_inferior"] = _r(body.to_lps([u, bot, 0.0]))
    bulge = float(s.deform.retro_mm)
    axes = {
        "u_anterior": _r(np.r_[0.0, body.frame.u], 6),
        "v_cranial": _r(np.r_[0.0, body.frame.v], 6),
        "w_left": [1.0, 0.0, 0.0],
    }
    return {
        "level": level.value,
        "label": body.label,
        "is_sacrum": level is Level.S1,
        "centroid_lps_mm": _r(body.to_lps(local_c)),
        "volume_mm3": round(vol, 1),
        "depth_mm": round(s.D, 3),
        "width_mm": round(2 * s.Wh, 3),
        "heights_mm": {
            "anterior": round(heights["anterior"], 4),
            "middle": round(heights["middle"], 4),
            "posterior": round(heights["posterior"], 4),
        },
        "reference_height_mm": round(ref, 4),
        "height_loss_pct": round(loss, 4),
        "genant_grade": genant_grade(loss),
        "morphology": morph.value,
        "fractured": fx is not None and fx.kind is not Morphology.NORMAL,
        "acute": bool(has_edema),
        "edema": {
            "present": bool(has_edema),
            "fraction": round(edema_frac, 4),
            "requested_fraction": round(fx.edema_fraction, 4) if has_edema and fx is not None else 0.0,
            "pattern": (fx.edema_pattern.value if has_edema and fx is not None else EdemaPattern.NONE.value),
        },
        "posterior_wall": {
            "bulge_mm": round(bulge, 3),
            "expected_canal_mm": round(expected_canal_mm, 3),
            "canal_compromise_pct": round(100.0 * bulge / expected_canal_mm, 3),
        },
        "axes_lps": axes,
        "landmarks_lps_mm": landmarks,
        "hemangioma": body.hemangioma is not None,
    }


def build_truth(
    anatomy: Anatomy,
    uids: dict[str, Any],
    series: list[dict[str, Any]],
    grid: dict[str, Any],
    mid_slices: dict[int, int],
) -> dict[str, Any]:
    """The full truth.json content."""
    spec = anatomy.spec
    verts = []
    for body in anatomy.labelled:
        level = Level(body.name)
        rec = vertebra_truth(body, level, spec, anatomy.canal_ap_mm[body.name])
        rec["mid_slice"] = mid_slices.get(body.label)
        verts.append(rec)
    return {
        "schema": "spine-assess-phantom-truth",
        "schema_version": TRUTH_SCHEMA_VERSION,
        "generator": {
            # the generator's name since truth schema 1, not its module path: kept when the package moved to
            # pipeline.tools.phantom, so truth.json files (sample_dicom/, training caches) stay byte for byte
            "name": "pipeline.phantom",
            "version": GENERATOR_VERSION,
            "seed": spec.seed,
            "spec": spec.to_json(),
        },
        "study": {
            "study_instance_uid": uids["study_instance_uid"],
            "frame_of_reference_uid": uids["frame_of_reference_uid"],
            "patient_id": spec.patient_id,
            "patient_name": spec.patient_name,
            "vendor": spec.vendor.value,
            "series": series,
        },
        "grid": grid,
        "column": {
            "midline_x_lps_mm": round(anatomy.x0, 4),
            "visible_unlabelled_levels": anatomy.partial_levels,
            "sacrum_labelled": spec.include_sacrum,
            # opt-in keys only when present, so classic phantoms keep their truth.json byte for byte
            **({"spondylolisthesis": anatomy.slips} if anatomy.slips else {}),
            **({"desiccated_discs": [lv.value for lv in spec.desiccated_discs]} if spec.desiccated_discs else {}),
            **({"modic": [_modic_json(m) for m in spec.modic]} if spec.modic else {}),
            **({"schmorl_nodes": [_node_json(n) for n in spec.schmorl_nodes]} if spec.schmorl_nodes else {}),
            **(
                {
                    "scoliosis": {
                        "apex": spec.scoliosis_apex.value,
                        "apex_shift_mm": spec.scoliosis_mm,
                        "lateral_shift_mm": {
                            b.name: round(b.x0 - anatomy.x0, 4) for b in anatomy.labelled if b.x0 != anatomy.x0
                        },
                    }
                }
                if spec.scoliosis_mm
                else {}
            ),
        },
        "vertebrae": verts,
        "definitions": {
            "heights": "along the body's cranial axis v, outer cortex to outer cortex, in its mid-sagittal "
            "plane, "
            "at 10 % / 50 % / 90 % of the AP depth from the anterior outer cortex",
            "reference_height": "the body's own unfractured posterior height (Hp)",
            "height_loss_pct": "100 * (1 - min(Ha, Hm, Hp) / reference_height)",
            "genant_grade": "0: <20 %, 1: 20-25 %, 2: 25-40 %, 3: >=40 % (Genant 1993)",
            "edema_fraction": "oedematous volume / whole body volume (cortex included)",
            "canal_compromise_pct": "100 * posterior wall bulge / expected bony canal AP diameter",
            "label_voxels": "a voxel belongs to a body when more than half of its sub-samples are inside it "
            "(exact ties: checkerboard)",
        },
    }


def _modic_json(m: Any) -> dict[str, Any]:
    return {
        "disc": m.level.value,
        "modic_type": m.modic_type,
        "counted_as_edema": False,  # Modic 1 looks like oedema on STIR but is degenerative, not a fracture
    }


def _node_json(n: Any) -> dict[str, Any]:
    return {"level": n.level.value, "endplate": n.endplate, "radius_mm": n.radius_mm, "depth_mm": n.depth_mm}


def _r(a: Any, nd: int = 4) -> list[float]:
    return [round(float(v), nd) for v in np.asarray(a, float).ravel()]
