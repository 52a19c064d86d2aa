"""Per-body STIR statistics on the anatomy grid.

Pieces, in the order :func:`pipeline.stir.assess.assess_stir` uses them:

1. :func:`sample_bodies`: for every vertebral body, a local frame (height axis along the column,
   posterior, left), the body mask eroded by an anisotropy-aware margin, the lightly smoothed STIR
   signal inside it, each voxel's relative height between its own superior (0) and inferior (1)
   endplate, and the canal fluid (CSF) signal right behind the body.
2. :func:`fit_fluid_profile`: a smooth robust fit of the canal fluid signal along the column. CSF
   is the one tissue whose STIR signal is the same at every level, so this profile is a flat-field
   estimate of the coil / bias profile; marrow divided by it is in "fluid units" (CSF = 1).
3. :func:`estimate_reference`: normal marrow from the lower mode of the pooled marrow of candidate
   bodies, refined iteratively on the bodies that stay below the oedema decision; robust when
   several bodies are abnormal.
4. :func:`measure_body`: ratio, oedema fraction (share of the eroded body above the threshold, small
   specks removed), supra-threshold mask and pattern (band under an endplate vs diffuse).

All arrays are ``(slice, row, col)`` crops of the anatomy grid; all lengths are mm.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from pipeline.model import EdemaPattern, VertebraSeg
from pipeline.stir.config import DecisionConfig, MeasurementConfig, ReferenceConfig
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


# --------------------------------------------------------------------------- fluid profile
@dataclass(frozen=True)
class FluidProfile:
    """Canal fluid signal along the column (raw STIR units), robustly smoothed."""

    fitted: dict[int, float]  # label -> fluid signal at that body
    used_labels: tuple[int, ...]  # levels whose canal measurement entered the fit
    rejected_labels: tuple[int, ...]  # measured but down-weighted as outliers (stenosis, flow voids...)
    degree: int

    @property
    def median(self) -> float:
        return float(np.median(list(self.fitted.values())))


def fit_fluid_profile(samples: Sequence[BodySample], cfg: MeasurementConfig) -> FluidProfile | None:
    """Robust polynomial fit of log(fluid) against position along the column.

    Degree 2 with >= 5 usable levels, 1 with 3-4, 0 with 1-2. Tukey biweight IRLS (scale floor 3 %) so that
    one level with a narrowed canal or flow voids does not bend the profile. Levels whose canal signal is
    not clearly brighter than their own marrow (``min_fluid_to_marrow``) are not fluid and are not used.
    The sacrum (canal mostly below the thecal sac) and bodies that are not assessable are evaluated but
    not fitted.
    Returns None when no level has a usable canal measurement.
    """
    pts = [
        (s.axis_position_mm, s.fluid_raw, s.label)
        for s in samples
        if s.fluid_raw is not None
        and not s.is_sacrum
        and s.assessable
        and s.fluid_raw > 0
        and s.fluid_raw >= cfg.min_fluid_to_marrow * max(s.median(), 1e-9)
    ]
    if not pts:
        return None
    x = np.array([p[0] for p in pts])
    y = np.log(np.array([p[1] for p in pts], dtype=float))
    n = len(pts)
    deg = 2 if n >= 5 else (1 if n >= 3 else 0)
    xm, xs = x.mean(), max(float(x.std()), 1.0)
    xn = (x - xm) / xs
    w = np.ones(n)
    coef = np.zeros(deg + 1)
    for _ in range(20):
        coef = (
            np.polynomial.polynomial.polyfit(xn, y, deg, w=np.sqrt(w))
            if deg > 0
            else np.array([np.sum(w * y) / np.sum(w)])
        )
        res = y - np.polynomial.polynomial.polyval(xn, coef)
        scale = max(1.4826 * float(np.median(np.abs(res))), 0.03)
        u = res / (4.685 * scale)
        w_new = np.where(np.abs(u) < 1, (1 - u**2) ** 2, 0.0)
        if w_new.sum() < deg + 1:
            break
        if np.allclose(w_new, w, atol=1e-4):
            w = w_new
            break
        w = w_new
    fitted = {
        s.label: float(np.exp(np.polynomial.polynomial.polyval((s.axis_position_mm - xm) / xs, coef))) for s in samples
    }
    used = tuple(p[2] for p, wi in zip(pts, w, strict=True) if wi > 0)
    rejected = tuple(p[2] for p, wi in zip(pts, w, strict=True) if wi == 0)
    return FluidProfile(fitted=fitted, used_labels=used, rejected_labels=rejected, degree=deg)


# --------------------------------------------------------------------------- reference and threshold
@dataclass(frozen=True)
class Reference:
    """Normal marrow in normalised units (fluid units when a fluid profile exists)."""

    value: float  # normal-marrow centre
    sd: float  # robust SD of normal marrow voxels (pooled over reference bodies)
    threshold: float  # voxel oedema threshold
    labels: tuple[int, ...]  # bodies the reference came from
    method: str
    plausible: bool  # False: implausibly bright vs fluid, or no normal body found; prior used instead


def threshold_for(value: float, sd: float, fluid_units: float, dcfg: DecisionConfig) -> float:
    """Voxel threshold: ``value + k * sd``, at least ``floor_fraction`` of the way from marrow to fluid."""
    return max(value + dcfg.threshold_k_sd * sd, value + dcfg.threshold_floor_fluid_fraction * (fluid_units - value))


def supra_threshold(
    sample: BodySample, norm: float, threshold: float, min_component_mm3: float, spacing_mm: Sequence[float]
) -> np.ndarray:
    """bool crop mask: eroded voxels with ``signal / norm > threshold``; components smaller than
    ``min_component_mm3`` removed."""
    with np.errstate(invalid="ignore"):
        supra = sample.eroded & (sample.signal / norm > threshold)
    if min_component_mm3 > 0 and supra.any():
        lab, n = ndimage.label(supra, structure=np.ones((3, 3, 3), dtype=bool))
        sizes = np.bincount(lab.ravel()) * float(np.prod(spacing_mm))
        keep = sizes >= min_component_mm3
        keep[0] = False
        supra = keep[lab]
    return np.asarray(supra)


def lower_mode(groups: Sequence[np.ndarray], min_mass: float) -> tuple[float, float]:
    """Centre and lower-half robust SD of the lowest substantial mode of pooled values.

    Each group (one body) has equal weight. The pooled histogram is smoothed with a bandwidth of half the
    median per-body robust SD; its peaks are separated at the valleys between them, and the lowest peak
    holding at least ``min_mass`` of the weight is normal marrow (a single dark fatty body is too small a
    mode; oedema is brighter). The SD is estimated from the values below the mode only (oedema free).
    """
    vals = np.concatenate([np.asarray(g, dtype=float) for g in groups])
    w = np.concatenate([np.full(len(g), 1.0 / (len(g) * len(groups))) for g in groups])
    lo, hi = np.percentile(vals, [0.5, 99.5])
    if not hi > lo:
        return float(lo), 0.0
    nbins = 200
    hist, edges = np.histogram(vals, bins=nbins, range=(lo, hi), weights=w)
    centres = 0.5 * (edges[:-1] + edges[1:])
    sds = [1.4826 * float(np.median(np.abs(g - np.median(g)))) for g in groups if len(g)]
    bw = 0.5 * float(np.median(sds)) if sds else (hi - lo) / 20
    bw_bins = max(bw / (edges[1] - edges[0]), 1.0)
    sm = ndimage.gaussian_filter1d(hist, bw_bins, mode="constant")
    peaks = [i for i in range(nbins) if sm[i] > 0 and sm[i] >= sm[max(i - 1, 0)] and sm[i] > sm[min(i + 1, nbins - 1)]]
    if not peaks:
        peaks = [int(np.argmax(sm))]
    # valleys between consecutive peaks
    bounds = [0]
    for a, b in zip(peaks[:-1], peaks[1:], strict=True):
        bounds.append(a + int(np.argmin(sm[a : b + 1])))
    bounds.append(nbins)
    total = float(sm.sum())
    chosen = peaks[int(np.argmax([sm[p] for p in peaks]))]
    for k, p in enumerate(peaks):
        if float(sm[bounds[k] : bounds[k + 1]].sum()) >= min_mass * total:
            chosen = p
            break
    mode = float(centres[chosen])
    below = vals[vals <= mode]
    sd = 1.4826 * float(np.median(mode - below)) if below.size >= 10 else float(np.median(sds)) if sds else 0.0
    return mode, sd


def estimate_reference(
    samples: Sequence[BodySample],
    norms: Mapping[int, float],
    candidates: Sequence[int],
    *,
    fluid_units: float | None,
    max_marrow_to_fluid: float,
    prior_marrow_to_fluid: float,
    spacing_mm: Sequence[float],
    rcfg: ReferenceConfig,
    dcfg: DecisionConfig,
    mcfg: MeasurementConfig,
) -> Reference:
    """Normal marrow from ``candidates`` (labels), robust to several abnormal bodies.

    1. Lower mode of the pooled normalised marrow of all candidates -> centre, SD, threshold.
    2. Bodies whose supra-threshold fraction stays below ``edema_fraction_min`` are "normal";
       centre = median of their pooled voxels, SD = their pooled robust SD; repeat until the set is stable.
    3. With a fluid scale (``fluid_units`` = normalised value of CSF, 1 with a fluid profile): if no body
       stays normal, or the normal centre is implausibly bright relative to fluid (``max_marrow_to_fluid``),
       the prior ``prior_marrow_to_fluid`` is used with the SD of step 1 and the result is marked
       implausible (low confidence). Without a fluid scale, fluid is assumed at
       ``centre / prior_marrow_to_fluid`` for the threshold floor, and no plausibility check is possible.

    ``norms`` maps label -> divisor turning raw STIR into normalised units.
    """
    by_label = {s.label: s for s in samples}
    groups = {lab: by_label[lab].values() / norms[lab] for lab in candidates}

    def thr_of(value: float, sd: float) -> float:
        fu = fluid_units if fluid_units is not None else value / prior_marrow_to_fluid
        return threshold_for(value, sd, fu, dcfg)

    mode, sd0 = lower_mode(list(groups.values()), rcfg.min_mode_mass)
    value, sd = mode, sd0
    thr = thr_of(value, sd)
    method = "lower mode of pooled marrow"
    normal: tuple[int, ...] = tuple(candidates)
    for _ in range(rcfg.max_iterations):
        new = tuple(
            lab
            for lab in candidates
            if _fraction(by_label[lab], norms[lab], thr, mcfg.min_component_mm3, spacing_mm) < dcfg.edema_fraction_min
        )
        if not new:
            normal = ()
            break
        pooled = np.concatenate([groups[lab] for lab in new])
        value = float(np.median(pooled))
        sd = 1.4826 * float(np.median(np.abs(pooled - value)))
        thr = thr_of(value, sd)
        method = f"median of {len(new)} normal bodies (lower-mode start, iterated)"
        if new == normal:
            break
        normal = new
    if fluid_units is None:
        if not normal:  # cannot happen in practice: the lower mode itself is below its own threshold
            value, sd, thr, method = (
                mode,
                sd0,
                thr_of(mode, sd0),
                "lower mode of pooled marrow (no normal body)",
            )
        return Reference(value=value, sd=sd, threshold=thr, labels=normal, method=method, plausible=bool(normal))
    plausible = bool(normal) and value <= max_marrow_to_fluid * fluid_units
    if not plausible:
        why = (
            "no body stayed below the oedema decision"
            if not normal
            else f"normal-marrow estimate {value / fluid_units:.2f} x fluid exceeds {max_marrow_to_fluid:.2f}"
        )
        value = prior_marrow_to_fluid * fluid_units
        sd = sd0
        thr = thr_of(value, sd)
        method = f"prior {prior_marrow_to_fluid:.2f} x fluid ({why}: all bodies may be abnormal)"
        normal = ()
    return Reference(value=value, sd=sd, threshold=thr, labels=normal, method=method, plausible=plausible)


def _fraction(sample: BodySample, norm: float, thr: float, min_comp: float, spacing_mm: Sequence[float]) -> float:
    n = int(sample.eroded.sum())
    if n == 0:
        return 0.0
    return float(supra_threshold(sample, norm, thr, min_comp, spacing_mm).sum()) / n


# --------------------------------------------------------------------------- per-body result
@dataclass(frozen=True, eq=False)
class BodyMeasurement:
    label: int
    ratio: float  # body median / reference
    edema_fraction: float  # 0..1 of the eroded body
    edema: bool
    pattern: EdemaPattern
    supra: np.ndarray  # bool crop mask of supra-threshold voxels (after speck removal)
    thirds: tuple[float, float, float]  # supra-threshold share in the superior / middle / inferior third


def measure_body(
    sample: BodySample,
    norm: float,
    ref: Reference,
    *,
    spacing_mm: Sequence[float],
    mcfg: MeasurementConfig,
    dcfg: DecisionConfig,
) -> BodyMeasurement:
    """Ratio, oedema fraction, decision and pattern of one assessable body."""
    vals = sample.values() / norm
    ratio = float(np.median(vals)) / ref.value if ref.value > 0 else float("nan")
    supra = supra_threshold(sample, norm, ref.threshold, mcfg.min_component_mm3, spacing_mm)
    n = int(sample.eroded.sum())
    frac = float(supra.sum()) / n if n else 0.0
    edema = frac >= dcfg.edema_fraction_min
    rel = sample.rel_height[sample.eroded]
    sup = supra[sample.eroded]
    thirds = []
    for lo, hi in ((0.0, 1 / 3), (1 / 3, 2 / 3), (2 / 3, 1.0 + 1e-9)):
        sel = (rel >= lo) & (rel < hi)
        thirds.append(float(sup[sel].mean()) if sel.any() else 0.0)
    top, mid, bot = thirds
    pattern = classify_pattern((top, mid, bot), dcfg.band_far_to_near_max) if edema else EdemaPattern.NONE
    return BodyMeasurement(sample.label, ratio, frac, edema, pattern, supra, (top, mid, bot))


def classify_pattern(thirds: tuple[float, float, float], far_to_near_max: float) -> EdemaPattern:
    """Band vs diffuse from the supra-threshold share in the superior / middle / inferior third.

    Band under one endplate: involvement falls away from that endplate (near >= middle >= far) and the far
    third holds at most ``far_to_near_max`` of the near third's share. Bands under both endplates
    (biconcave): the middle third holds at most ``far_to_near_max`` of the less involved endplate third.
    Anything else is diffuse.
    """
    top, mid, bot = thirds
    near, far = max(top, bot), min(top, bot)
    if near <= 0:
        return EdemaPattern.DIFFUSE
    single = near >= mid >= far and far <= far_to_near_max * near
    double = mid <= far_to_near_max * far
    return EdemaPattern.BAND if single or double else EdemaPattern.DIFFUSE
