"""Disc spaces along the column: a 1-D partition of the straightened column into bodies and discs.

On the straightened mid-sagittal slab (``t`` along the canal, ``d`` anterior from the canal centre), the
posterior wall of the bodies is the strongest canal -> bone edge. In a band in front of it, each row
``t`` gets a *marrow fraction* ``f(t)``: the share of band pixels whose intensity lies within
``marrow_k_sigma`` robust standard deviations of the local marrow level (the mode of the band
intensities, which bodies dominate). Rows through bodies have ``f`` near 1, rows through discs and
endplates near 0, whatever the contrast (discs are brighter on T2/STIR, darker on T1; endplates dark on
all).

A semi-Markov dynamic programme then labels every row as *outside* (before / after the column),
*body* or *disc*, alternating, with duration priors in mm: bodies shorter than ``body_typical_min_mm``
are penalised (but possible: a collapsed body), discs longer than ``disc_typical_max_mm`` are penalised.
A collapsed body therefore wins over "one long disc" because two discs plus a thin body would make an
implausibly long disc space.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from pipeline.segment.column import ColumnAxis
from pipeline.segment.config import SegmentationConfig

logger = logging.getLogger(__name__)

D_MIN_MM = -30.0
D_MAX_MM = 80.0


@dataclass(frozen=True)
class Segment:
    """A run of rows ``[t0, t1)`` of the straightened column (arc-length samples)."""

    kind: str  # "body" or "disc"
    t0: int
    t1: int

    @property
    def length(self) -> int:
        return self.t1 - self.t0

    @property
    def centre(self) -> float:
        return 0.5 * (self.t0 + self.t1 - 1)


@dataclass(frozen=True, eq=False)
class ColumnProfile:
    """Straightened mid-slab and what was measured on it.

    Attributes
    ----------
    straight : numpy.ndarray
        Shape ``(T, D)``: the mid-slab sampled on the ``(t, d)`` grid (NaN outside the image).
    d_mm : numpy.ndarray
        Shape ``(D,)``: anterior distances of the columns of ``straight``.
    wall_d_mm : numpy.ndarray
        Shape ``(T,)``: anterior distance of the bodies' posterior wall per row.
    marrow_level, marrow_sigma : float
        Marrow intensity mode in the band and its robust spread (normalised intensity units).
    local_level : numpy.ndarray
        Shape ``(T,)``: marrow level followed along the column (running median), for bias and the sacrum.
    fraction : numpy.ndarray
        Shape ``(T,)``: marrow fraction ``f(t)`` in ``[0, 1]`` (NaN where the band leaves the image).
    segments : tuple of Segment
        The partition: bodies and discs alternating, head -> feet (outside rows omitted).
    cost : float
        DP cost per row of the partition (lower is a cleaner column).
    """

    straight: np.ndarray
    d_mm: np.ndarray
    wall_d_mm: np.ndarray
    marrow_level: float
    marrow_sigma: float
    local_level: np.ndarray
    fraction: np.ndarray
    segments: tuple[Segment, ...]
    cost: float
    raw_fraction: np.ndarray | None = None
    step_mm: float = 1.0
    band_profile: np.ndarray | None = None  # (T,) median band intensity (smoothed along d only)
    raw_wall_d_mm: np.ndarray | None = None  # (T,) posterior wall per row before median filtering

    def disc_energy_mm(self, seg: Segment) -> float:
        """Disc signal integrated over the disc space: sum over its rows (+-2 mm) of the band's median
        relative deviation from marrow, ``|I - marrow| / marrow``, in mm.

        Proportional to thickness x contrast: a mobile disc (dark endplates plus nucleus over 6-15 mm) scores
        several mm, a rudimentary sacral disc (one thin line) about one.
        """
        if self.band_profile is None:
            return float(seg.length * self.step_mm)
        pad = int(round(2.0 / self.step_mm))
        lo, hi = max(0, seg.t0 - pad), min(self.band_profile.size, seg.t1 + pad)
        dev = np.abs(self.band_profile[lo:hi] - self.local_level[lo:hi]) / max(abs(self.marrow_level), 1e-6)
        dev = np.clip(np.nan_to_num(dev, nan=0.0) - 0.05, 0.0, None)  # ignore texture-level deviations
        return float(np.sum(dev)) * self.step_mm

    @property
    def bodies(self) -> list[Segment]:
        return [s for s in self.segments if s.kind == "body"]

    @property
    def discs(self) -> list[Segment]:
        return [s for s in self.segments if s.kind == "disc"]

    def d_index(self, d: float) -> int:
        return int(np.clip(round(d - self.d_mm[0]), 0, self.d_mm.size - 1))


def posterior_wall(
    straight: np.ndarray,
    d_mm: np.ndarray,
    cfg: SegmentationConfig,
    bright_canal: bool,
    step_mm: float,
    filtered: bool = True,
) -> np.ndarray:
    """Anterior distance (mm) of the canal -> bone edge per row (median-filtered along the column unless
    ``filtered`` is false)."""
    img = np.nan_to_num(straight, nan=0.0)
    sm = ndi.gaussian_filter(img, (1.0 / step_mm, 1.0))
    grad = np.gradient(sm, axis=1)
    if not bright_canal:
        grad = -grad
    lo = int(np.searchsorted(d_mm, cfg.wall_search_mm[0]))
    hi = int(np.searchsorted(d_mm, cfg.wall_search_mm[1]))
    sub = grad[:, lo:hi]
    wall = d_mm[lo + np.argmin(sub, axis=1)]  # strongest bright -> dark step going anteriorly
    if not filtered:
        return wall
    size = max(3, int(round(15.0 / step_mm)) | 1)
    return ndi.median_filter(wall, size=size, mode="nearest")


def band_samples(straight: np.ndarray, d_mm: np.ndarray, wall: np.ndarray, band: tuple[float, float]) -> np.ndarray:
    """Shape ``(T, B)``: intensities ``band`` mm in front of the posterior wall on each row."""
    nb = max(2, int(round(band[1] - band[0])))
    offs = np.linspace(band[0], band[1], nb)
    d_rows = wall[:, None] + offs[None, :]
    idx = np.clip(np.round(d_rows - d_mm[0]).astype(int), 0, d_mm.size - 1)
    return np.take_along_axis(straight, idx, axis=1)


def marrow_mode(values: np.ndarray) -> tuple[float, float]:
    """Mode of an intensity sample and a robust spread around it (``1.4826 * MAD`` of the core)."""
    v = values[np.isfinite(values)]
    if v.size < 10:
        return (float(np.median(v)) if v.size else 0.0), 0.1
    lo, hi = np.percentile(v, [1, 99])
    hist, edges = np.histogram(v, bins=128, range=(lo, hi + 1e-6))
    hist = ndi.gaussian_filter1d(hist.astype(float), 2.0)
    mode = float(0.5 * (edges[np.argmax(hist)] + edges[np.argmax(hist) + 1]))
    spread = 0.15 * (hi - lo)
    core = v[np.abs(v - mode) < spread]
    sigma = 1.4826 * float(np.median(np.abs(core - mode))) if core.size else spread / 3
    return mode, max(sigma, 1e-3 * max(abs(mode), 1e-3))


def marrow_fraction(band: np.ndarray, level: np.ndarray, sigma: float, k: float) -> np.ndarray:
    """Share of each row's band pixels within ``k * sigma`` of ``level`` (NaN rows -> NaN)."""
    ok = np.isfinite(band)
    close = (np.abs(band - level[:, None]) < k * sigma) & ok
    n = ok.sum(axis=1)
    out = np.full(band.shape[0], np.nan)
    good = n >= 0.6 * band.shape[1]
    out[good] = close[good].sum(axis=1) / n[good]
    return out


def partition(f: np.ndarray, cfg: SegmentationConfig, step_mm: float) -> tuple[tuple[Segment, ...], float]:
    """Label rows as outside / body / disc (semi-Markov DP); returns the body and disc segments and cost.

    ``f`` may contain NaN (outside the image), treated as 0.5 (no evidence).
    """
    f = np.where(np.isfinite(f), f, 0.5)
    T = f.size
    cb = np.r_[0.0, np.cumsum(1.0 - f)]
    cg = np.r_[0.0, np.cumsum(f)]
    mm = 1.0 / step_mm
    bmin = max(1, int(round(cfg.body_height_mm[0] * mm)))
    bmax = max(bmin, int(round(cfg.body_height_mm[1] * mm)))
    gmin = max(1, int(round(cfg.disc_height_mm[0] * mm)))
    gmax = max(gmin, int(round(cfg.disc_height_mm[1] * mm)))
    b_typ = cfg.body_typical_min_mm * mm
    g_typ = cfg.disc_typical_max_mm * mm
    kb = cfg.body_short_penalty_per_mm / mm
    kg = cfg.disc_long_penalty_per_mm / mm
    c_out = cfg.outside_cost
    seg_cost = cfg.segment_cost

    INF = 1e18
    best = {"B": np.full(T + 1, INF), "G": np.full(T + 1, INF)}
    back = {"B": np.zeros(T + 1, dtype=np.int64), "G": np.zeros(T + 1, dtype=np.int64)}
    prev_kind = {"B": np.zeros(T + 1, dtype=np.int8), "G": np.zeros(T + 1, dtype=np.int8)}  # 0 outside, 1 other
    start_cost = c_out * np.arange(T + 1)  # rows [0, s) are "outside before the column"

    for t in range(1, T + 1):
        for kind, lo, hi, cum, other in (("B", bmin, bmax, cb, "G"), ("G", gmin, gmax, cg, "B")):
            if t == T:  # a last segment cut by the image bottom may be short
                s = np.arange(max(0, t - hi), t)
            elif t < lo:  # so may a first segment cut by the image top
                s = np.array([0])
            else:
                s = np.arange(max(0, t - hi), t - lo + 1)
            if s.size == 0:
                continue
            L = t - s
            emis = cum[t] - cum[s]
            if kind == "B":
                dur = np.where((s == 0) | (t == T), 0.0, kb * np.maximum(0.0, b_typ - L))
            else:
                dur = kg * np.maximum(0.0, L - g_typ)
            base = emis + dur + seg_cost
            from_other = best[other][s]
            from_out = start_cost[s]
            use_out = from_out <= from_other
            total = base + np.minimum(from_other, from_out)
            j = int(np.argmin(total))
            best[kind][t] = total[j]
            back[kind][t] = s[j]
            prev_kind[kind][t] = 0 if use_out[j] else 1
    end_cost = c_out * (T - np.arange(T + 1))
    tails = {k: best[k] + end_cost for k in ("B", "G")}
    kind = "B" if tails["B"].min() <= tails["G"].min() else "G"
    t_end = int(np.argmin(tails[kind]))
    total_cost = float(tails[kind][t_end])
    if total_cost >= INF / 2:
        return (), float("inf")
    segs: list[Segment] = []
    t = t_end
    while t > 0:
        start = int(back[kind][t])
        segs.append(Segment("body" if kind == "B" else "disc", start, t))
        if prev_kind[kind][t] == 0:
            break
        kind = "G" if kind == "B" else "B"
        t = start
    segs.reverse()
    return tuple(segs), total_cost / max(T, 1)


def canal_support(ridge: np.ndarray, axis: ColumnAxis, cfg: SegmentationConfig) -> np.ndarray:
    """Per row of the axis: is the canal really there? (tube-likeness near the axis >= a share of its median)."""
    d = np.arange(-cfg.canal_halfwidth_mm[1], cfg.canal_halfwidth_mm[1] + 0.5, 1.0)
    vals = np.nan_to_num(axis.straighten(ridge, d), nan=0.0).max(axis=1)
    vals = ndi.median_filter(vals, size=max(3, int(round(10.0 / axis.step_mm)) | 1), mode="nearest")
    ref = float(np.median(vals[vals > 0])) if np.any(vals > 0) else 0.0
    return vals >= cfg.canal_min_support * ref


def regularise(profile: ColumnProfile, cfg: SegmentationConfig) -> tuple[Segment, ...]:
    """Make the partition consistent along the column (neighbouring bodies have similar heights).

    - A body taller than ``long_body_ratio`` x the median body height hides a disc (two bodies merged
      because the disc was faint): it is split at its weakest row if both halves are plausible.
    - Two bodies separated by a disc with hardly any evidence (its mean ``f`` close to theirs) whose union
      is not taller than the median are one body split by an internal feature: they are merged.
    - A short "body" between two "discs" that together are no longer than one normal disc space is a disc
      nucleus with marrow-like signal between two endplate lines: the run becomes one disc.
    A collapsed body is kept: it is bounded by two discs of normal height, so its run is much longer than a
    disc space, and merging it with a neighbour would make an implausibly tall body.
    """
    f = profile.fraction
    step_mm = profile.step_mm
    segs = list(profile.segments)
    heights = [s.length for s in segs if s.kind == "body" and s.t0 > 0 and s.t1 < f.size]
    if len(heights) < 3:
        return tuple(segs)
    med = float(np.median(heights))
    ff = np.where(np.isfinite(f), f, 0.5)
    sm = ndi.gaussian_filter1d(ff, 1.0 / step_mm)
    gap = max(1, int(round(cfg.disc_height_mm[0] / step_mm)))
    changed = True
    while changed:
        changed = False
        for i, s in enumerate(segs):
            if s.kind != "body" or s.length <= cfg.long_body_ratio * med:
                continue
            lo = s.t0 + int(0.3 * med)
            hi = s.t1 - int(0.3 * med)
            if hi <= lo:
                continue
            k = lo + int(np.argmin(sm[lo:hi]))
            if sm[k] > float(np.mean(ff[s.t0 : s.t1])) - cfg.split_min_dip:
                continue
            a, b = max(s.t0 + 1, k - gap), min(s.t1 - 1, k + gap + 1)
            segs[i : i + 1] = [Segment("body", s.t0, a), Segment("disc", a, b), Segment("body", b, s.t1)]
            changed = True
            break
    merged = True
    while merged:
        merged = False
        for i in range(1, len(segs) - 1):
            g, up, down = segs[i], segs[i - 1], segs[i + 1]
            if g.kind != "disc" or up.kind != "body" or down.kind != "body":
                continue
            if down.t1 - up.t0 > med:
                continue
            f_disc = float(np.mean(ff[g.t0 : g.t1]))
            f_bodies = float(np.mean(ff[up.t0 : down.t1]))
            if f_bodies - f_disc < cfg.split_min_dip:
                segs[i - 1 : i + 2] = [Segment("body", up.t0, down.t1)]
                merged = True
                break
    # a short "body" inside a disc space (a disc nucleus with marrow-like signal between two endplate
    # lines): its two "discs" together are no longer than one normal disc space -> one disc
    discs_len = [g.length for g in segs if g.kind == "disc" and g.t0 > 0 and g.t1 < f.size]
    if discs_len:
        med_disc = float(np.median(discs_len))
        merged = True
        while merged:
            merged = False
            for i in range(1, len(segs) - 1):
                mid_seg, up, down = segs[i], segs[i - 1], segs[i + 1]
                if mid_seg.kind != "body" or up.kind != "disc" or down.kind != "disc":
                    continue
                if mid_seg.length >= cfg.short_body_ratio * med:
                    continue
                if up.length + down.length <= cfg.disc_space_ratio * med_disc:
                    segs[i - 1 : i + 2] = [Segment("disc", up.t0, down.t1)]
                    merged = True
                    break
        # a body cut in two by an internal line (basivertebral vein, Schmorl node): two halves across a
        # thin "disc" that together make one body of plausible height
        merged = True
        while merged:
            merged = False
            for i in range(1, len(segs) - 1):
                g, up, down = segs[i], segs[i - 1], segs[i + 1]
                if g.kind != "disc" or up.kind != "body" or down.kind != "body":
                    continue
                if (
                    g.length <= cfg.thin_disc_ratio * med_disc
                    and max(up.length, down.length) < cfg.half_body_ratio * med
                    and down.t1 - up.t0 <= cfg.long_body_ratio * med
                ):
                    segs[i - 1 : i + 2] = [Segment("body", up.t0, down.t1)]
                    merged = True
                    break
        segs = _relocate_thin_bodies(segs, profile, cfg, med_disc)
    return tuple(segs)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``[t0, t1)`` runs of true values of a 1-D boolean array."""
    edges = np.diff(np.r_[0, mask.astype(np.int8), 0])
    return list(zip(np.nonzero(edges == 1)[0].tolist(), np.nonzero(edges == -1)[0].tolist(), strict=True))


def _relocate_thin_bodies(
    segs: list[Segment], profile: ColumnProfile, cfg: SegmentationConfig, med_disc: float
) -> list[Segment]:
    """Re-partition disc spaces that hold a collapsed body the marrow evidence could not show.

    A collapsed body 4-8 mm tall is mostly endplate: after the disc-edge closing its rows look like disc, and
    the duration priors then place a "body" anywhere in the long disc space, often on a disc. Disc *nuclei* are
    the robust cue: rows whose band signal deviates from marrow the way this column's discs do (brighter on
    T2 / STIR, darker on T1), by at least half their typical contrast. Between two bodies that are not mostly
    nucleus, a disc space longer than ``disc_space_ratio`` x the median disc that holds ``n + 1`` separate
    nuclei (each at least ``nucleus_min_mm``) separated by non-nucleus gaps of at least ``thin_body_min_mm``
    (an intranuclear cleft is thinner) holds ``n`` bodies: one per gap, a disc around each nucleus. The number
    of bodies in the span may grow by one at most (the long disc space is the evidence for it), never shrink.
    A body counts as a bound of such a span unless it is mostly nucleus rows without any marrow run of
    ``thin_body_min_mm``. Nothing changes when the column's discs show no consistent nucleus contrast
    (``nucleus_min_contrast``).
    """
    band = profile.band_profile
    if band is None:
        return segs
    step_mm = profile.step_mm
    T = band.size
    dev = (band - profile.local_level) / max(abs(profile.marrow_level), 1e-6)
    dev = np.nan_to_num(dev, nan=0.0)
    centres = []
    for g in segs:
        if g.kind != "disc" or g.t0 == 0 or g.t1 >= T or g.length < 2:
            continue
        q = max(1, g.length // 4)
        centres.append(float(np.median(dev[g.t0 + q : g.t1 - q])) if g.length > 2 * q else float(dev[g.t0]))
    if len(centres) < 3:
        return segs
    typical = float(np.median(centres))
    if abs(typical) < cfg.nucleus_min_contrast:
        return segs
    nucleus = np.sign(typical) * dev >= 0.5 * abs(typical)
    min_nuc = max(1, int(round(cfg.nucleus_min_mm / step_mm)))
    min_gap = max(1, int(round(cfg.thin_body_min_mm / step_mm)))

    raw = profile.raw_fraction if profile.raw_fraction is not None else profile.fraction
    marrow = np.nan_to_num(raw, nan=0.0) >= 0.5

    def anchor(s: Segment) -> bool:
        """A body with its own signal: mostly not nucleus, or holding a marrow run (an oedema band under an
        endplate is as bright as a nucleus, but the rest of its body is marrow)."""
        if s.kind != "body":
            return False
        if float(np.mean(nucleus[s.t0 : s.t1])) < 0.5:
            return True
        return any(r1 - r0 >= min_gap for r0, r1 in _runs(marrow[s.t0 : s.t1]))

    anchors = [i for i, s in enumerate(segs) if anchor(s)]
    out = list(segs)
    for a, b in reversed(list(zip(anchors[:-1], anchors[1:], strict=True))):
        t0, t1 = out[a].t1, out[b].t0
        if (t1 - t0) <= cfg.disc_space_ratio * med_disc:
            continue
        n_bodies = sum(1 for s in out[a + 1 : b] if s.kind == "body")
        runs = [r for r in _runs(nucleus[t0:t1]) if r[1] - r[0] >= min_nuc]
        # gaps between consecutive nuclei that are thick enough to be a body (thin clefts join their disc)
        merged: list[list[int]] = []
        for r0, r1 in runs:
            if merged and r0 - merged[-1][1] < min_gap:
                merged[-1][1] = r1
            else:
                merged.append([r0, r1])
        n_new = len(merged) - 1
        if n_new < 1 or not (n_bodies <= n_new <= n_bodies + 1):
            continue
        new: list[Segment] = []
        start = t0
        for k in range(n_new):
            g0, g1 = t0 + merged[k][1], t0 + merged[k + 1][0]
            new += [Segment("disc", start, g0), Segment("body", g0, g1)]
            start = g1
        new.append(Segment("disc", start, t1))
        old = [(s.kind, s.t0, s.t1) for s in out[a + 1 : b]]
        logger.debug("disc space [%d, %d): %s -> %s (collapsed body between disc nuclei)", t0, t1, old, new)
        out[a + 1 : b] = new
    return out


def column_profile(
    mid: np.ndarray, ridge: np.ndarray, axis: ColumnAxis, cfg: SegmentationConfig, bright_canal: bool
) -> ColumnProfile:
    """Straighten the mid-slab image along ``axis`` and partition it into bodies and discs.

    Rows where the canal fades (below the thecal sac, outside the spine) carry no evidence (``f`` NaN).
    """
    d_mm = np.arange(D_MIN_MM, D_MAX_MM + 0.5, 1.0)
    straight = axis.straighten(mid, d_mm)
    support = canal_support(ridge, axis, cfg)
    raw_wall = posterior_wall(straight, d_mm, cfg, bright_canal, axis.step_mm, filtered=False)
    size = max(3, int(round(15.0 / axis.step_mm)) | 1)
    wall = ndi.median_filter(raw_wall, size=size, mode="nearest")
    # smooth along d only: discs and endplates run across the column and keep their contrast
    smooth = ndi.gaussian_filter1d(np.nan_to_num(straight, nan=0.0), cfg.band_smoothing_mm, axis=1)
    smooth[~np.isfinite(straight)] = np.nan
    band = band_samples(smooth, d_mm, wall, cfg.band_mm)
    level, sigma = marrow_mode(band)
    # follow slow changes of marrow signal (residual bias, fatty sacrum): running median of rows near the mode
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        rowmed = np.nanmedian(np.where(np.abs(band - level) < 3 * cfg.marrow_k_sigma * sigma, band, np.nan), axis=1)
    rowmed = np.where(np.isfinite(rowmed), rowmed, level)
    win = max(3, int(round(60.0 / axis.step_mm)) | 1)
    local = ndi.median_filter(rowmed, size=win, mode="nearest")
    f = marrow_fraction(band, local, sigma, cfg.marrow_k_sigma)
    raw = f.copy()
    raw[~support] = np.nan
    # endplates and disc boundaries: intensity changes along the column (bodies are flat along t)
    grad_t = (
        np.abs(np.gradient(ndi.gaussian_filter1d(np.nan_to_num(smooth, nan=0.0), 0.7 / axis.step_mm, axis=0), axis=0))
        / axis.step_mm
    )
    edge = np.nanmedian(band_samples(grad_t, d_mm, wall, cfg.band_mm), axis=1) / (sigma * cfg.edge_scale_per_mm)
    not_marrow = np.maximum(1.0 - np.nan_to_num(f, nan=0.5), np.clip(edge, 0.0, 1.0))
    # a disc is endplate + disc + endplate: close the gap between its two edges
    w = max(1, int(round(cfg.disc_closing_mm / axis.step_mm)))
    not_marrow = ndi.grey_closing(not_marrow, size=w, mode="nearest")
    body_like = 1.0 - not_marrow
    body_like[~np.isfinite(f) | ~support] = np.nan
    f = body_like
    segs, cost = partition(f, cfg, axis.step_mm)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        band_profile = np.nanmedian(band, axis=1)
    prof = ColumnProfile(
        straight, d_mm, wall, level, sigma, local, f, segs, cost, raw, axis.step_mm, band_profile, raw_wall
    )
    segs = regularise(prof, cfg)
    return ColumnProfile(
        straight, d_mm, wall, level, sigma, local, f, segs, cost, raw, axis.step_mm, band_profile, raw_wall
    )


def column_evidence(profile: ColumnProfile, cfg: SegmentationConfig, step_mm: float, background: float = 0.0) -> float:
    """How much this looks like a vertebral column: sum over plausible bodies of (body f - disc f) contrast.

    Used to choose between canal candidates; a fat plane gives few, poorly separated "bodies". A "marrow"
    level hardly above the ``background`` (air outside the patient, normalised units) scores 0: air in front
    of a skin fat stripe is uniform too.
    """
    if profile.marrow_level < background + cfg.min_marrow_above_background:
        return 0.0
    f = np.where(np.isfinite(profile.fraction), profile.fraction, 0.5)
    segs = profile.segments
    score = 0.0
    for i, s in enumerate(segs):
        if s.kind != "body":
            continue
        length_mm = s.length * step_mm
        if not (cfg.body_typical_min_mm * 0.7 <= length_mm <= cfg.body_height_mm[1]):
            continue
        nb = [segs[j] for j in (i - 1, i + 1) if 0 <= j < len(segs) and segs[j].kind == "disc"]
        if not nb:
            continue
        f_body = float(np.mean(f[s.t0 : s.t1]))
        f_disc = float(np.mean([np.mean(f[g.t0 : g.t1]) for g in nb]))
        score += max(0.0, f_body - f_disc)
    return score
