"""Spinal canal and column axis on the mid-sagittal slab.

The spinal canal is the one long, continuous tube in a sagittal spine series: bright (CSF) on T2 and
STIR, dark on T1. A ridge (or valley) filter across the antero-posterior direction, smoothed along the
head-feet direction, followed by a dynamic-programming path through all rows, traces it. Fat planes can
form tubes too, so several paths are proposed and the caller keeps the one with vertebral bodies in
front of it (:func:`pipeline.segment.discs.column_evidence`).

The chosen path becomes a :class:`ColumnAxis`: an arc-length parametrised curve with unit normals
pointing anteriorly, used to *straighten* the column (sample the image on a ``(t, d)`` grid: ``t`` along
the canal head -> feet, ``d`` anterior distance from the canal centre, both in mm).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from pipeline.segment.config import SegmentationConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class ColumnAxis:
    """A smooth curve along the spinal canal on the working grid (in-plane, mm).

    Attributes
    ----------
    points_mm : numpy.ndarray
        Shape ``(T, 2)``: ``(y, x)`` = (row * row pitch, col * col pitch) of the canal centre, one point
        per ``step_mm`` of arc length, head -> feet.
    tangents : numpy.ndarray
        Shape ``(T, 2)``: unit tangent (head -> feet) in the same mm frame.
    normals : numpy.ndarray
        Shape ``(T, 2)``: unit normal pointing anteriorly (towards smaller column index).
    pitch_mm : tuple of float
        ``(row pitch, col pitch)`` of the working grid.
    step_mm : float
        Arc-length step between points.
    """

    points_mm: np.ndarray
    tangents: np.ndarray
    normals: np.ndarray
    pitch_mm: tuple[float, float]
    step_mm: float

    @property
    def length(self) -> int:
        return int(self.points_mm.shape[0])

    def index_of(self, t: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Working ``(row, col)`` float indices of straightened positions (``t`` samples, ``d`` mm)."""
        t = np.asarray(t, dtype=float)
        d = np.asarray(d, dtype=float)
        ti = np.clip(t, 0, self.length - 1)
        i0 = np.floor(ti).astype(int)
        i1 = np.minimum(i0 + 1, self.length - 1)
        w = ti - i0
        p = self.points_mm[i0] * (1 - w)[..., None] + self.points_mm[i1] * w[..., None]
        n = self.normals[i0] * (1 - w)[..., None] + self.normals[i1] * w[..., None]
        # beyond either end, extrapolate along the end tangent
        extra = (t - ti)[..., None] * self.step_mm
        tang = np.where((t < 0)[..., None], self.tangents[0], self.tangents[-1])
        p = p + extra * tang
        y = p[..., 0] + d * n[..., 0]
        x = p[..., 1] + d * n[..., 1]
        return y / self.pitch_mm[0], x / self.pitch_mm[1]

    def straighten(self, image2d: np.ndarray, d_mm: np.ndarray, order: int = 1) -> np.ndarray:
        """Sample a sagittal image on the ``(t, d)`` grid; shape ``(T, len(d_mm))``; 0 outside the image."""
        tt, dd = np.meshgrid(np.arange(self.length, dtype=float), np.asarray(d_mm, float), indexing="ij")
        r, c = self.index_of(tt, dd)
        return ndi.map_coordinates(image2d, [r, c], order=order, mode="constant", cval=np.nan)

    def to_local(self, rows: np.ndarray, cols: np.ndarray, t_hint: float) -> tuple[np.ndarray, np.ndarray]:
        """Approximate ``(t, d)`` of working-grid positions near arc position ``t_hint`` (local frame)."""
        i = int(np.clip(round(t_hint), 0, self.length - 1))
        y = np.asarray(rows, float) * self.pitch_mm[0] - self.points_mm[i, 0]
        x = np.asarray(cols, float) * self.pitch_mm[1] - self.points_mm[i, 1]
        t = i + (y * self.tangents[i, 0] + x * self.tangents[i, 1]) / self.step_mm
        d = y * self.normals[i, 0] + x * self.normals[i, 1]
        return t, d


def slab_image(arr: np.ndarray, centre: float, halfwidth_mm: float, slice_mm: float) -> np.ndarray:
    """Mean of the sagittal slices within ``halfwidth_mm`` of slice ``centre`` (at least one slice)."""
    h = max(0, int(round(halfwidth_mm / slice_mm)))
    c = int(round(np.clip(centre, 0, arr.shape[0] - 1)))
    lo, hi = max(0, c - h), min(arr.shape[0], c + h + 1)
    return arr[lo:hi].mean(axis=0)


def canal_ridge(img2d: np.ndarray, pitch_mm: tuple[float, float], cfg: SegmentationConfig, bright: bool) -> np.ndarray:
    """Tube-likeness across the antero-posterior direction, >= 0, same shape as ``img2d``.

    For each half-width ``h`` in ``canal_halfwidth_mm``: ``min(I(c) - I(c-h), I(c) - I(c+h))`` on an image
    smoothed along the rows (head-feet, ``canal_smoothing_mm``); the maximum over ``h``. ``bright=False``
    looks for a dark tube (CSF on T1).
    """
    pr, pc = pitch_mm
    img = img2d if bright else -img2d
    sm = ndi.gaussian_filter(img, (cfg.canal_smoothing_mm / pr, 1.0 / pc))
    lo = max(1, int(round(cfg.canal_halfwidth_mm[0] / pc)))
    hi = max(lo, int(round(cfg.canal_halfwidth_mm[1] / pc)))
    best = np.full(sm.shape, -np.inf, dtype=np.float32)
    n = sm.shape[1]
    for h in range(lo, hi + 1):
        if h >= n:
            break
        left = np.empty_like(sm)
        right = np.empty_like(sm)
        left[:, h:] = sm[:, :-h]
        left[:, :h] = sm[:, :1]
        right[:, :-h] = sm[:, h:]
        right[:, -h:] = sm[:, -1:]
        np.maximum(best, np.minimum(sm - left, sm - right), out=best)
    return np.clip(best, 0, None)


def best_path(score: np.ndarray, max_step: int, step_penalty: float) -> tuple[np.ndarray, float]:
    """Column index per row maximising ``sum(score) - step_penalty * sum(|jumps|)`` (Viterbi).

    Parameters
    ----------
    score : numpy.ndarray
        Shape ``(rows, cols)``.
    max_step : int
        Largest column change between consecutive rows.
    """
    nr, nc = score.shape
    acc = score[0].astype(float).copy()
    back = np.zeros((nr, nc), dtype=np.int16)
    for r in range(1, nr):
        best = np.full(nc, -np.inf)
        arg = np.zeros(nc, dtype=np.int16)
        for d in range(-max_step, max_step + 1):
            sh = np.full(nc, -np.inf)
            if d > 0:
                sh[d:] = acc[:-d]
            elif d < 0:
                sh[:d] = acc[-d:]
            else:
                sh[:] = acc
            sh -= step_penalty * abs(d)
            better = sh > best
            best[better] = sh[better]
            arg[better] = d
        acc = best + score[r]
        back[r] = arg
    path = np.zeros(nr, dtype=int)
    path[-1] = int(np.argmax(acc))
    for r in range(nr - 1, 0, -1):
        path[r - 1] = path[r] - back[r, path[r]]
    return path, float(acc.max())


def candidate_paths(ridge: np.ndarray, pitch_mm: tuple[float, float], cfg: SegmentationConfig) -> list[np.ndarray]:
    """Up to ``canal_candidates`` tube paths (column index per row), strongest first, >= 12 mm apart."""
    pr, pc = pitch_mm
    max_step = max(1, int(np.ceil(cfg.canal_max_slope * pr / pc)))
    penalty = cfg.canal_step_penalty * float(np.percentile(ridge, 99) + 1e-6) * pc
    work = ridge.copy()
    excl = max(1, int(round(12.0 / pc)))
    out: list[np.ndarray] = []
    cols = np.arange(ridge.shape[1])
    for _ in range(cfg.canal_candidates):
        path, total = best_path(work, max_step, penalty)
        if total <= 0:
            break
        out.append(path)
        work[np.abs(cols[None, :] - path[:, None]) <= excl] = 0
    return out


def corridor_path(
    ridge: np.ndarray, path_cols: np.ndarray, pitch_mm: tuple[float, float], cfg: SegmentationConfig
) -> np.ndarray:
    """Re-trace a canal path inside a corridor around a robust smooth fit of ``path_cols``.

    A Viterbi path may follow the canal for most of its length and jump to another tube (a vessel, a fat
    plane) for the rest. A degree-4 polynomial fitted with Tukey weights (and the ridge strength as prior
    weight) follows the majority; the path is then traced again within ``corridor_mm`` of it.
    """
    pr, pc = pitch_mm
    rows = np.arange(path_cols.size, dtype=float)
    strength = ridge[rows.astype(int), np.clip(path_cols, 0, ridge.shape[1] - 1)]
    w0 = strength / (float(strength.max()) + 1e-12)
    x = rows / max(rows[-1], 1.0)
    w = w0.copy()
    coef = np.polyfit(x, path_cols.astype(float), 4, w=np.sqrt(w + 1e-6))
    for _ in range(5):
        resid = (path_cols - np.polyval(coef, x)) * pc
        c = 4.685 * max(float(np.median(np.abs(resid))) * 1.4826, 3.0)
        tukey = np.where(np.abs(resid) < c, (1 - (resid / c) ** 2) ** 2, 0.0)
        w = w0 * tukey
        if w.sum() < 1e-6:
            return path_cols
        coef = np.polyfit(x, path_cols.astype(float), 4, w=np.sqrt(w + 1e-6))
    centre = np.polyval(coef, x)
    half = cfg.corridor_mm / pc
    cols = np.arange(ridge.shape[1])[None, :]
    inside = np.abs(cols - centre[:, None]) <= half
    masked = np.where(inside, ridge, -1.0 * float(ridge.max() + 1.0))
    max_step = max(1, int(np.ceil(cfg.canal_max_slope * pr / pc)))
    penalty = cfg.canal_step_penalty * float(np.percentile(ridge, 99) + 1e-6) * pc
    new, _ = best_path(masked, max_step, penalty)
    return new


def axis_from_path(
    path_cols: np.ndarray, pitch_mm: tuple[float, float], cfg: SegmentationConfig, step_mm: float = 1.0
) -> ColumnAxis:
    """Smooth a per-row column path and resample it by arc length into a :class:`ColumnAxis`."""
    pr, pc = pitch_mm
    rows = np.arange(path_cols.size, dtype=float)
    sig = cfg.column_smoothing_mm / pr
    x = ndi.gaussian_filter1d(path_cols.astype(float), sig, mode="nearest") * pc
    y = rows * pr
    seg = np.r_[0.0, np.cumsum(np.hypot(np.diff(y), np.diff(x)))]
    tt = np.arange(0.0, seg[-1] + 1e-9, step_mm)
    py = np.interp(tt, seg, y)
    px = np.interp(tt, seg, x)
    ty = np.gradient(py)
    tx = np.gradient(px)
    norm = np.hypot(ty, tx) + 1e-12
    ty, tx = ty / norm, tx / norm
    # normal = tangent rotated so that it points to smaller x (anterior)
    ny, nx = tx, -ty
    flip = nx > 0
    ny = np.where(flip, -ny, ny)
    nx = np.where(flip, -nx, nx)
    return ColumnAxis(np.stack([py, px], 1), np.stack([ty, tx], 1), np.stack([ny, nx], 1), (pr, pc), step_mm)


def canal_strength_per_slice(
    arr: np.ndarray, path_cols: np.ndarray, pitch_mm: tuple[float, float], cfg: SegmentationConfig, bright: bool
) -> np.ndarray:
    """Mean tube-likeness near ``path_cols`` (+-4 mm) on every sagittal slice; shape ``(n_slices,)``.

    The canal (dural sac) is widest and brightest (darkest on T1) at the midline, so the profile of this
    strength across slices locates the mid-sagittal plane.
    """
    pr, pc = pitch_mm
    tol = max(1, int(round(4.0 / pc)))
    margin = tol + int(round(cfg.canal_halfwidth_mm[1] / pc)) + 2
    c_lo = max(0, int(path_cols.min()) - margin)
    c_hi = min(arr.shape[2], int(path_cols.max()) + margin + 1)
    step = max(1, int(round(2.0 / pr)))  # every ~2 mm of rows is plenty
    rows = np.arange(0, path_cols.size, step)
    local = path_cols[rows] - c_lo
    out = np.zeros(arr.shape[0])
    offs = np.arange(-tol, tol + 1)
    cols = np.clip(local[:, None] + offs[None, :], 0, c_hi - c_lo - 1)
    for s in range(arr.shape[0]):
        rid = canal_ridge(arr[s, :, c_lo:c_hi], pitch_mm, cfg, bright)
        out[s] = float(np.mean(np.max(rid[rows[:, None], cols], axis=1)))
    return out


def midline_from_strength(strength: np.ndarray, slice_mm: float) -> float:
    """Slice index of the canal's centre: strength-weighted centroid of the contiguous run of slices
    (around the strongest) whose strength is at least half-way between the baseline and the maximum."""
    if strength.size == 0 or not np.any(strength > 0):
        return (strength.size - 1) / 2.0
    sm = ndi.gaussian_filter1d(strength, max(0.5, 2.0 / slice_mm), mode="nearest")
    k = int(np.argmax(sm))
    base = float(np.percentile(sm, 20))  # tube-likeness of other structures along the path
    half = base + 0.5 * (sm[k] - base)
    lo = k
    while lo > 0 and sm[lo - 1] >= half:
        lo -= 1
    hi = k
    while hi < sm.size - 1 and sm[hi + 1] >= half:
        hi += 1
    w = sm[lo : hi + 1] - half
    if w.sum() <= 0:
        return float(k)
    return float(np.sum(np.arange(lo, hi + 1) * w) / np.sum(w))
