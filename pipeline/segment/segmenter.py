"""``segment_vertebrae``: the stage function (sagittal series -> labelled vertebral bodies).

Steps (each in its own module): canonical working copy, N4 bias correction and normalisation
(:mod:`.preprocess`); spinal canal, mid-sagittal plane and the body / disc partition along the column
(:mod:`.locate`, :mod:`.column`, :mod:`.discs`); a contour per body on every sagittal slice, bounded by its
axial section (:mod:`.bodies`); plausibility checks that reject non-vertebral blobs; level names
(:mod:`.labelling`); the label map back on the input grid with per-vertebra geometry.
"""

from __future__ import annotations

import logging
import time

import numpy as np
from scipy import ndimage as ndi

from pipeline.levels import Level
from pipeline.model import Role, SegmentationResult, VertebraSeg
from pipeline.segment.bodies import BodyMask, body_slots, segment_bodies
from pipeline.segment.config import SegmentationConfig
from pipeline.segment.labelling import Anchor, BodyFacts, label_bodies
from pipeline.segment.locate import ColumnFit, locate_column
from pipeline.segment.preprocess import WorkingGrid, correct_bias, make_working_grid, normalise
from pipeline.volume import Volume

logger = logging.getLogger(__name__)


def segment_vertebrae(
    image: Volume,
    *,
    cfg: SegmentationConfig,
    series_uid: str = "",
    contrast: Role = Role.T2,
    anchor: Anchor | None = None,
) -> SegmentationResult:
    """Segment and label the vertebral bodies of a sagittal spine series.

    Parameters
    ----------
    image : Volume
        Sagittal series, array ``(slice, row, col)`` with slices stacked left-right; rows and columns may run
        in any direction (``axes_lps`` says which way is superior / anterior).
    cfg : SegmentationConfig
        Stage settings (``configs/segmentation.yaml``).
    series_uid : str
        Recorded in the result and in log lines.
    contrast : Role
        T2 (and OTHER): CSF bright, discs bright; T1: CSF dark; STIR (incl. Dixon water / fat-sat T2): fat and
        normal marrow dark, fluid bright.
    anchor : Anchor, optional
        User override of the level count (see :func:`pipeline.segment.parse_anchor`).

    Returns
    -------
    SegmentationResult
        ``labels``: uint16 label map on the input grid (0 background, 1..N cranial -> caudal, S1 last when
        found); one :class:`VertebraSeg` per label.

    Raises
    ------
    InputError
        The series is not sagittal or too small.
    AnalysisError
        No vertebral column could be found.
    """
    t_start = time.perf_counter()
    grid = make_working_grid(image, cfg)
    arr = normalise(correct_bias(grid.image, cfg))
    spacing = grid.image.spacing_mm
    bright = contrast is not Role.T1
    fit = locate_column(arr, spacing, cfg, bright)
    sm = [0.0] + [cfg.smoothing_mm / s for s in spacing[1:]]
    smooth = ndi.gaussian_filter(arr, sm) if cfg.smoothing_mm > 0 else arr
    slots = body_slots(fit.profile, cfg, fit.axis.step_mm)
    masks = segment_bodies(smooth, fit.axis, fit.profile, slots, fit.mid_slice, spacing[0], cfg)
    warnings: list[str] = []
    kept, rejected = _plausible(masks, cfg)
    if rejected:
        logger.info("series %s: %d candidate bodies rejected as implausible", series_uid or "?", rejected)
    if not kept:
        return _empty(image, series_uid, fit, grid, ["no plausible vertebral body found along the column"])

    gaps = [_junction_gap_mm(kept[i], kept[i + 1], fit) for i in range(len(kept) - 1)] + [None]
    med_h = float(np.median([b.height_mm for b in kept]))
    facts = [_facts(b, fit, grid, g, med_h) for b, g in zip(kept, gaps, strict=True)]
    lab = label_bodies(facts, cfg, anchor)
    warnings.extend(lab.warnings)
    last = lab.sacrum_index if lab.sacrum_index is not None else len(kept) - 1
    keep_idx = list(range(last + 1))
    if last + 1 < len(kept):
        logger.debug("dropping %d sacral/coccygeal segments below S1", len(kept) - last - 1)

    work_labels = np.zeros(arr.shape, dtype=np.uint16)
    for n, i in enumerate(keep_idx, start=1):
        kept[i].paste(work_labels, n)
    labels = grid.labels_to_input(work_labels)
    vertebrae = _describe(
        labels,
        image,
        [kept[i] for i in keep_idx],
        [lab.levels[i] for i in keep_idx],
        [lab.confidence[i] for i in keep_idx],
        lab.sacrum_index,
        grid,
        warnings,
    )
    axis_lps = _axis_lps(fit, grid)
    logger.info(
        "series %s: %d vertebral bodies (%s) in %.2f s",
        series_uid or "?",
        len(vertebrae),
        lab.method,
        time.perf_counter() - t_start,
    )
    return SegmentationResult(
        labels=image.with_array(labels),
        vertebrae=tuple(vertebrae),
        series_uid=series_uid,
        sacrum_found=lab.sacrum_index is not None and lab.levels[lab.sacrum_index] is Level.S1,
        labelling_method=lab.method,
        warnings=tuple(warnings),
        column_axis_lps=axis_lps,
    )


def _plausible(masks: list[BodyMask | None], cfg: SegmentationConfig) -> tuple[list[BodyMask], int]:
    """Keep bodies whose size is that of a vertebral body; overlapping duplicates keep the better one."""
    kept: list[BodyMask] = []
    rejected = 0
    vox = None
    for m in masks:
        if m is None:
            rejected += 1
            continue
        if vox is None:
            vox = 1.0
        volume = float(m.area_mm2.sum()) * (m.width_mm / max(len(m.area_mm2), 1))
        ok = (
            cfg.body_min_height_mm <= m.height_mm <= cfg.body_max_height_mm
            and cfg.body_depth_mm[0] <= m.depth_mm <= cfg.body_depth_mm[1]
            and m.width_mm >= cfg.body_min_width_mm
            and volume >= cfg.min_volume_mm3
        )
        if not ok:
            logger.debug(
                "rejected body candidate at t=%.0f: height %.0f depth %.0f width %.0f volume %.0f mm3",
                m.slot.t_centre,
                m.height_mm,
                m.depth_mm,
                m.width_mm,
                volume,
            )
            rejected += 1
            continue
        kept.append(m)
    return kept, rejected


def _junction_gap_mm(upper: BodyMask, lower: BodyMask, fit: ColumnFit) -> float | None:
    """Distance (mm) between two consecutive bodies' mid-sagittal contours along the line joining their centres.

    The contours stop at the marrow/cortex boundary, so this is the disc space: several mm for a mobile disc,
    about the cortex thickness for a fused (sacral) junction.
    """
    if upper.contour_rc is None or lower.contour_rc is None:
        return None
    pitch = np.asarray(fit.axis.pitch_mm)
    pa, pb = upper.contour_rc * pitch, lower.contour_rc * pitch
    a, b = pa.mean(axis=0), pb.mean(axis=0)
    length = float(np.hypot(*(b - a)))
    if length < 4.0:
        return None
    u = (b - a) / length
    ra = _ray_exit(pa - a, u)
    rb = _ray_exit(pb - b, -u)
    if ra is None or rb is None:
        return None
    return float(max(0.0, length - ra - rb))


def _ray_exit(poly: np.ndarray, u: np.ndarray) -> float | None:
    """Distance from the origin to where the ray along ``u`` leaves the closed polygon ``poly`` (N, 2)."""
    q = np.roll(poly, -1, axis=0)
    e = q - poly
    denom = u[0] * e[:, 1] - u[1] * e[:, 0]
    ok = np.abs(denom) > 1e-12
    t = np.where(ok, (poly[:, 0] * e[:, 1] - poly[:, 1] * e[:, 0]) / np.where(ok, denom, 1.0), -1.0)
    s = np.where(ok, (poly[:, 0] * u[1] - poly[:, 1] * u[0]) / np.where(ok, denom, 1.0), -1.0)
    hit = ok & (t >= 0) & (s >= 0) & (s <= 1)
    return float(t[hit].max()) if np.any(hit) else None


def _facts(
    b: BodyMask, fit: ColumnFit, grid: WorkingGrid, gap_below: float | None = None, median_height_mm: float = 0.0
) -> BodyFacts:
    angle = _wall_angle(b, fit) + _row_axis_tilt_deg(grid)
    s0, r0, c0, _, _, _ = b.bbox
    com = np.array(ndi.center_of_mass(b.mask)) + np.array([s0, r0, c0])
    z = float(grid.image.index_to_lps(com)[2])
    segs = list(fit.profile.segments)
    below = None
    below_energy = None
    k = segs.index(b.slot.segment) if b.slot.segment in segs else -1
    if 0 <= k < len(segs) - 1 and segs[k + 1].kind == "disc":
        below = segs[k + 1].length * fit.axis.step_mm
        below_energy = fit.profile.disc_energy_mm(segs[k + 1])
    cut = b.bbox[4] >= grid.image.shape[1] - 1
    # a body half as tall again as the others has swallowed the next segment without a disc between: fused
    merged = median_height_mm > 0 and b.height_mm >= 1.5 * median_height_mm
    return BodyFacts(
        angle, b.depth_mm, b.height_mm, z, below, below_energy, gap_below, cut, merged or _bone_continues_below(b, fit)
    )


def _row_axis_tilt_deg(grid: WorkingGrid) -> float:
    """Angle (degrees) of the working rows from the patient's head->feet axis, + towards posterior: the
    image-space wall angle plus this is the tilt relative to the patient (oblique sagittal planning)."""
    row = grid.image.axes_lps[1]
    return float(np.degrees(np.arctan2(row[1], -row[2])))


def _bone_continues_below(b: BodyMask, fit: ColumnFit) -> bool:
    """The column partition ran on past the bottom of this body's contour with marrow-like rows and no disc:
    the bone continues (fused sacral segments), as below S1."""
    if b.contour_rc is None or fit.profile.raw_fraction is None:
        return False
    t_c, _ = fit.axis.to_local(b.contour_rc[:, 0], b.contour_rc[:, 1], b.slot.t_centre)
    t_end = float(np.max(t_c))
    seg = b.slot.segment
    extra = (seg.t1 - t_end) * fit.axis.step_mm
    if extra < 0.4 * b.height_mm:
        return False
    rows = fit.profile.raw_fraction[int(np.ceil(t_end)) : seg.t1]
    rows = rows[np.isfinite(rows)]
    return bool(rows.size and float(np.mean(rows >= 0.5)) >= 0.8)


def _wall_angle(b: BodyMask, fit: ColumnFit) -> float:
    """Direction of the body's posterior wall on the mid-sagittal slab, degrees from head->feet (+ = leaning
    backwards going down): a robust (Theil-Sen) line through the canal->bone edge points found on the body's
    central rows. The wall is the straightest, best-contrasted side of a vertebral body on every sequence."""
    prof = fit.profile
    raw = prof.raw_wall_d_mm if prof.raw_wall_d_mm is not None else prof.wall_d_mm
    c0, c1 = b.slot.core_t if b.slot.core_t is not None else (b.slot.segment.t0, b.slot.segment.t1)
    n = c1 - c0
    t = np.arange(int(c0 + 0.2 * n), max(int(c0 + 0.2 * n) + 2, int(c1 - 0.2 * n)))
    t = t[(t >= 0) & (t < raw.size)]
    if t.size < 3:
        return b.axis_angle_deg
    r, c = fit.axis.index_of(t.astype(float), raw[t])
    y, x = r * fit.axis.pitch_mm[0], c * fit.axis.pitch_mm[1]
    i, j = np.triu_indices(t.size, k=1)
    dy = y[j] - y[i]
    ok = np.abs(dy) > 1e-6
    if not np.any(ok):
        return b.axis_angle_deg
    slope = float(np.median((x[j] - x[i])[ok] / dy[ok]))
    return float(np.degrees(np.arctan(slope)))


def _describe(
    labels: np.ndarray,
    image: Volume,
    bodies: list[BodyMask],
    levels: list[Level | None],
    confidence: list[float],
    sacrum_index: int | None,
    grid: WorkingGrid,
    warnings: list[str],
) -> list[VertebraSeg]:
    out: list[VertebraSeg] = []
    objects = ndi.find_objects(labels)
    heights = np.array([b.height_mm for b in bodies])
    med_h = float(np.median(heights)) if heights.size else 0.0
    for n, (b, lv, conf) in enumerate(zip(bodies, levels, confidence, strict=True), start=1):
        sl = objects[n - 1] if n - 1 < len(objects) else None
        if sl is None:
            continue
        sub = labels[sl] == n
        count = int(sub.sum())
        com = np.array(ndi.center_of_mass(sub)) + np.array([s.start for s in sl])
        c3 = image.index_to_lps(com)
        centroid = (float(c3[0]), float(c3[1]), float(c3[2]))
        bbox = (sl[0].start, sl[1].start, sl[2].start, sl[0].stop, sl[1].stop, sl[2].stop)
        quality = float(np.clip(1.0 - b.boundary_cost / 1.5, 0.0, 1.0))
        s0, r0, c0, s1, r1, c1 = b.bbox
        cut = r0 <= 0 or r1 >= grid.image.shape[1]  # head-feet: a left-right cut is normal for thick slabs
        if cut:
            quality *= 0.5
            warnings.append(
                f"body {n} ({lv.value if lv else 'level unknown'}) touches the edge of the field of "
                "view; it may be incomplete"
            )
        if med_h > 0 and b.height_mm < 0.6 * med_h:
            warnings.append(
                f"body {n} ({lv.value if lv else 'level unknown'}) is much lower than its neighbours "
                f"({b.height_mm:.0f} mm vs {med_h:.0f} mm): collapsed or partly segmented"
            )
        out.append(
            VertebraSeg(
                label=n,
                level=lv,
                level_confidence=float(conf),
                centroid_lps_mm=centroid,
                mid_slice=int(np.clip(b.mid_slice, 0, image.shape[0] - 1)),
                bbox=bbox,
                quality=quality,
                volume_mm3=count * image.voxel_volume_mm3,
                is_sacrum=(sacrum_index is not None and n - 1 == sacrum_index and lv is Level.S1),
            )
        )
    return out


def _axis_lps(fit: ColumnFit, grid: WorkingGrid, step_mm: float = 5.0) -> tuple[tuple[float, float, float], ...]:
    """Canal axis polyline (every ``step_mm``) on the mid-sagittal plane, LPS mm."""
    k = max(1, int(round(step_mm / fit.axis.step_mm)))
    pts = fit.axis.points_mm[::k]
    rows = pts[:, 0] / fit.axis.pitch_mm[0]
    cols = pts[:, 1] / fit.axis.pitch_mm[1]
    idx = np.stack([np.full(rows.shape, fit.mid_slice), rows, cols], axis=1)
    lps = grid.image.index_to_lps(idx)
    return tuple((float(p[0]), float(p[1]), float(p[2])) for p in lps)


def _empty(
    image: Volume, series_uid: str, fit: ColumnFit, grid: WorkingGrid, warnings: list[str]
) -> SegmentationResult:
    return SegmentationResult(
        labels=image.with_array(np.zeros(image.shape, dtype=np.uint16)),
        vertebrae=(),
        series_uid=series_uid,
        sacrum_found=False,
        labelling_method="no bodies",
        warnings=tuple(warnings),
        column_axis_lps=_axis_lps(fit, grid),
    )
