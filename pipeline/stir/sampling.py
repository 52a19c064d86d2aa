"""Per-body sampling of the STIR on the anatomy grid (step 1 of :func:`pipeline.stir.assess.assess_stir`).

:func:`sample_bodies`: for every vertebral body, a local frame (height axis along the column, posterior, left),
the body mask eroded by an anisotropy-aware margin (:func:`erosion_radii_mm`, :func:`erode_mm`), the lightly
smoothed STIR signal inside it (:func:`smooth_inplane`), each voxel's relative height between its own superior
(0) and inferior (1) endplate, and the canal fluid (CSF) signal right behind the body. :func:`short_bodies`
names bodies much shorter than their neighbours. What is done with the samples is in
:mod:`pipeline.stir.measure`.

All arrays are ``(slice, row, col)`` crops of the anatomy grid; all lengths are mm.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from pipeline.model import VertebraSeg
from pipeline.stir.config import MeasurementConfig
from pipeline.volume import Volume

logger = logging.getLogger(__name__)

_CAUDAL_LPS = np.array([0.0, 0.0, -1.0])
_LEFT_LPS = np.array([1.0, 0.0, 0.0])
_POSTERIOR_LPS = np.array([0.0, 1.0, 0.0])
_OTHER_AXES = ((1, 2), (0, 2), (0, 1))  # for the extent along axis 0, 1, 2 of a 3-D mask


# --------------------------------------------------------------------------- per-body sampling
@dataclass(frozen=True, eq=False)
class BodySample:
    """One vertebral body sampled on the anatomy grid.

    ``signal`` is the smoothed STIR inside the eroded body (NaN elsewhere), shape of the crop;
    ``rel_height`` is the voxel's position between its own superior (0) and inferior (1) endplate
    (NaN outside the eroded body). ``reason`` is set when the body cannot be assessed.
    """

    label: int
    is_sacrum: bool
    crop: tuple[slice, slice, slice]
    eroded: np.ndarray  # bool, crop shape
    signal: np.ndarray  # float32, crop shape, NaN outside ``eroded``
    rel_height: np.ndarray  # float32, crop shape, NaN outside ``eroded``
    eroded_volume_mm3: float
    coverage: float  # share of the (uneroded) body inside the STIR field of view
    axis_position_mm: float  # centroid position along the column (for the fluid profile)
    fluid_raw: float | None  # canal fluid signal behind the body (raw STIR units)
    fluid_voxels: int
    reason: str | None
    height_mm: float | None = None  # extent along the column near the mid-sagittal plane (2nd-98th percentile)

    @property
    def assessable(self) -> bool:
        return self.reason is None

    def values(self) -> np.ndarray:
        """1-D smoothed STIR values of the eroded body."""
        return self.signal[self.eroded]

    def median(self) -> float:
        return float(np.median(self.values())) if self.eroded.any() else float("nan")


def column_frames(vertebrae: Sequence[VertebraSeg]) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Local unit vectors (caudal, posterior, left) in LPS for each body.

    The caudal (height) axis follows the column through the neighbouring body centroids, so tilted
    and wedged bodies get their own axis; the posterior axis is LPS posterior made orthogonal to it.
    """
    cents = [np.asarray(v.centroid_lps_mm, dtype=float) for v in vertebrae]
    frames: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for i, v in enumerate(vertebrae):
        lo, hi = max(i - 1, 0), min(i + 1, len(vertebrae) - 1)
        d = cents[hi] - cents[lo]
        if hi == lo or np.linalg.norm(d) < 1e-6:
            d = _CAUDAL_LPS.copy()
        e_h = d / np.linalg.norm(d)
        if e_h @ _CAUDAL_LPS < 0:  # labels are cranial -> caudal; guard against odd input order
            e_h = -e_h
        e_lr = _LEFT_LPS - (_LEFT_LPS @ e_h) * e_h
        if np.linalg.norm(e_lr) < 1e-3:  # column running left-right: not a spine image we understand
            e_lr = _POSTERIOR_LPS - (_POSTERIOR_LPS @ e_h) * e_h
        e_lr /= np.linalg.norm(e_lr)
        e_ap = np.cross(e_lr, e_h)
        if e_ap @ _POSTERIOR_LPS < 0:
            e_ap = -e_ap
        frames[v.label] = (e_h, e_ap / np.linalg.norm(e_ap), e_lr)
    return frames


def erosion_radii_mm(anatomy: Volume, stir: Volume | None, erosion_mm: float) -> np.ndarray:
    """Erosion margin per anatomy array axis (mm): ``erosion_mm`` plus half of any extra STIR voxel
    extent along that axis (a 4 mm STIR slice resampled onto a 1 mm grid still mixes 4 mm of tissue)."""
    radii = np.full(3, float(erosion_mm))
    if stir is None:
        return radii
    for i in range(3):
        stir_pitch = max(abs(float(anatomy.axes_lps[i] @ stir.axes_lps[j])) * stir.spacing_mm[j] for j in range(3))
        radii[i] += 0.5 * max(0.0, stir_pitch - anatomy.spacing_mm[i])
    return radii


def erode_mm(
    mask: np.ndarray, spacing_mm: Sequence[float] | np.ndarray, radii_mm: Sequence[float] | np.ndarray
) -> np.ndarray:
    """Keep voxels whose centre lies farther than ``radii_mm`` (per axis: an ellipsoid) from the boundary.

    The boundary lies half a voxel beyond the last mask voxel, so a voxel ``n`` voxels from the nearest
    background voxel along axis ``i`` is ``(n - 0.5) * pitch_i`` mm from the boundary; dividing each
    axis by ``radius_i + 0.5 * pitch_i`` makes the test "scaled distance > 1".
    """
    if not mask.any():
        return mask.copy()
    sp = np.asarray(spacing_mm, dtype=float)
    scale = sp / (np.asarray(radii_mm, dtype=float) + 0.5 * sp)
    # The distance transform runs on the mask's bounding box plus a background ring only: no background voxel
    # outside that box is nearer to a mask voxel than the ring, so the distances are the same, and the box is
    # much smaller than the caller's crop (sized for the canal behind the body; issue 18).
    box = tuple(
        slice(int(ix[0]), int(ix[-1]) + 1) for ix in (np.flatnonzero(np.any(mask, axis=a)) for a in _OTHER_AXES)
    )
    sub = mask[box]
    padded = np.pad(sub, 1, constant_values=False)
    dist = ndimage.distance_transform_edt(padded, sampling=scale)[1:-1, 1:-1, 1:-1]
    out = np.zeros_like(mask, dtype=bool)
    out[box] = sub & (dist > 1.0 + 1e-6)
    return out


def smooth_inplane(volume: Volume, sigma_mm: float) -> np.ndarray:
    """Gaussian smoothing (sigma in mm) along the thin axes only; thick-slice axes are left alone."""
    arr = np.asarray(volume.array, dtype=np.float32)
    if sigma_mm <= 0:
        return arr.copy()
    sp = np.asarray(volume.spacing_mm)
    sig = [sigma_mm / p if p <= 1.5 * sp.min() else 0.0 for p in sp]
    return ndimage.gaussian_filter(arr, sigma=sig, mode="nearest").astype(np.float32)


def _frame_coords(
    volume: Volume, crop: tuple[slice, slice, slice], origin_lps: np.ndarray, axis: np.ndarray
) -> np.ndarray:
    """Coordinate (mm) along ``axis`` relative to ``origin_lps`` of every voxel of ``crop``; crop shape."""
    coef = np.asarray(volume.spacing_mm) * (volume.axes_lps @ axis)
    base = (np.asarray(volume.origin_lps) - origin_lps) @ axis
    s, r, c = (np.arange(sl.start, sl.stop, dtype=np.float32) for sl in crop)
    return (base + coef[0] * s[:, None, None] + coef[1] * r[None, :, None] + coef[2] * c[None, None, :]).astype(
        np.float32
    )


def sample_bodies(
    labels: Volume,
    vertebrae: Sequence[VertebraSeg],
    stir_smooth: np.ndarray,
    valid: np.ndarray,
    *,
    erosion_radii: Sequence[float] | np.ndarray,
    cfg: MeasurementConfig,
) -> list[BodySample]:
    """Sample every body of ``vertebrae`` (cranial -> caudal) in the smoothed STIR on the anatomy grid.

    Parameters
    ----------
    labels : Volume
        uint16 label map on the anatomy grid, shape ``(S, R, C)``.
    vertebrae : sequence of VertebraSeg
        Bodies to sample (labels present in ``labels``).
    stir_smooth : numpy.ndarray
        Smoothed STIR on the anatomy grid, shape ``(S, R, C)``.
    valid : numpy.ndarray
        bool ``(S, R, C)``: voxel inside the STIR field of view.
    erosion_radii : sequence of float
        Erosion margin per array axis, mm (see :func:`erosion_radii_mm`).
    """
    lab = np.asarray(labels.array)
    sp = labels.spacing_mm
    frames = column_frames(vertebrae)
    objects = ndimage.find_objects(lab)
    far_mm = cfg.canal_gap_mm[1] + 5.0
    pad = np.ceil(far_mm / np.asarray(sp)).astype(int)
    column_axis = _column_axis(vertebrae)
    out: list[BodySample] = []
    for v in vertebrae:
        e_h, e_ap, e_lr = frames[v.label]
        cent = np.asarray(v.centroid_lps_mm, dtype=float)
        axis_pos = float(cent @ column_axis)
        obj = objects[v.label - 1] if 0 < v.label <= len(objects) else None
        if obj is None:
            out.append(_empty(v, axis_pos, "label not present in the label map"))
            continue
        s0, s1, s2 = (
            slice(max(0, sl.start - int(p)), min(n, sl.stop + int(p)))
            for sl, p, n in zip(obj, pad, lab.shape, strict=True)
        )
        crop = (s0, s1, s2)
        lab_c = lab[crop]
        body = lab_c == v.label
        val_c = valid[crop]
        coverage = float((body & val_c).sum() / max(1, body.sum()))
        h = _frame_coords(labels, crop, cent, e_h)
        ap = _frame_coords(labels, crop, cent, e_ap)
        lr = _frame_coords(labels, crop, cent, e_lr)
        eroded = erode_mm(body, sp, erosion_radii) & val_c & _central_width(body, lr, cfg.central_width_fraction)
        n_er = int(eroded.sum())
        vol_er = n_er * float(np.prod(sp))
        sig = np.full(body.shape, np.nan, dtype=np.float32)
        sig[eroded] = stir_smooth[crop][eroded]
        rel = _relative_height(body, eroded, h, ap, lr)
        fluid, n_fluid = _canal_fluid(body, lab_c, val_c, stir_smooth[crop], h, ap, lr, cfg)
        reason: str | None = None
        if cfg.exclude_fov_edge_bodies and _touches_inplane_edge(obj, lab.shape):
            reason = "body cut by the edge of the image: incomplete, and signal there is unreliable (coil fall-off)"
        elif coverage < cfg.min_coverage:
            reason = f"only {coverage:.0%} of the body lies inside the STIR field of view"
        elif n_er < cfg.min_eroded_voxels or vol_er < cfg.min_eroded_volume_mm3:
            reason = (
                f"body too small after a {cfg.erosion_mm:g} mm erosion ({vol_er:.0f} mm3, {n_er} voxels; "
                f"need {cfg.min_eroded_volume_mm3:g} mm3 and {cfg.min_eroded_voxels} voxels)"
            )
        out.append(
            BodySample(
                label=v.label,
                is_sacrum=v.is_sacrum,
                crop=crop,
                eroded=eroded,
                signal=sig,
                rel_height=rel,
                eroded_volume_mm3=vol_er,
                coverage=coverage,
                axis_position_mm=axis_pos,
                fluid_raw=fluid,
                fluid_voxels=n_fluid,
                reason=reason,
                height_mm=_height(body, h, lr, cfg.canal_half_width_mm),
            )
        )
    return out


def _height(body: np.ndarray, h: np.ndarray, lr: np.ndarray, half_width_mm: float) -> float | None:
    """Extent (mm) of the body along the column within ``half_width_mm`` of its mid-sagittal plane."""
    mid = body & (np.abs(lr) <= half_width_mm)
    if mid.sum() < 10:
        return None
    lo, hi = np.percentile(h[mid], [2.0, 98.0])
    return float(hi - lo)


def short_bodies(samples: Sequence[BodySample], ratio: float) -> dict[int, tuple[float, float]]:
    """label -> (height, neighbours' median height) for bodies shorter than ``ratio`` x their neighbours.

    Neighbours: up to two bodies on each side (the sacrum excluded). Such a body is collapsed, or its mask
    leaves out part of it (e.g. an oedematous band next to the disc that is as bright as the disc on T2).
    """
    out: dict[int, tuple[float, float]] = {}
    lumbar = [s for s in samples if not s.is_sacrum]
    for i, s in enumerate(lumbar):
        if s.height_mm is None:
            continue
        neigh = [n.height_mm for n in lumbar[max(0, i - 2) : i] + lumbar[i + 1 : i + 3] if n.height_mm is not None]
        if len(neigh) >= 2:
            ref = float(np.median(neigh))
            if s.height_mm < ratio * ref:
                out[s.label] = (s.height_mm, ref)
    return out


def _touches_inplane_edge(obj: tuple[slice, ...], shape: tuple[int, ...]) -> bool:
    """The body's bounding box reaches the first or last row or column of the image (array axes 1 and 2:
    the plane of the stored slices). The slice axis is ignored: a sagittal slab often does not cover a
    body's full width, and the central-width restriction already avoids its lateral margins."""
    return any(sl.start == 0 or sl.stop == n for sl, n in zip(obj[1:], shape[1:], strict=True))


def _central_width(body: np.ndarray, lr: np.ndarray, fraction: float) -> np.ndarray:
    """Voxels within the central ``fraction`` of the body's left-right extent.

    Near its lateral margins a sagittal slice cuts the curved cortex obliquely, so whole slices there are
    partial volume with the cortex and the soft tissue beside the body (bright on fluid-sensitive images).
    """
    if fraction >= 1.0 or not body.any():
        return np.ones(body.shape, dtype=bool)
    lo, hi = np.percentile(lr[body], [1.0, 99.0])
    centre, half = 0.5 * (lo + hi), 0.5 * fraction * (hi - lo)
    return np.asarray(np.abs(lr - centre) <= half)


def _empty(v: VertebraSeg, axis_pos: float, reason: str) -> BodySample:
    z = np.zeros((1, 1, 1), dtype=bool)
    nan = np.full((1, 1, 1), np.nan, dtype=np.float32)
    return BodySample(v.label, v.is_sacrum, (slice(0, 1),) * 3, z, nan, nan, 0.0, 0.0, axis_pos, None, 0, reason)


def _column_axis(vertebrae: Sequence[VertebraSeg]) -> np.ndarray:
    """Unit vector along the column (first principal direction of the centroids, pointing caudal)."""
    c = np.array([v.centroid_lps_mm for v in vertebrae], dtype=float)
    if len(c) < 2:
        return _CAUDAL_LPS.copy()
    _, _, vt = np.linalg.svd(c - c.mean(axis=0), full_matrices=False)
    ax = vt[0]
    return ax if ax @ _CAUDAL_LPS >= 0 else -ax


def _relative_height(
    body: np.ndarray, eroded: np.ndarray, h: np.ndarray, ap: np.ndarray, lr: np.ndarray, bin_mm: float = 2.0
) -> np.ndarray:
    """Position of each eroded voxel between the superior (0) and inferior (1) surface of its own
    column of the body (columns = 2 mm bins in the AP / left-right plane), so wedges are handled."""
    rel = np.full(body.shape, np.nan, dtype=np.float32)
    if not eroded.any():
        return rel
    hb, apb, lrb = h[body], ap[body], lr[body]
    ka = np.floor(apb / bin_mm).astype(np.int64)
    kl = np.floor(lrb / bin_mm).astype(np.int64)
    ka -= ka.min()
    kl -= kl.min()
    width = int(kl.max()) + 1
    key = ka * width + kl
    nkey = int(key.max()) + 1
    hmin = np.full(nkey, np.inf)
    hmax = np.full(nkey, -np.inf)
    np.minimum.at(hmin, key, hb)
    np.maximum.at(hmax, key, hb)
    # eroded voxels are a subset of body voxels: find their keys through a full-size key map
    keymap = np.full(body.shape, -1, dtype=np.int64)
    keymap[body] = key
    ke = keymap[eroded]
    span = hmax[ke] - hmin[ke]
    t = np.where(span > 1e-3, (h[eroded] - hmin[ke]) / np.maximum(span, 1e-3), 0.5)
    rel[eroded] = np.clip(t, 0.0, 1.0)
    return rel


def _canal_fluid(
    body: np.ndarray,
    lab_c: np.ndarray,
    val_c: np.ndarray,
    sig_c: np.ndarray,
    h: np.ndarray,
    ap: np.ndarray,
    lr: np.ndarray,
    cfg: MeasurementConfig,
) -> tuple[float | None, int]:
    """High percentile of the STIR in the thecal sac behind the central part of the body.

    Region: outside every body label, within ``canal_half_width_mm`` of the body's mid-sagittal plane,
    within the central ``canal_height_fraction`` of the body's height, between ``canal_gap_mm[0]`` and
    ``canal_gap_mm[1]`` behind the posterior wall. Returns ``(value, n_voxels)``; value None when too few
    voxels.
    """
    mid = body & (np.abs(lr) <= cfg.canal_half_width_mm)
    if mid.sum() < 10:
        return None, 0
    hb = h[mid]
    top, bot = np.percentile(hb, [2.0, 98.0])
    centre, half = 0.5 * (top + bot), 0.5 * cfg.canal_height_fraction * (bot - top)
    band = np.abs(h - centre) <= half
    wall_sel = mid & band
    if not wall_sel.any():
        return None, 0
    wall = float(np.percentile(ap[wall_sel], 98.0))
    canal = (
        (lab_c == 0)
        & val_c
        & band
        & (np.abs(lr) <= cfg.canal_half_width_mm)
        & (ap >= wall + cfg.canal_gap_mm[0])
        & (ap <= wall + cfg.canal_gap_mm[1])
    )
    n = int(canal.sum())
    if n < cfg.min_fluid_voxels:
        return None, n
    return float(np.percentile(sig_c[canal], cfg.fluid_percentile)), n
