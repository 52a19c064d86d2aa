"""Per-body segmentation: a star-shaped contour on every sagittal slice, then 3-D consistency.

For each body found along the column (:mod:`pipeline.segment.discs`) the marrow signal of its core gives a
*marrow likelihood* ``p`` for every pixel (its own level, so an oedematous or sclerotic body is handled like
any other). On each sagittal slice, rays from the body centre look for the radius where ``p`` falls
(marrow inside, not-marrow just outside); a circular dynamic programme over the rays picks one radius per
ray with bounded jumps between neighbouring rays, so a gap in the cortex cannot let the contour leak into
soft tissue. Rays are confined to the body's slot: between the centres of the two neighbouring disc
spaces, in front of the posterior wall (which keeps pedicles out) and no deeper than ``body_depth_mm``.
The manual convention includes the cortical rim; ``rim_mm`` moves the contour outwards by that much.

Across slices the body is followed laterally from its mid-sagittal slice until its section becomes
implausible (too small against the central sections, or no longer marrow).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from skimage.draw import polygon as draw_polygon

from pipeline.segment.column import ColumnAxis
from pipeline.segment.config import SegmentationConfig
from pipeline.segment.discs import ColumnProfile, Segment

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class BodySlot:
    """Where one body may lie, in straightened coordinates (``t`` samples, ``d`` mm)."""

    index: int  # position in the column, 0 = most cranial body found
    segment: Segment
    t_top: float  # centre of the disc space above (or the segment top)
    t_bottom: float
    wall_d_mm: float  # posterior wall
    anterior_d_mm: float  # anterior wall estimated on the mid slab
    marrow_level: float
    marrow_sigma: float
    core_t: tuple[int, int] | None = None  # rows [t0, t1) of the marrow run inside the segment

    @property
    def t_centre(self) -> float:
        if self.core_t is not None:
            return 0.5 * (self.core_t[0] + self.core_t[1] - 1)
        return 0.5 * (self.segment.t0 + self.segment.t1 - 1)

    @property
    def d_centre(self) -> float:
        return 0.5 * (self.wall_d_mm + self.anterior_d_mm)


@dataclass(frozen=True, eq=False)
class BodyMask:
    """A segmented body on the working grid.

    Attributes
    ----------
    slot : BodySlot
    mask : numpy.ndarray
        Boolean crop of the working grid, shape ``(s1 - s0, r1 - r0, c1 - c0)``.
    bbox : tuple of int
        ``(s0, r0, c0, s1, r1, c1)`` of the crop on the working grid (stop exclusive).
    mid_slice : int
        Working slice index of the mid-sagittal plane used for this body.
    area_mm2 : numpy.ndarray
        Section area per slice of the crop.
    boundary_cost : float
        Mean contour cost on the central slices (0 = crisp marrow edge all round, 2 = none).
    height_mm, depth_mm : float
        Head-feet and antero-posterior extent of the mid-sagittal section through its centre.
    width_mm : float
        Left-right extent (number of slices times slice pitch).
    contour_rc : numpy.ndarray
        Shape ``(K, 2)``: mid-sagittal contour vertices ``(row, col)`` on the working grid.
    """

    slot: BodySlot
    mask: np.ndarray
    bbox: tuple[int, int, int, int, int, int]
    mid_slice: int
    area_mm2: np.ndarray
    boundary_cost: float
    height_mm: float = 0.0
    depth_mm: float = 0.0
    width_mm: float = 0.0
    contour_rc: np.ndarray | None = None
    axis_angle_deg: float = 0.0  # direction of the posterior wall (0 = head->feet, + = leaning backwards)

    def paste(self, out: np.ndarray, value: int) -> None:
        """Write ``value`` into ``out`` (working-grid array) where this body is, without overwriting others."""
        s0, r0, c0, s1, r1, c1 = self.bbox
        view = out[s0:s1, r0:r1, c0:c1]
        view[self.mask & (view == 0)] = value


def body_slots(profile: ColumnProfile, cfg: SegmentationConfig, step_mm: float) -> list[BodySlot]:
    """One slot per body segment of ``profile`` with its limits and marrow statistics."""
    segs = list(profile.segments)
    straight = profile.straight
    d = profile.d_mm
    raw: list[tuple[int, Segment, float, float, float, float, float, float, tuple[int, int] | None]] = []
    bodies = [i for i, s in enumerate(segs) if s.kind == "body"]
    for n, i in enumerate(bodies):
        s = segs[i]
        above = segs[i - 1] if i > 0 and segs[i - 1].kind == "disc" else None
        below = segs[i + 1] if i + 1 < len(segs) and segs[i + 1].kind == "disc" else None
        margin = 8.0 / step_mm
        t_top = above.centre if above is not None else s.t0 - margin
        t_bot = below.centre if below is not None else s.t1 - 1 + margin
        wall = float(np.median(profile.wall_d_mm[s.t0 : s.t1]))
        core_t = _marrow_run(profile, s)
        c0, c1 = core_t if core_t is not None else (s.t0, s.t1)
        # marrow statistics from the core (central third in t, 4..20 mm in front of the wall)
        ta = int(c0 + (c1 - c0) / 3.0)
        tb = max(ta + 1, int(c1 - (c1 - c0) / 3.0))
        core = straight[ta:tb, profile.d_index(wall + 4.0) : profile.d_index(wall + 20.0)]
        vals = core[np.isfinite(core)]
        if vals.size < 10:
            continue
        level = float(np.median(vals))
        sigma = 1.4826 * float(np.median(np.abs(vals - level)))
        sigma = float(np.clip(sigma, 0.5 * profile.marrow_sigma, 0.15 * abs(level) + 1e-3))
        anterior = _anterior_wall(straight[ta:tb], d, wall, level, sigma, cfg)
        raw.append((n, s, float(t_top), float(t_bot), wall, anterior, level, sigma, core_t))
    depths = [a - w for (_, _, _, _, w, a, _, _, _) in raw if np.isfinite(a)]
    typical = float(np.median(depths)) if depths else float(np.mean(cfg.body_depth_mm))
    out = []
    for n, s, t_top, t_bot, wall, anterior, level, sigma, core_t in raw:
        if not np.isfinite(anterior):
            anterior = wall + typical
        out.append(BodySlot(n, s, t_top, t_bot, wall, anterior, level, sigma, core_t))
    return out


def _marrow_run(profile: ColumnProfile, seg: Segment) -> tuple[int, int] | None:
    """Longest run of rows with a mostly-marrow band (raw marrow fraction >= 0.5) inside ``seg``.

    The partition places a thin (collapsed) body by its duration priors when the disc-edge evidence covers it;
    its own marrow rows say where it really is.
    """
    f = profile.raw_fraction
    if f is None:
        return None
    part = np.nan_to_num(f[seg.t0 : seg.t1], nan=0.0) >= 0.5
    best, start, best_run = 0, None, None
    for i, v in enumerate(np.r_[part, False]):
        if v and start is None:
            start = i
        elif not v and start is not None:
            if i - start > best:
                best, best_run = i - start, (seg.t0 + start, seg.t0 + i)
            start = None
    if best_run is None or best * profile.step_mm < 3.0:
        return None
    return best_run


def _anterior_wall(
    rows: np.ndarray, d: np.ndarray, wall: float, level: float, sigma: float, cfg: SegmentationConfig
) -> float:
    """Median over rows of the first 3-mm run of non-marrow pixels in front of the posterior wall (NaN if the
    rows never leave marrow within ``body_depth_mm``)."""
    lo, hi = cfg.body_depth_mm
    start = int(np.searchsorted(d, wall + lo * 0.5))
    stop = int(np.searchsorted(d, wall + hi))
    seg = ndi.gaussian_filter1d(np.nan_to_num(rows[:, start:stop], nan=0.0), 1.0, axis=1)
    ok = np.abs(seg - level) < cfg.marrow_k_sigma * 1.5 * sigma
    run = 3
    ends = []
    for r in ok:
        conv = np.convolve((~r).astype(int), np.ones(run, int), mode="valid")
        hit = np.nonzero(conv == run)[0]
        if hit.size:
            ends.append(d[start + hit[0]])
    if len(ends) < max(1, rows.shape[0] // 2):
        return float("nan")
    depth = float(np.clip(float(np.median(ends)) - wall, lo, hi))
    return wall + depth


def _marrow_likelihood(values: np.ndarray, level: float, sigma: float, cfg: SegmentationConfig) -> np.ndarray:
    """Soft "inside the body" likelihood: marrow, or brighter marrow (veins, fat islands, oedema), but not
    the dark cortex. Asymmetric because the cortex is dark on every sequence, while inclusions vary.
    Half-likelihood at ``level - max(k sigma, marrow_dark_rel * level)`` and ``level + k_bright sigma``."""
    dark = max(cfg.marrow_k_sigma * sigma, cfg.marrow_dark_rel * abs(level))
    bright = max(cfg.marrow_bright_k_sigma * sigma, cfg.marrow_dark_rel * abs(level))
    z = np.where(values < level, (level - values) / dark, (values - level) / bright)
    return 1.0 / (1.0 + z**4)


def _inside_likelihood(
    values: np.ndarray,
    valley: np.ndarray,
    level: float,
    sigma: float,
    cfg: SegmentationConfig,
    reach: np.ndarray | None = None,
    dark_zone: np.ndarray | None = None,
) -> np.ndarray:
    """Per ray sample ``(K, J)``: likelihood of being inside the body, bounded by its cortex.

    Marrow-like values count as inside (:func:`_marrow_likelihood`). Values brighter than marrow (oedema
    under a fractured endplate, a basivertebral vein, a haemangioma) also count as inside as long as the ray
    has not yet crossed a dark cortical line on its way out from the body centre: the body is what its
    cortex encloses, whatever its marrow signal. Beyond the first cortex line, bright means disc, fat or
    fluid. ``inclusion_bright_rel`` sets how much brighter than marrow an inclusion may be (half-likelihood
    at ``level * (1 + inclusion_bright_rel)``). The cortex line counts as crossed by the running maximum of
    the dark-line strength ``valley`` (soft, ``[0, 1]``, lines at least ``inclusion_line_mm`` long), and an
    inclusion is only accepted where a clear cortex line (``>= inclusion_valley``) lies further out on the
    same ray, or, within ``dark_zone`` (shape ``(K, J)`` bool: above or below the body, between its posterior
    and anterior walls, where the discs are), a run of tissue darker than marrow (by the cortex threshold of
    :func:`_marrow_likelihood`) at least ``inclusion_line_mm`` long (an endplate against a desiccated disc
    shows no line of its own), or within ``reach`` (shape ``(K, J)`` bool: inside the neighbouring slice's
    contour, so that a band found on the mid-sagittal slice is followed laterally where partial volume blurs
    the endplate).
    """
    p = _marrow_likelihood(values, level, sigma, cfg)
    if cfg.inclusion_bright_rel <= 0:
        return p
    wide = max(cfg.inclusion_bright_rel * abs(level), 1e-6)
    z = np.clip(values - level, 0.0, None) / wide
    incl = np.where(values > level, 1.0 / (1.0 + z**4), 0.0)
    # a cortical line spans ``inclusion_line_mm`` along the ray; a noise dip does not
    n = max(1, int(round(cfg.inclusion_line_mm / cfg.contour_step_mm)))
    line = ndi.minimum_filter1d(valley, n, axis=-1, mode="nearest", origin=(n - 1) // 2) if n > 1 else valley
    crossed = np.clip(np.maximum.accumulate(line, axis=-1) / max(cfg.inclusion_valley, 1e-6), 0.0, 1.0)
    # what bounds an inclusion further out: a clear cortex line, or, in the disc zone, tissue darker than
    # marrow for as long as a line (an endplate against a dark desiccated disc shows no line of its own)
    dark = max(cfg.marrow_k_sigma * sigma, cfg.marrow_dark_rel * abs(level))
    darkness = (level - values) / dark
    dark_run = ndi.minimum_filter1d(darkness, n, axis=-1, mode="nearest", origin=(n - 1) // 2) if n > 1 else darkness
    strong = line >= cfg.inclusion_valley
    if dark_zone is not None:
        strong = strong | ((dark_run >= 1.0) & dark_zone)
    ahead = np.flip(np.maximum.accumulate(np.flip(strong, axis=-1), axis=-1), axis=-1)
    if reach is not None:
        ahead = ahead | reach
    return np.maximum(p, np.where(ahead, (1.0 - crossed) * incl, 0.0))


def _circular_dp(cost: np.ndarray, max_jump: int, penalty: float) -> np.ndarray:
    """Radius index per ray minimising ``sum(cost) + penalty * sum|jumps|`` around a closed contour.

    ``cost`` has shape ``(batch, n_rays, n_radii)``; the batch is solved at once. Closure: two turns are
    unrolled and the second is kept (its start has forgotten the arbitrary start of the first).
    """
    nb, K, J = cost.shape
    D = max_jump
    pen = penalty * np.abs(np.arange(-D, D + 1, dtype=float))
    unrolled = np.concatenate([cost, cost], axis=1)
    acc = unrolled[:, 0, :].astype(float)
    back = np.zeros((nb, 2 * K, J), dtype=np.int16)
    padded = np.full((nb, J + 2 * D), 1e9)
    win = np.lib.stride_tricks.sliding_window_view(padded, 2 * D + 1, axis=1)  # (nb, J, 2D+1), a view
    for k in range(1, 2 * K):
        padded[:, D : D + J] = acc
        tot = win + pen
        arg = np.argmin(tot, axis=2)
        acc = np.take_along_axis(tot, arg[..., None], axis=2)[..., 0] + unrolled[:, k, :]
        back[:, k, :] = arg - D  # source index = j + (arg - D)
    path = np.zeros((nb, 2 * K), dtype=int)
    path[:, -1] = np.argmin(acc, axis=1)
    rows = np.arange(nb)
    for k in range(2 * K - 1, 0, -1):
        path[:, k - 1] = path[:, k] + back[rows, k, path[:, k]]
    return path[:, K:]


@dataclass
class _Track:
    """Mutable per-body state while sweeping slices away from the mid-sagittal slice."""

    slot: BodySlot
    centre: np.ndarray  # (row, col) working index
    level: float
    sigma: float
    prev_r: np.ndarray | None = None
    alive: bool = True
    container: np.ndarray | None = None  # 2-D bool: lateral sections must lie inside (dilated mid section)
    footprint: dict[int, tuple[float, float]] | None = None  # slice -> allowed (d_lo, d_hi) mm, axial section
    d_bounds: tuple[float, float] | None = None  # of the slice being solved
    depth_mm: float | None = None  # antero-posterior depth of the mid-sagittal section at mid-height
    inclusion: bool = False  # the mid-sagittal section holds a bright inclusion (oedema band): follow it


def _ray_geometry(
    track: _Track,
    axis: ColumnAxis,
    profile: ColumnProfile,
    shape: tuple[int, int],
    theta: np.ndarray,
    radii: np.ndarray,
    cfg: SegmentationConfig,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ray sample positions (rows, cols), shape ``(K, J)``, and where the slot allows the body to be."""
    pr, pc = axis.pitch_mm
    slot = track.slot
    rows = track.centre[0] + np.cos(theta)[:, None] * radii[None, :] / pr
    cols = track.centre[1] + np.sin(theta)[:, None] * radii[None, :] / pc
    t_loc, d_loc = axis.to_local(rows, cols, slot.t_centre)
    wall_t = np.interp(t_loc, np.arange(profile.wall_d_mm.size), profile.wall_d_mm)
    wall_here = np.minimum(wall_t, slot.wall_d_mm + 3.0)
    if track.d_bounds is not None:
        tol = cfg.footprint_tolerance_mm
        d_ok = (d_loc >= track.d_bounds[0] - tol) & (d_loc <= track.d_bounds[1] + tol)
    else:
        d_ok = np.ones(d_loc.shape, dtype=bool)
    allowed = d_ok & (
        (t_loc >= slot.t_top)
        & (t_loc <= slot.t_bottom)
        & (d_loc >= wall_here - 1.0)
        & (d_loc <= min(slot.wall_d_mm + cfg.body_depth_mm[1], slot.anterior_d_mm + cfg.anterior_margin_mm))
        & (rows >= 0)
        & (rows <= shape[0] - 1)
        & (cols >= 0)
        & (cols <= shape[1] - 1)
    )
    return rows, cols, allowed


def _cortex_valley(vals: np.ndarray, level: float, sigma: float, step: float, cfg: SegmentationConfig) -> np.ndarray:
    """Normalised dark-line strength along each ray (the cortex is a thin line darker than both sides).

    ``min(I(r - h), I(r + h)) - I(r)`` over ``h`` up to ``cortex_halfwidth_mm``, divided by
    ``max(marrow_dark_rel * level, marrow_k_sigma * sigma)`` (texture is not cortex) and clipped to
    ``[0, 1]``; shape as ``vals`` ``(K, J)``.
    """
    K, J = vals.shape
    hmax = max(1, int(round(cfg.cortex_halfwidth_mm / step)))
    pad = np.pad(vals, ((0, 0), (hmax, hmax)), mode="edge")
    best = np.zeros_like(vals)
    for h in range(1, hmax + 1):
        lo = pad[:, hmax - h : hmax - h + J]
        hi = pad[:, hmax + h : hmax + h + J]
        np.maximum(best, np.minimum(lo, hi) - vals, out=best)
    scale = max(cfg.marrow_dark_rel * abs(level), cfg.marrow_k_sigma * sigma, 1e-6)
    return np.clip(best / scale, 0.0, 1.0)


def _contour_costs(
    p: np.ndarray, valley: np.ndarray, allowed: np.ndarray, step: float, cfg: SegmentationConfig
) -> np.ndarray:
    """Cost of putting the (inner cortex) boundary at each radius, shape ``(K, J)``.

    Marrow just inside, no marrow or a cortex line just outside, and a charge for every non-marrow
    pixel and cortex line crossed on the way out from the centre (the first cortex is the body's own).
    """
    K, J = p.shape
    w_in = max(1, int(round(cfg.contour_inside_mm / step)))
    w_out = max(1, int(round(cfg.contour_outside_mm / step)))
    cs = np.concatenate([np.zeros((K, 1)), np.cumsum(1.0 - p, axis=1)], axis=1)
    cp = np.concatenate([np.zeros((K, 1)), np.cumsum(p, axis=1)], axis=1)
    cv = np.concatenate([np.zeros((K, 1)), np.cumsum(valley, axis=1)], axis=1)
    j = np.arange(J)
    a0 = np.maximum(0, j + 1 - w_in)
    inside = (cs[:, j + 1] - cs[:, a0]) / (j + 1 - a0)
    b1 = np.minimum(J, j + 1 + w_out)
    n_out = np.maximum(1, b1 - j - 1)
    outside_marrow = np.where(b1 > j + 1, (cp[:, b1] - cp[:, j + 1]) / n_out, 0.0)
    vmax = np.zeros((K, J))
    for k in range(1, w_out + 1):
        vmax[:, : J - k] = np.maximum(vmax[:, : J - k], valley[:, k:])
    outside = np.minimum(outside_marrow, 1.0 - vmax)
    crossed = (cs[:, j + 1] * cfg.contour_crossing_per_mm + cv[:, j + 1] * cfg.contour_valley_crossing_per_mm) * step
    cost = inside + outside + crossed
    return np.where(allowed, cost, 2.0 + crossed)


def _max_jump(slot: BodySlot, step_mm: float, cfg: SegmentationConfig) -> int:
    """Largest radius change between neighbouring rays, in contour steps.

    ``contour_max_jump_mm`` suits a body about as tall as deep. On a flat (collapsed) body the radius along rays
    near the antero-posterior direction grows like ``half_height / sin(angle)``: the allowed jump grows with
    the square of ``body_typical_min_mm`` / segment height (at most 4x), and the jump penalty per step shrinks
    by the same factor, so that the contour can reach the anterior and posterior walls instead of cutting a
    thin body short.
    """
    height_mm = max(slot.segment.length * step_mm, 1e-6)
    scale = float(np.clip((cfg.body_typical_min_mm / height_mm) ** 2, 1.0, 4.0))
    return max(1, int(round(scale * cfg.contour_max_jump_mm / cfg.contour_step_mm)))


def _solve_slice(
    img: np.ndarray,
    tracks: list[_Track],
    axis: ColumnAxis,
    profile: ColumnProfile,
    theta: np.ndarray,
    radii: np.ndarray,
    cfg: SegmentationConfig,
) -> list[dict]:
    """Contours of all ``tracks`` on one sagittal slice image (batched circular DP)."""
    step = cfg.contour_step_mm
    costs, ps, geo = [], [], []
    for tr in tracks:
        rows, cols, allowed = _ray_geometry(tr, axis, profile, img.shape, theta, radii, cfg)
        if tr.container is not None:
            allowed &= ndi.map_coordinates(tr.container, [rows, cols], order=0, mode="constant", cval=0).astype(bool)
        vals = ndi.map_coordinates(img, [rows, cols], order=1, mode="nearest")
        valley = _cortex_valley(vals, tr.level, tr.sigma, step, cfg)
        reach = None
        if tr.prev_r is not None and tr.inclusion:
            reach = radii[None, :] <= tr.prev_r[:, None] + cfg.contour_step_mm
        _, d_loc = axis.to_local(rows, cols, tr.slot.t_centre)
        dark_zone = (d_loc >= tr.slot.wall_d_mm) & (d_loc <= tr.slot.anterior_d_mm)  # discs, not ligament / muscle
        p = np.where(allowed, _inside_likelihood(vals, valley, tr.level, tr.sigma, cfg, reach, dark_zone), 0.0)
        pm = np.where(allowed, _marrow_likelihood(vals, tr.level, tr.sigma, cfg), 0.0)
        c = _contour_costs(p, valley, allowed, step, cfg)
        if tr.prev_r is not None:
            c = c + cfg.contour_prior_per_mm * np.abs(radii[None, :] - tr.prev_r[:, None])
        costs.append(c)
        ps.append((p, pm))
        geo.append(vals)
    jumps = [_max_jump(tr.slot, profile.step_mm, cfg) for tr in tracks]
    base_jump = max(1, int(round(cfg.contour_max_jump_mm / step)))
    cost_arr = np.stack(costs)
    path = np.zeros(cost_arr.shape[:2], dtype=int)
    for jump in sorted(set(jumps)):
        pick = [i for i, v in enumerate(jumps) if v == jump]
        # the same flatness also makes the steep radius changes normal: the penalty per step shrinks alike
        penalty = cfg.contour_jump_penalty * base_jump / jump
        path[pick] = _circular_dp(cost_arr[pick], jump, penalty)
    out = []
    for i, tr in enumerate(tracks):
        j = path[i]
        r = radii[j]
        inside = radii[None, :] <= r[:, None]
        p, pm = ps[i]
        interior_vals = geo[i][inside & (p > 0.5)]
        r_out = r + _cortex_thickness(geo[i], j, tr.level, tr.sigma, step, cfg) + cfg.rim_mm
        out.append(
            {
                "r": r,
                "r_out": r_out,
                "cost": float(np.mean(costs[i][np.arange(theta.size), j])),
                "inside_p": float(np.mean(p[inside])),
                "inclusion_fraction": float(np.mean((p - pm)[inside] > 0.5)),
                "area": float(0.5 * np.sum(r_out**2) * (2 * np.pi / theta.size)),
                "level": float(np.median(interior_vals)) if interior_vals.size > 20 else tr.level,
            }
        )
    return out


def _cortex_thickness(
    vals: np.ndarray, j: np.ndarray, level: float, sigma: float, step: float, cfg: SegmentationConfig
) -> np.ndarray:
    """Per ray, the thickness (mm) of the dark cortical band just outside the marrow boundary ``j``.

    The manual convention includes the cortex: from the marrow edge, the darkest sample within
    ``cortex_max_mm`` is the cortex; its outer edge is where the signal recovers half-way to marrow, or, when
    the outside is dark too (muscle, ligament), just beyond the darkest sample. ``cortex_fraction`` of that
    thickness is added (1 = the whole cortex). Smoothed over neighbouring rays.
    """
    K, J = vals.shape
    n = max(1, int(round(cfg.cortex_max_mm / step)))
    dark = max(cfg.marrow_k_sigma * sigma, cfg.marrow_dark_rel * abs(level))
    out = np.zeros(K)
    for k in range(K):
        a = int(j[k])
        seg = vals[k, a : min(J, a + n + 1)]
        if seg.size < 2:
            continue
        m = int(np.argmin(seg))
        if seg[m] > level - 0.5 * dark:
            continue  # no cortex visible on this ray
        half = 0.5 * (seg[m] + level)
        after = np.nonzero(seg[m:] >= half)[0]
        edge = m + int(after[0]) if after.size else min(seg.size - 1, m + 1)
        out[k] = cfg.cortex_fraction * edge * step
    # circular median over 7 rays
    pad = np.r_[out[-3:], out, out[:3]]
    win = np.lib.stride_tricks.sliding_window_view(pad, 7)
    return np.median(win, axis=1)


def _container(
    contour: dict, theta: np.ndarray, pitch: tuple[float, float], shape: tuple[int, int], cfg: SegmentationConfig
) -> np.ndarray:
    """The mid-sagittal section dilated by ``lateral_growth_mm``: lateral sections stay inside it (a body is
    widest at its mid-sagittal plane; the margin allows for rotation and scoliosis)."""
    r = contour["r_out"] + cfg.lateral_growth_mm
    yy = contour["centre"][0] + np.cos(theta) * r / pitch[0]
    xx = contour["centre"][1] + np.sin(theta) * r / pitch[1]
    out = np.zeros(shape, dtype=np.uint8)
    rr, cc = draw_polygon(yy, xx, shape=shape)
    out[rr, cc] = 1
    return out


def _axial_footprints(
    smooth: np.ndarray, axis: ColumnAxis, tracks: list[_Track], mid: int, slice_mm: float, cfg: SegmentationConfig
) -> list[dict[int, tuple[float, float]] | None]:
    """Each body's axial section at mid-height (slices x anterior distance), segmented like a sagittal one.

    Returns per track a mapping ``slice -> (d_lo, d_hi)`` mm: the antero-posterior chord of the section on
    that sagittal slice, or ``None`` when no section was found. Slices absent from the mapping lie outside
    the body (this fixes the left-right extent: a body is an ellipse in the axial plane, flanked by psoas).
    """
    ns = smooth.shape[0]
    K = cfg.contour_rays
    step = cfg.contour_step_mm
    J = max(4, int(round(cfg.contour_max_radius_mm / step)))
    radii = (np.arange(J) + 1) * step
    theta = np.linspace(0.0, 2 * np.pi, K, endpoint=False)
    half = cfg.footprint_band_mm
    costs, geoms = [], []
    for tr in tracks:
        slot = tr.slot
        t_loc, d_loc = axis.to_local(np.array(tr.centre[0]), np.array(tr.centre[1]), slot.t_centre)
        t_c, d_c = float(t_loc), float(d_loc)
        d = np.arange(slot.wall_d_mm - 15.0, slot.wall_d_mm + cfg.body_depth_mm[1] + 5.0, 1.0)
        ts = t_c + np.arange(-half, half + 1e-9, axis.step_mm) / axis.step_mm
        tt, dd = np.meshgrid(ts, d, indexing="ij")
        rr, cc = axis.index_of(tt, dd)
        A = np.stack(
            [ndi.map_coordinates(smooth[k], [rr, cc], order=1, mode="nearest").mean(axis=0) for k in range(ns)]
        )  # (ns, nd)
        x = np.sin(theta)[:, None] * radii[None, :]  # mm, left-right
        y = d_c + np.cos(theta)[:, None] * radii[None, :]  # mm, anterior distance
        s_idx = mid + x / slice_mm
        d_idx = y - d[0]
        allowed = (
            (y >= slot.wall_d_mm - 1.0)
            & (y <= slot.wall_d_mm + cfg.body_depth_mm[1])
            & (np.abs(x) <= cfg.body_max_width_mm / 2.0)
            & (s_idx >= -0.5)
            & (s_idx <= ns - 0.5)
        )
        vals = ndi.map_coordinates(A, [np.clip(s_idx, 0, ns - 1), d_idx], order=1, mode="nearest")
        valley = _cortex_valley(vals, tr.level, tr.sigma, step, cfg)
        r_ell = None
        reach = None
        if tr.depth_mm is not None:
            # anatomical prior: the axial section is roughly an ellipse, width ~ width_to_depth x depth; a bright
            # inclusion (oedema band) may fill it even where partial volume across slices blurs the cortex
            b = tr.depth_mm / 2.0
            a = cfg.body_width_to_depth * b
            r_ell = 1.0 / np.sqrt((np.sin(theta) / a) ** 2 + (np.cos(theta) / b) ** 2)
            reach = radii[None, :] <= r_ell[:, None] if tr.inclusion else None
        p = np.where(allowed, _inside_likelihood(vals, valley, tr.level, tr.sigma, cfg, reach), 0.0)
        cost = _contour_costs(p, valley, allowed, step, cfg)
        if r_ell is not None and cfg.footprint_shape_weight > 0:
            cost = cost + cfg.footprint_shape_weight * np.abs(radii[None, :] - r_ell[:, None]) / r_ell[:, None]
        costs.append(cost)
        geoms.append((d_c, vals))
    if not tracks:
        return []
    max_jump = max(1, int(round(cfg.contour_max_jump_mm / step)))
    path = _circular_dp(np.stack(costs), max_jump, cfg.contour_jump_penalty)
    out: list[dict[int, tuple[float, float]] | None] = []
    res_d = 0.25
    for i, tr in enumerate(tracks):
        d_c, vals = geoms[i]
        r = radii[path[i]] + _cortex_thickness(vals, path[i], tr.level, tr.sigma, step, cfg) + cfg.rim_mm
        xs = mid + np.sin(theta) * r / slice_mm  # slice index
        ys = np.cos(theta) * r / res_d  # d offset from centre in res_d units
        off = float(np.ceil(np.abs(ys).max())) + 1
        # a slice belongs to the body when the section reaches ``footprint_slice_cover`` into its thickness
        # (partial volume at the lateral ends of thick slices); sub-positions every 0.1 slice
        sub = 10
        rr, cc = draw_polygon((xs + 0.5) * sub, ys + off, shape=(ns * sub, int(2 * off) + 2))
        fp: dict[int, tuple[float, float]] = {}
        for sl in range(ns):
            pick = (rr >= sl * sub) & (rr < (sl + 1) * sub)
            if not np.any(pick):
                continue
            covered = len(np.unique(rr[pick])) / sub
            centre = rr[pick] == sl * sub + sub // 2
            if covered < cfg.footprint_slice_cover and not np.any(centre):
                continue
            cols = cc[pick] if not np.any(centre) else cc[pick][centre]
            fp[sl] = (d_c + (cols.min() - off) * res_d, d_c + (cols.max() - off) * res_d)
        out.append(fp if fp else None)
    return out


def _core_statistics(img: np.ndarray, tr: _Track, pitch: tuple[float, float], cfg: SegmentationConfig) -> None:
    """Marrow level and spread from a disc around the body centre on one slice (radius ``core_radius_mm``,
    smaller for a low body so that a collapsed body's statistics come from its own marrow)."""
    seg_mm = tr.slot.segment.length * 1.0
    rad = float(np.clip(0.3 * seg_mm, 2.0, cfg.core_radius_mm))
    hr, hc = int(np.ceil(rad / pitch[0])), int(np.ceil(rad / pitch[1]))
    r0, c0 = int(round(tr.centre[0])), int(round(tr.centre[1]))
    yy, xx = np.mgrid[-hr : hr + 1, -hc : hc + 1]
    inside = (yy * pitch[0]) ** 2 + (xx * pitch[1]) ** 2 <= rad**2
    rr, cc = yy[inside] + r0, xx[inside] + c0
    ok = (rr >= 0) & (rr < img.shape[0]) & (cc >= 0) & (cc < img.shape[1])
    vals = img[rr[ok], cc[ok]]
    if vals.size < 10:
        return
    level = float(np.median(vals))
    sigma = 1.4826 * float(np.median(np.abs(vals - level)))
    tr.level = level
    tr.sigma = max(sigma, cfg.marrow_min_rel_sigma * abs(level), 1e-3)


def _polygon_centroid(tr: _Track, r: np.ndarray, theta: np.ndarray, pitch: tuple[float, float]) -> np.ndarray:
    y = tr.centre[0] + np.cos(theta) * r / pitch[0]
    x = tr.centre[1] + np.sin(theta) * r / pitch[1]
    w = r**2  # area weights of the triangle fan
    return np.array(
        [
            np.sum(w * (tr.centre[0] + (y - tr.centre[0]) * 2 / 3)) / np.sum(w),
            np.sum(w * (tr.centre[1] + (x - tr.centre[1]) * 2 / 3)) / np.sum(w),
        ]
    )


def segment_bodies(
    smooth: np.ndarray,
    axis: ColumnAxis,
    profile: ColumnProfile,
    slots: list[BodySlot],
    mid_slice: float,
    slice_mm: float,
    cfg: SegmentationConfig,
) -> list[BodyMask | None]:
    """Segment every body of ``slots`` on the sagittal slices it occupies (see module docstring).

    Parameters
    ----------
    smooth : numpy.ndarray
        Normalised, lightly smoothed working image, shape ``(slices, rows, cols)``.
    mid_slice : float
        Working slice index of the mid-sagittal plane (column centre).
    slice_mm : float
        Slice pitch.

    Returns
    -------
    list
        One :class:`BodyMask` per slot (``None`` where no plausible body section exists at the mid slice).
    """
    ns, nr, nc = smooth.shape
    pitch = axis.pitch_mm
    K = cfg.contour_rays
    step = cfg.contour_step_mm
    J = max(4, int(round(cfg.contour_max_radius_mm / step)))
    radii = (np.arange(J) + 1) * step
    theta = np.linspace(0.0, 2 * np.pi, K, endpoint=False)
    mid = int(np.clip(round(mid_slice), 0, ns - 1))
    tracks = []
    for slot in slots:
        rc, cc = axis.index_of(np.array(slot.t_centre), np.array(slot.d_centre))
        tracks.append(_Track(slot, np.array([float(rc), float(cc)]), slot.marrow_level, slot.marrow_sigma))
    # marrow statistics on the mid slice itself (the slab average underestimates the spread)
    for tr in tracks:
        _core_statistics(smooth[mid], tr, pitch, cfg)
    # mid slice: solve, re-centre on the section's centroid, solve again
    res = _solve_slice(smooth[mid], tracks, axis, profile, theta, radii, cfg)
    for tr, r in zip(tracks, res, strict=True):
        tr.centre = _polygon_centroid(tr, r["r"], theta, pitch)
    res = _solve_slice(smooth[mid], tracks, axis, profile, theta, radii, cfg)
    contours: list[dict[int, dict]] = [{} for _ in tracks]
    ref_area = []
    for i, (tr, r) in enumerate(zip(tracks, res, strict=True)):
        ok = r["inside_p"] >= cfg.lateral_min_marrow_fraction
        tr.alive = ok
        tr.inclusion = r["inclusion_fraction"] >= cfg.inclusion_min_fraction
        if tr.inclusion:
            share = 100 * r["inclusion_fraction"]
            logger.debug("body %d: bright inclusion %.0f %% of the mid-sagittal section", i, share)
        ref_area.append(r["area"])
        if ok:
            contours[i][mid] = {**r, "centre": tr.centre.copy()}
    half = cfg.body_max_width_mm / 2.0
    for i, tr in enumerate(tracks):
        if mid in contours[i]:
            tr.container = _container(contours[i][mid], theta, pitch, (nr, nc), cfg)
    for i, tr in enumerate(tracks):
        if mid in contours[i]:
            r = contours[i][mid]["r_out"]
            quarter = K // 4
            tr.depth_mm = float(r[quarter] + r[3 * quarter])  # sin(theta) = +-1: along the columns (AP)
    found = [i for i, tr in enumerate(tracks) if mid in contours[i]]
    for i, fp in zip(
        found, _axial_footprints(smooth, axis, [tracks[i] for i in found], mid, slice_mm, cfg), strict=True
    ):
        tracks[i].footprint = fp
    start = [(tr.centre.copy(), tr.level, res[i]["r"]) for i, tr in enumerate(tracks)]
    start_sigma = [tr.sigma for tr in tracks]
    for direction in (-1, 1):
        for i, tr in enumerate(tracks):
            tr.centre, tr.level, tr.prev_r = start[i][0].copy(), start[i][1], start[i][2]
            tr.alive = mid in contours[i]
        s = mid + direction
        while 0 <= s < ns and abs(s - mid) * slice_mm <= half:
            for tr in tracks:
                if tr.alive and tr.footprint is not None:
                    tr.d_bounds = tr.footprint.get(s)
                    if tr.d_bounds is None:
                        tr.alive = False  # outside the body's axial section
                        logger.debug("body %d: slice %d outside the axial footprint", tr.slot.index, s)
            live = [i for i, tr in enumerate(tracks) if tr.alive]
            if not live:
                break
            for i in live:
                # partial volume darkens (or brightens) a lateral section as a whole: follow its own marrow level
                # when it stays within ``lateral_level_drift`` of the mid-sagittal one
                tr = tracks[i]
                saved = (tr.level, tr.sigma)
                _core_statistics(smooth[s], tr, pitch, cfg)
                if abs(tr.level - start[i][1]) > cfg.lateral_level_drift * abs(start[i][1]):
                    tr.level, tr.sigma = saved
                tr.sigma = max(tr.sigma, start_sigma[i])
            res_s = _solve_slice(smooth[s], [tracks[i] for i in live], axis, profile, theta, radii, cfg)
            for i, r in zip(live, res_s, strict=True):
                tr = tracks[i]
                ok = (
                    r["area"] >= cfg.lateral_min_area_ratio * ref_area[i]
                    and r["inside_p"] >= cfg.lateral_min_marrow_fraction
                )
                if not ok:
                    logger.debug(
                        "body %d: stop at slice %d (area %.0f vs %.0f, marrow %.2f)",
                        tr.slot.index,
                        s,
                        r["area"],
                        ref_area[i],
                        r["inside_p"],
                    )
                    tr.alive = False
                    continue
                contours[i][s] = {**r, "centre": tr.centre.copy()}
                tr.prev_r = r["r"]
                tr.centre = _polygon_centroid(tr, r["r"], theta, pitch)
            s += direction
    out: list[BodyMask | None] = []
    for i, tr in enumerate(tracks):
        if mid not in contours[i]:
            out.append(None)
            continue
        out.append(_rasterise(tr.slot, contours[i], theta, pitch, smooth.shape, mid, slice_mm, cfg))
    return out


def _tilt_deg(y_mm: np.ndarray, x_mm: np.ndarray) -> float:
    """Tilt of a body section: the side of its minimum-area bounding rectangle closest to head-feet, in
    degrees from head->feet (+ = the body leans backwards going down). Vertebral bodies are box-like, so
    this is their own axis, independent of how the canal curve was smoothed."""
    pts = np.stack([y_mm - y_mm.mean(), x_mm - x_mm.mean()], axis=1)
    best_area, best_a = np.inf, 0.0
    for a in np.deg2rad(np.arange(0.0, 90.0, 1.0)):
        rot = pts @ np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        area = float(np.ptp(rot[:, 0]) * np.ptp(rot[:, 1]))
        if area < best_area:
            best_area, best_a = area, a
    # the rectangle's sides point along (cos a, sin a) and (-sin a, cos a) in (y, x); take the one nearest +y
    sides = [np.array([np.cos(best_a), np.sin(best_a)]), np.array([-np.sin(best_a), np.cos(best_a)])]
    side = max(sides, key=lambda v: abs(v[0]))
    if side[0] < 0:
        side = -side
    return float(np.degrees(np.arctan2(side[1], side[0])))


def _rasterise(
    slot: BodySlot,
    contours: dict[int, dict],
    theta: np.ndarray,
    pitch: tuple[float, float],
    shape: tuple[int, int, int],
    mid: int,
    slice_mm: float,
    cfg: SegmentationConfig,
) -> BodyMask:
    slices = sorted(contours)
    polys = {}
    for s in slices:
        c = contours[s]
        r = np.maximum(c["r_out"], cfg.contour_step_mm)
        polys[s] = (c["centre"][0] + np.cos(theta) * r / pitch[0], c["centre"][1] + np.sin(theta) * r / pitch[1])
    r0 = max(0, int(np.floor(min(p[0].min() for p in polys.values()))))
    r1 = min(shape[1], int(np.ceil(max(p[0].max() for p in polys.values()))) + 1)
    c0 = max(0, int(np.floor(min(p[1].min() for p in polys.values()))))
    c1 = min(shape[2], int(np.ceil(max(p[1].max() for p in polys.values()))) + 1)
    crop = np.zeros((len(slices), r1 - r0, c1 - c0), dtype=bool)
    for k, s in enumerate(slices):
        yy, xx = polys[s]
        rr, cc = draw_polygon(yy - r0, xx - c0, shape=crop.shape[1:])
        crop[k, rr, cc] = True
    areas = crop.sum(axis=(1, 2)) * pitch[0] * pitch[1]
    central = [s for s in slices if abs(s - mid) * slice_mm <= 6.0] or [mid]
    cost = float(np.mean([contours[s]["cost"] for s in central]))
    # the body's own mid-sagittal slice: centre of its left-right extent (scoliosis moves it off the canal's)
    own_mid = int(round(0.5 * (slices[0] + slices[-1])))
    rm = np.maximum(contours[mid]["r_out"], cfg.contour_step_mm)
    K = theta.size
    q = K // 4
    height = float(rm[0] + rm[2 * q])
    depth = float(rm[q] + rm[3 * q])
    yy, xx = polys[mid]
    angle = _tilt_deg(yy * pitch[0], xx * pitch[1])
    return BodyMask(
        slot,
        crop,
        (slices[0], r0, c0, slices[-1] + 1, r1, c1),
        own_mid,
        areas,
        cost,
        height,
        depth,
        len(slices) * slice_mm,
        np.stack([yy, xx], axis=1),
        angle,
    )
