"""Tiny synthetic sagittal spine series with a known answer, for the segmentation tests.

The column follows a curve: straight (lumbar) and then turning backwards by ``sacral_turn_deg`` at the
lumbosacral junction, like the sacrum. Structures are painted in column coordinates (``t`` along the canal,
``d`` anterior distance from the canal centre, ``x`` left-right): a CSF tube, vertebral bodies with a dark
cortical rim and an elliptical axial section, discs with a bright nucleus, a fused sacrum (S1 and smaller
S2, S3 with thin remnant lines), a smooth bias field and noise. The truth label map marks every body
(1..N cranial -> caudal, S1 last; S2/S3 are not labelled).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.spatial import cKDTree

from pipeline.levels import Level
from pipeline.volume import Volume

# T2-like intensities (normalised); T1 swaps CSF/disc brightness
T2 = {"bg": 0.30, "csf": 1.0, "marrow": 0.55, "cortex": 0.12, "disc": 0.85, "annulus": 0.35, "blob": 0.55}
T1 = {"bg": 0.45, "csf": 0.12, "marrow": 0.85, "cortex": 0.10, "disc": 0.40, "annulus": 0.30, "blob": 0.85}


@dataclass
class SpineSpec:
    n_lumbar: int = 5  # bodies above the sacrum (L1..L5 when 5)
    body_height_mm: float = 26.0
    disc_mm: float = 10.0
    depth_mm: float = 32.0
    width_mm: float = 44.0
    sacrum: bool = True
    sacral_turn_deg: float = 45.0
    s1_s2_disc_mm: float = 1.5  # rudimentary; a mobile-looking value makes a lumbarised S1
    collapsed: dict[int, float] = field(default_factory=dict)  # body index (0 = top) -> height fraction kept
    blob: bool = False  # a marrow-like non-vertebral blob in front of the column
    contrast: dict[str, float] = field(default_factory=lambda: dict(T2))
    slice_mm: float = 4.0
    n_slices: int = 15
    pitch_mm: float = 1.0
    top_margin_mm: float = 12.0
    noise: float = 0.02
    seed: int = 0


@dataclass
class SpinePhantom:
    image: Volume
    labels: np.ndarray  # uint16, same shape
    levels: dict[int, Level]  # truth label -> level
    heights_mm: list[float]
    blob: np.ndarray | None = None  # bool mask of the non-vertebral blob, when painted


def _curve(spec: SpineSpec, length_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Canal centre points (row_mm, col_mm) every 0.5 mm of arc, and their arc length."""
    step = 0.5
    n = int(length_mm / step) + 1
    t = np.arange(n) * step
    lumbar_len = spec.top_margin_mm + spec.n_lumbar * (spec.body_height_mm + spec.disc_mm)
    turn_at = lumbar_len - spec.disc_mm / 2.0  # middle of the L5/S1 disc
    ang = np.deg2rad(spec.sacral_turn_deg) * np.clip((t - turn_at + 5.0) / 10.0, 0.0, 1.0)
    if not spec.sacrum:
        ang = np.zeros_like(t)
    dy = np.cos(ang) * step
    dx = np.sin(ang) * step
    y = np.r_[0.0, np.cumsum(dy[:-1])]
    x = np.r_[0.0, np.cumsum(dx[:-1])]
    return np.stack([y, x], axis=1), t


def make_spine(spec: SpineSpec | None = None) -> SpinePhantom:
    spec = spec or SpineSpec()
    rng = np.random.default_rng(spec.seed)
    c = spec.contrast
    p = spec.pitch_mm
    heights = [spec.body_height_mm * spec.collapsed.get(i, 1.0) for i in range(spec.n_lumbar)]
    column_len = spec.top_margin_mm + sum(h + spec.disc_mm for h in heights)
    sac_len = 75.0 if spec.sacrum else 0.0
    total = column_len + sac_len + 10.0
    curve, arc = _curve(spec, total + 40)
    n_rows = int(total / p)
    n_cols = int(130 / p)
    canal_col0 = 95.0  # mm from the anterior edge of the image
    rows = np.arange(n_rows) * p
    cols = np.arange(n_cols) * p
    yy, xx = np.meshgrid(rows, cols, indexing="ij")
    pts = np.stack([yy.ravel(), xx.ravel() - canal_col0], axis=1)
    _, best_i = cKDTree(curve).query(pts)
    t_map = arc[best_i].reshape(yy.shape)
    tang = np.gradient(curve, axis=0)[best_i]
    tang /= np.linalg.norm(tang, axis=1, keepdims=True)
    normal = np.stack([tang[:, 1], -tang[:, 0]], axis=1)  # points anteriorly (smaller col) for a downward curve
    rel = pts - curve[best_i]
    d_map = (rel * normal).sum(axis=1).reshape(yy.shape)

    n_s = spec.n_slices
    mid = (n_s - 1) / 2.0
    img = np.full((n_s, n_rows, n_cols), c["bg"], dtype=np.float32)
    blob_mask = np.zeros((n_s, n_rows, n_cols), dtype=bool)
    lab = np.zeros((n_s, n_rows, n_cols), dtype=np.uint16)
    wall_d = 9.0  # posterior wall of the bodies, mm in front of the canal centre
    half_w = spec.width_mm / 2.0
    # segments along t: (kind, t0, t1, depth, label)
    segs: list[tuple[str, float, float, float, int]] = []
    t = spec.top_margin_mm
    label = 0
    for h in heights:
        label += 1
        segs.append(("body", t, t + h, spec.depth_mm, label))
        segs.append(("disc", t + h, t + h + spec.disc_mm, spec.depth_mm, 0))
        t += h + spec.disc_mm
    levels: dict[int, Level] = {}
    first = Level.L5.offset(-(spec.n_lumbar - 1))
    assert first is not None
    for i in range(spec.n_lumbar):
        lv = first.offset(i)
        assert lv is not None
        levels[i + 1] = lv
    if spec.sacrum:
        label += 1
        levels[label] = Level.S1
        s1_h = 26.0
        segs.append(("body", t, t + s1_h, spec.depth_mm, label))
        t += s1_h
        segs.append(
            ("remnant" if spec.s1_s2_disc_mm < 4 else "disc", t, t + spec.s1_s2_disc_mm, spec.depth_mm * 0.7, 0)
        )
        t += spec.s1_s2_disc_mm
        segs.append(("body", t, t + 20.0, spec.depth_mm * 0.62, 0))  # S2 (not labelled)
        t += 20.0
        segs.append(("remnant", t, t + 1.5, spec.depth_mm * 0.5, 0))
        t += 1.5
        segs.append(("body", t, t + 15.0, spec.depth_mm * 0.45, 0))  # S3

    for s in range(n_s):
        x = (s - mid) * spec.slice_mm
        sl = img[s]
        # canal: CSF tube ~16 mm wide left-right, 14 mm antero-posterior; the thecal sac ends at S2, the
        # narrower sacral canal (fat: bright on T2) continues
        if abs(x) <= 8.0:
            canal = (np.abs(d_map) <= 7.0) & (t_map <= column_len + 35.0)
            sacral = (np.abs(d_map) <= 4.0) & (t_map > column_len + 35.0)
            sl[canal] = c["csf"]
            sl[sacral] = c["csf"] * 0.8 + c["bg"] * 0.2
        for kind, t0, t1, depth, lab_id in segs:
            if abs(x) >= half_w:
                continue
            scale = np.sqrt(max(0.0, 1.0 - (x / half_w) ** 2))
            dep = depth * (0.35 + 0.65 * scale)  # flat posterior wall, rounded anterior: elliptical axial section
            inside = (t_map >= t0) & (t_map < t1) & (d_map >= wall_d) & (d_map <= wall_d + dep)
            if not inside.any():
                continue
            if kind == "body":
                rim = inside & ~(
                    (t_map >= t0 + 1.5) & (t_map < t1 - 1.5) & (d_map >= wall_d + 1.5) & (d_map <= wall_d + dep - 1.5)
                )
                sl[inside] = c["marrow"]
                if abs(x) >= half_w - 2.0:
                    sl[inside] = c["cortex"]
                sl[rim] = c["cortex"]
                if lab_id:
                    lab[s][inside] = lab_id
            elif kind == "disc":
                sl[inside] = c["annulus"]
                core = (
                    inside
                    & (d_map >= wall_d + 5)
                    & (d_map <= wall_d + dep - 5)
                    & (t_map >= t0 + 1.5)
                    & (t_map < t1 - 1.5)
                )
                sl[core] = c["disc"]
            else:  # remnant disc line: as dark as cortex
                sl[inside] = c["cortex"]
        if spec.blob and abs(x) <= 16.0:
            # a marrow-like blob (bowel loop / kidney-sized) 12 mm in front of the L3 body
            tb = spec.top_margin_mm + 2 * (spec.body_height_mm + spec.disc_mm) + spec.body_height_mm / 2
            blob = ((t_map - tb) / 14.0) ** 2 + ((d_map - (wall_d + spec.depth_mm + 26.0)) / 11.0) ** 2 <= 1.0
            sl[blob] = c["blob"]
            blob_mask[s] = blob
    # bias field and noise
    by = np.linspace(-1, 1, n_rows)[None, :, None]
    bx = np.linspace(-1, 1, n_cols)[None, None, :]
    img *= (1.0 + 0.15 * by - 0.1 * bx).astype(np.float32)
    img += rng.normal(0.0, spec.noise, img.shape).astype(np.float32)
    img = np.clip(img, 0, None) * 1000.0
    # geometry: slices left->right (LPS -x), rows head->feet (-z), cols anterior->posterior (+y)
    axes = np.array([[-1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    origin = (30.0, -60.0, 100.0)
    vol = Volume(img.astype(np.float32), (spec.slice_mm, p, p), origin, axes)
    return SpinePhantom(vol, lab, levels, heights, blob_mask if spec.blob else None)


def flipped_rows(vol: Volume) -> Volume:
    """Same voxels stored with the row axis reversed (rows feet -> head); geometry updated accordingly."""
    arr = vol.array[:, ::-1, :].copy()
    axes = vol.axes_lps.copy()
    origin = np.asarray(vol.origin_lps) + (vol.shape[1] - 1) * vol.spacing_mm[1] * axes[1]
    axes[1] = -axes[1]
    return Volume(arr, vol.spacing_mm, tuple(origin), axes)


def transposed(vol: Volume) -> Volume:
    """Same voxels stored with rows and columns swapped (rows anterior -> posterior)."""
    arr = vol.array.transpose(0, 2, 1).copy()
    axes = vol.axes_lps[[0, 2, 1]]
    # keep a right-handed-or-not frame: Volume only needs orthonormal axes
    return Volume(arr, (vol.spacing_mm[0], vol.spacing_mm[2], vol.spacing_mm[1]), vol.origin_lps, axes)
