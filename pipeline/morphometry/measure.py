"""The morphometry stage: every labelled body of a segmentation -> :class:`VertebraMorphometry`."""

from __future__ import annotations

import logging
import math
from dataclasses import replace

import numpy as np
from scipy import ndimage

from pipeline.errors import InputError
from pipeline.model import (
    Heights,
    PosteriorWall,
    SegmentationResult,
    Vec3,
    VertebraMorphometry,
    VertebraSeg,
)
from pipeline.morphometry.canal import canal_diameters, expected_canal
from pipeline.morphometry.config import MorphometryConfig
from pipeline.morphometry.reference import Reference, classify, genant_grade, height_loss, references
from pipeline.morphometry.reliability import Plausibility, check_body
from pipeline.morphometry.section import Body, Plane, Section, measure_posterior_wall, measure_section, sagittal_plane
from pipeline.volume import Volume

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- public entry point
def measure_vertebrae(
    image: Volume,
    segmentation: SegmentationResult,
    *,
    cfg: MorphometryConfig,
    canal_image: Volume | None = None,
) -> tuple[VertebraMorphometry, ...]:
    """Measure every labelled vertebral body.

    Parameters
    ----------
    image : Volume
        The anatomy series (sagittal T2 or T1), shape ``(n_slices, n_rows, n_cols)``; defines the grid.
    segmentation : SegmentationResult
        ``labels`` (uint16, same grid as ``image``; 1..N cranial -> caudal) and per-body ``vertebrae``.
    cfg : MorphometryConfig
        From :func:`load_morphometry_config`.
    canal_image : Volume, optional
        A fluid-sensitive image (T2, STIR) for the CSF column, on the same grid as ``image`` (resampled onto it
        with the DICOM geometry otherwise). Without it, canal compromise is not assessable.

    Returns
    -------
    tuple of VertebraMorphometry
        One per entry of ``segmentation.vertebrae``, same order. Heights in mm, percentages 0-100, landmarks in
        LPS mm (``anterior_superior``, ``anterior_inferior``, ``middle_superior``, ``middle_inferior``,
        ``posterior_superior``, ``posterior_inferior`` and, when the wall bulges, ``posterior_wall_apex``).

    Raises
    ------
    InputError
        The label map is not on the image grid.
    """
    labels = segmentation.labels
    if not labels.same_grid(image):
        raise InputError(
            f"series {segmentation.series_uid}: label map grid {labels.shape} does not match the image grid "
            f"{image.shape}; segment the anatomy series that is measured"
        )
    if canal_image is not None and not canal_image.same_grid(image):
        logger.info("series %s: resampling the canal image onto the anatomy grid", segmentation.series_uid)
        canal_image = canal_image.resample_like(image, linear=True)

    plane, plane_problem = sagittal_plane(image, cfg)
    results: dict[int, VertebraMorphometry] = {}
    bodies: list[Body] = []
    lab_arr = np.asarray(labels.array)
    objects = ndimage.find_objects(lab_arr.astype(np.int64, copy=False)) if lab_arr.size else []
    up_dirs, spacings = _column_directions(segmentation, lab_arr, objects, plane) if plane is not None else ([], [])
    for i, vs in enumerate(segmentation.vertebrae):
        if vs.is_sacrum:
            results[i] = _not_assessable(vs, "sacrum: not a morphometry target")
            continue
        if plane is None:
            results[i] = _not_assessable(vs, plane_problem)
            continue
        sl = objects[vs.label - 1] if 0 < vs.label <= len(objects) else None
        if sl is None:
            results[i] = _not_assessable(vs, f"label {vs.label} is not present in the label map")
            continue
        edges = _fov_edges(sl, lab_arr.shape)
        if edges:
            results[i] = _not_assessable(
                vs, f"cut by the field of view: the body touches the image edge ({', '.join(edges)})"
            )
            continue
        body = _measure_body(i, vs, lab_arr, sl, plane, up_dirs[i], cfg)
        if isinstance(body, str):
            results[i] = _not_assessable(vs, body)
        else:
            bodies.append(body)

    checks = {b.index: check_body(b, up_dirs[b.index], spacings[b.index], cfg) for b in bodies}
    for b in bodies:
        if checks[b.index].not_assessable:
            results[b.index] = _not_assessable(b.seg, checks[b.index].not_assessable)
            logger.info("label %d: %s", b.seg.label, checks[b.index].not_assessable)
    bodies = [b for b in bodies if not checks[b.index].not_assessable]
    refs, ref_set, normal = references(bodies, cfg, exclude={j for j, c in checks.items() if c.not_reference})
    canal = canal_diameters(bodies, normal, lab_arr, canal_image, plane, cfg) if plane is not None else {}
    for b in bodies:
        assert plane is not None
        results[b.index] = _assemble(
            b, refs[b.index], ref_set, bodies, canal, image, plane, cfg, canal_image, checks[b.index]
        )
    return tuple(results[i] for i in range(len(segmentation.vertebrae)))


def _fov_edges(sl: tuple[slice, ...], shape: tuple[int, ...]) -> list[str]:
    """Image borders (rows, columns) that a body's bounding box reaches on any slice."""
    edges = []
    for axis, (first, last) in ((1, ("first row", "last row")), (2, ("first column", "last column"))):
        if sl[axis].start == 0:
            edges.append(first)
        if sl[axis].stop == shape[axis]:
            edges.append(last)
    return edges


def _column_directions(
    segmentation: SegmentationResult, lab_arr: np.ndarray, objects: list, plane: Plane
) -> tuple[list[np.ndarray], list[list[float]]]:
    """Per vertebra, the local direction of the column towards the head in (row_mm, col_mm), and the in-plane
    distances (mm) from its centroid to those of the bodies listed just before and after it.

    From the in-plane centroids of the bodies listed before and after it (the sacrum included), so that bodies
    tilted by the curve of the spine (even 45 degrees at L5) get the right height axis; the patient's superior
    direction where a body has no neighbour.
    """
    labels = [v.label for v in segmentation.vertebrae]
    centre: dict[int, np.ndarray] = {}
    for lab in labels:
        sl = objects[lab - 1] if 0 < lab <= len(objects) else None
        if sl is None:
            continue
        _, rr, cc = np.nonzero(lab_arr[sl] == lab)
        centre[lab] = np.array([rr.mean() + sl[1].start, cc.mean() + sl[2].start]) * plane.spacing_rc
    out = []
    spacings: list[list[float]] = []
    for i, lab in enumerate(labels):
        prev = centre.get(labels[i - 1]) if i > 0 else None
        nxt = centre.get(labels[i + 1]) if i + 1 < len(labels) else None
        own = centre.get(lab)
        spacings.append([float(np.linalg.norm(o - own)) for o in (prev, nxt) if o is not None and own is not None])
        d = None
        if prev is not None and nxt is not None:
            d = prev - nxt
        elif own is not None and prev is not None:
            d = prev - own
        elif own is not None and nxt is not None:
            d = own - nxt
        if d is None or np.linalg.norm(d) < 1e-6 or d @ plane.superior <= 0:
            out.append(plane.superior)
        else:
            out.append(d / np.linalg.norm(d))
    return out, spacings


def _measure_section_at(
    lab_arr: np.ndarray, label: int, s: int, plane: Plane, up: np.ndarray, cfg: MorphometryConfig
) -> Section | str:
    """Measure section ``s`` of body ``label``; reasons name the slice."""
    mask = lab_arr[s] == label
    if not mask.any():
        return f"no voxels of the body on slice {s}"
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    edges = []
    if rows[0] == 0:
        edges.append("first row")
    if rows[-1] == mask.shape[0] - 1:
        edges.append("last row")
    if cols[0] == 0:
        edges.append("first column")
    if cols[-1] == mask.shape[1] - 1:
        edges.append("last column")
    if edges:
        return f"cut by the field of view: the body touches the image edge ({', '.join(edges)}) on slice {s}"
    r0, r1 = max(0, rows[0] - 1), min(mask.shape[0], rows[-1] + 2)
    c0, c1 = max(0, cols[0] - 1), min(mask.shape[1], cols[-1] + 2)
    sec = measure_section(mask[r0:r1, c0:c1], s, plane, up, cfg)
    if isinstance(sec, str):
        return f"{sec} (slice {s})"
    offset = np.array([r0, c0], dtype=float) * plane.spacing_rc
    return replace(sec, contour=sec.contour + offset, raw_contour=sec.raw_contour + offset, centre=sec.centre + offset)


def _measure_body(
    index: int,
    vs: VertebraSeg,
    lab_arr: np.ndarray,
    sl: tuple[slice, slice, slice],
    plane: Plane,
    up: np.ndarray,
    cfg: MorphometryConfig,
) -> Body | str:
    """Choose the mid-sagittal section of one body (largest area near ``mid_slice``) and measure it and its
    neighbouring slices. A string is the reason the body is not assessable."""
    n_slices = lab_arr.shape[0]
    s_lo, s_hi = int(sl[0].start), int(sl[0].stop)
    mid = min(max(int(vs.mid_slice), s_lo), s_hi - 1)
    k = round(cfg.slice_search_mm / plane.slice_mm)
    block = lab_arr[s_lo:s_hi, sl[1], sl[2]] == vs.label
    areas_all = block.reshape(block.shape[0], -1).sum(axis=1)
    cand = [s for s in range(max(s_lo, mid - k), min(s_hi, mid + k + 1))]
    if not any(areas_all[s - s_lo] for s in cand):
        return f"no voxels of the body within {cfg.slice_search_mm:g} mm of its mid-sagittal slice {vs.mid_slice}"
    # The mid-sagittal section: the slice nearest the body's left-right centre (area-weighted over the slices
    # holding at least half of the largest section; not simply the largest section, which a central endplate
    # depression makes smaller than its neighbours).
    big = areas_all >= 0.5 * areas_all.max()
    centre = s_lo + float(np.sum(np.flatnonzero(big) * areas_all[big]) / np.sum(areas_all[big]))
    best = min(cand, key=lambda s: (abs(s - centre), -areas_all[s - s_lo]))
    if not areas_all[best - s_lo]:
        best = max(cand, key=lambda s: (areas_all[s - s_lo], -abs(s - mid)))
    best_area = int(areas_all[best - s_lo])
    if best in (0, n_slices - 1):
        return (
            f"cut by the field of view: the largest section is on the {'first' if best == 0 else 'last'} slice, "
            "so the body's mid-sagittal plane may lie outside the scan"
        )
    sec = _measure_section_at(lab_arr, vs.label, best, plane, up, cfg)
    if isinstance(sec, str):
        return sec
    kn = max(1, round(cfg.neighbour_slice_mm / plane.slice_mm))
    neigh: list[Section] = []
    for s in range(best - kn, best + kn + 1):
        if s == best or not (s_lo <= s < s_hi):
            continue
        if areas_all[s - s_lo] < cfg.neighbour_min_area_fraction * best_area:
            continue
        ns = _measure_section_at(lab_arr, vs.label, s, plane, up, cfg)
        if isinstance(ns, str):
            logger.debug("label %d: neighbour slice skipped: %s", vs.label, ns)
            continue
        neigh.append(ns)
    slab = [sec] + [n for n in neigh if abs(n.slice_index - best) * plane.slice_mm <= cfg.height_slab_mm + 1e-6]
    heights = Heights(
        anterior_mm=float(np.mean([x.heights.anterior_mm for x in slab])),
        middle_mm=float(np.mean([x.heights.middle_mm for x in slab])),
        posterior_mm=float(np.mean([x.heights.posterior_mm for x in slab])),
    )
    return Body(
        index=index,
        seg=vs,
        mid=sec,
        neighbours=tuple(neigh),
        heights=heights,
        slab=tuple(sorted(x.slice_index for x in slab)),
    )


# --------------------------------------------------------------------------- assembling results
def _not_assessable(vs: VertebraSeg, reason: str) -> VertebraMorphometry:
    return VertebraMorphometry(
        label=vs.label,
        level=vs.level,
        assessable=False,
        reason=reason,
        posterior_wall=PosteriorWall(False, f"body not assessable: {reason}"),
    )


def _to_lps(p: np.ndarray, s: int, plane: Plane, image: Volume) -> Vec3:
    idx = np.array([float(s), p[0] / plane.spacing_rc[0], p[1] / plane.spacing_rc[1]])
    x = image.index_to_lps(idx)
    return (float(x[0]), float(x[1]), float(x[2]))


def _assemble(
    b: Body,
    ref: Reference,
    ref_set: set[int],
    bodies: list[Body],
    canal: dict[int, float | str],
    image: Volume,
    plane: Plane,
    cfg: MorphometryConfig,
    canal_image: Volume | None,
    check: Plausibility,
) -> VertebraMorphometry:
    vs, sec = b.seg, b.mid
    h = b.heights
    losses = [height_loss(s.heights, ref.height_mm) for s in (sec, *b.neighbours)]
    spread = max(losses) - min(losses)
    slices = sorted(s.slice_index for s in (sec, *b.neighbours))
    if spread >= cfg.spread_not_assessable_pct:
        return _not_assessable(
            vs,
            f"neighbouring sagittal slices disagree: height loss {min(losses):.0f}-{max(losses):.0f} % on slices "
            f"{slices[0]}-{slices[-1]} (spread {spread:.0f} points >= {cfg.spread_not_assessable_pct:g})",
        )
    loss = round(height_loss(h, ref.height_mm), 1)  # graded as reported
    grade = genant_grade(loss, cfg)
    morph, ratios = classify(h, ref.predicted_mm, grade, cfg)

    notes: list[str] = []
    confidence = min(1.0, max(0.0, float(vs.quality)))
    if not b.neighbours:
        notes.append("no neighbouring slice could be measured (no robustness check)")
        confidence *= 0.9
    elif spread >= cfg.spread_low_confidence_pct:
        notes.append(f"neighbouring slices disagree by {spread:.0f} points")
        confidence *= 0.6
    if ref.own:
        notes.append("reference is the body's own posterior height")
        confidence *= 0.8
    elif ref.one_sided:
        notes.append("reference from bodies on one side only")
        confidence *= 0.9
    if sec.n_components > 1:
        notes.append("the body's section has several large parts; the largest was measured")
        confidence *= 0.8
    notes.extend(check.notes)
    if check.low_confidence:
        confidence *= 0.5
    # A loss this close to the fracture threshold is fracture-or-not within the measurement's own uncertainty.
    uncertain = abs(loss - cfg.genant_mild_pct) < cfg.fracture_margin_pp
    if uncertain:
        notes.append(
            f"height loss {loss:.1f} % is within {cfg.fracture_margin_pp:g} points of the fracture threshold "
            f"({cfg.genant_mild_pct:g} %): fracture or not is uncertain"
        )

    landmarks: dict[str, Vec3] = {}
    for name, (u0, v_lo, v_hi) in sec.chords.items():
        landmarks[f"{name}_superior"] = _to_lps(sec.chord_point(u0, v_hi), sec.slice_index, plane, image)
        landmarks[f"{name}_inferior"] = _to_lps(sec.chord_point(u0, v_lo), sec.slice_index, plane, image)

    wall_result = measure_posterior_wall(sec, cfg)
    if isinstance(wall_result, str):
        pw = PosteriorWall(False, wall_result)
    else:
        if wall_result.bulge_mm > 0:
            landmarks["posterior_wall_apex"] = _to_lps(wall_result.apex, sec.slice_index, plane, image)
        bulge = round(wall_result.bulge_mm, 2)
        if canal_image is None:
            pw = PosteriorWall(
                False,
                f"canal compromise not assessable: no T2/STIR image for the CSF column (bulge {bulge:.1f} mm)",
                bulge_mm=bulge,
            )
        else:
            exp = expected_canal(b, canal, bodies, cfg)
            if isinstance(exp, str):
                pw = PosteriorWall(
                    False, f"canal compromise not assessable: {exp} (bulge {bulge:.1f} mm)", bulge_mm=bulge
                )
            else:
                exp_mm, where = exp
                pw = PosteriorWall(
                    True,
                    "bulge of the posterior wall beyond its unbroken line; expected canal = sagittal diameter "
                    f"(posterior wall through the CSF to the ligamentum flavum) behind {', '.join(where)}",
                    bulge_mm=bulge,
                    canal_compromise_pct=round(100.0 * wall_result.bulge_mm / exp_mm, 1),
                    expected_canal_mm=round(exp_mm, 2),
                )

    tilt = math.degrees(math.atan2(float(sec.u @ plane.superior), float(sec.u @ plane.anterior)))
    reason = (
        f"six-point morphometry on slice {sec.slice_index} (body axis tilted {tilt:+.1f} deg)"
        + (f", checked on slices {', '.join(str(s.slice_index) for s in b.neighbours)}" if b.neighbours else "")
        + (f", heights averaged over slices {', '.join(map(str, b.slab))}" if len(b.slab) > 1 else "")
        + ("; " + "; ".join(notes) if notes else "")
    )
    return VertebraMorphometry(
        label=vs.label,
        level=vs.level,
        assessable=True,
        reason=reason,
        heights=Heights(round(h.anterior_mm, 2), round(h.middle_mm, 2), round(h.posterior_mm, 2)),
        reference_height_mm=round(ref.height_mm, 2),
        reference_method=ref.method,
        reference_labels=ref.labels,
        height_loss_pct=loss,
        genant_grade=grade,
        morphology=morph,
        wedge_angle_deg=round(sec.wedge_angle_deg, 1),
        ratios={k: round(v, 3) for k, v in ratios.items()},
        landmarks_lps=landmarks,
        posterior_wall=pw,
        slice_spread_pct=round(spread, 1),
        confidence=round(confidence, 2),
        measured_slice=sec.slice_index,
        ap_depth_mm=round(sec.depth_mm, 2),
        used_as_reference=b.index in ref_set,
        low_confidence=check.low_confidence,
        reliability_notes=check.notes,
        grade_uncertain=uncertain,
    )
