"""Sagittal canal diameter behind normal bodies on a fluid-sensitive image, and its expected value per level."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from pipeline.morphometry.config import MorphometryConfig
from pipeline.morphometry.reference import body_name, column_positions
from pipeline.morphometry.section import Body, Plane, Section, Wall, measure_posterior_wall
from pipeline.volume import Volume


def canal_diameter(
    canal: np.ndarray,
    lab_slice: np.ndarray,
    label: int,
    sec: Section,
    wall: Wall,
    plane: Plane,
    cfg: MorphometryConfig,
) -> float | str:
    """Sagittal canal diameter (mm) behind the body, along the body's AP axis, on a fluid-sensitive image.

    The canal runs from the posterior wall of the body through the CSF to the first dark structure behind it
    (ligamentum flavum, lamina cortex) for ``canal_dark_min_mm``: darker than ``canal_dark_marrow_fraction`` of
    the body's marrow (on T2 the marrow is bright and the ligament only a little darker than the cord) and than
    ``canal_dark_csf_fraction`` of the CSF peak (on STIR the suppressed marrow is darker than the ligament);
    cord and roots inside are tolerated. On T2 the epidural fat is bright and counts as canal (the bony canal is
    measured); on STIR it is dark, so the thecal sac is measured (2-3 mm smaller).
    CSF must be present (peak at least ``csf_min_contrast_ratio`` times the body's marrow) and begin within
    ``canal_start_tolerance_mm`` of the wall.
    """
    body = ndimage.binary_erosion(lab_slice == label, iterations=2)
    if body.sum() < 10:
        body = lab_slice == label
    marrow = float(np.median(canal[body]))
    step = 0.25
    t = np.arange(0.0, cfg.canal_search_mm + step / 2, step)
    pts = wall.wall_mid[None, :] - t[:, None] * sec.u[None, :]
    idx = pts / plane.spacing_rc
    prof = ndimage.map_coordinates(canal.astype(float), idx.T, order=1, mode="constant", cval=np.nan)
    inside = np.isfinite(prof)
    if not inside.all():
        n_in = int(np.argmin(inside)) if inside[0] else 0
        prof, t = prof[:n_in], t[:n_in]
        if t.size < 8:
            return "the canal behind the body is outside the image"
    prof = ndimage.gaussian_filter1d(prof, sigma=0.25 / step, mode="nearest")
    peak = float(prof.max())
    if not marrow > 0 or peak < cfg.csf_min_contrast_ratio * marrow:
        ratio = peak / marrow if marrow > 0 else float("nan")
        return (
            f"no CSF signal behind the body (peak / marrow {ratio:.2f} < {cfg.csf_min_contrast_ratio:g}); "
            "the canal image may not be fluid-sensitive"
        )
    bright = prof >= 0.5 * (marrow + peak)
    first = int(np.argmax(bright))
    if t[first] > cfg.canal_start_tolerance_mm:
        return f"the CSF column does not start at the posterior wall (first CSF {t[first]:.1f} mm behind it)"
    dark = prof < max(cfg.canal_dark_marrow_fraction * marrow, cfg.canal_dark_csf_fraction * peak)
    run = max(1, round(cfg.canal_dark_min_mm / step))
    end = None
    for i in range(first + 1, len(prof) - run + 1):
        if dark[i] and dark[i : i + run].all():
            # The edge is the half-way crossing between the canal contents just before and the dark tissue.
            lo = float(prof[i : i + run].min())
            hi = float(prof[max(first, i - run * 2) : i].max())
            half = 0.5 * (lo + hi)
            j = i
            while j > first and prof[j - 1] < half:
                j -= 1
            p0, p1 = prof[j - 1], prof[j]
            end = float(t[j - 1] + (p0 - half) / (p0 - p1) * step) if p0 != p1 else float(t[j])
            break
    if end is None:
        return f"the posterior boundary of the canal was not found within {t[-1]:.0f} mm of the wall"
    if end < cfg.canal_min_mm:
        return f"canal behind the body too narrow to measure ({end:.1f} mm)"
    return end


def canal_diameters(
    bodies: list[Body],
    normal: set[int],
    lab_arr: np.ndarray,
    canal_image: Volume | None,
    plane: Plane,
    cfg: MorphometryConfig,
) -> dict[int, float | str]:
    """Canal AP diameter behind each normal body (index -> mm, or the reason it was not measured)."""
    out: dict[int, float | str] = {}
    if canal_image is None:
        return out
    arr = np.asarray(canal_image.array)
    for b in bodies:
        if b.index not in normal:
            continue
        wall = measure_posterior_wall(b.mid, cfg)
        if isinstance(wall, str):
            out[b.index] = wall
            continue
        s = b.mid.slice_index
        out[b.index] = canal_diameter(arr[s], lab_arr[s], b.seg.label, b.mid, wall, plane, cfg)
    return out


def expected_canal(
    b: Body, canal: dict[int, float | str], bodies: list[Body], cfg: MorphometryConfig
) -> tuple[float, tuple[str, ...]] | str:
    pos = column_positions(bodies)
    p = pos[b.index]
    by_index = {x.index: x for x in bodies}
    ok = {j: d for j, d in canal.items() if isinstance(d, float) and j != b.index}
    near = [j for j in ok if abs(pos[j] - p) <= cfg.max_reference_gap_levels]
    if not near:
        reasons = sorted({d for d in canal.values() if isinstance(d, str)})
        why = f" ({reasons[0]})" if reasons else ""
        return (
            f"expected canal diameter not measurable behind any normal body within "
            f"{cfg.max_reference_gap_levels} levels{why}"
        )
    above = sorted((j for j in near if pos[j] < p), key=lambda j: p - pos[j])
    below = sorted((j for j in near if pos[j] > p), key=lambda j: pos[j] - p)
    if above and below:
        a, c = above[0], below[0]
        w = (p - pos[a]) / (pos[c] - pos[a])
        return (1.0 - w) * ok[a] + w * ok[c], (body_name(by_index[a]), body_name(by_index[c]))
    j = (above or below)[0]
    return ok[j], (body_name(by_index[j]),)
