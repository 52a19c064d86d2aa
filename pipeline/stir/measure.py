"""Per-body STIR statistics from the samples of :mod:`pipeline.stir.sampling`.

Pieces, in the order :func:`pipeline.stir.assess.assess_stir` uses them after sampling:

1. :func:`fit_fluid_profile`: a smooth robust fit of the canal fluid signal along the column. CSF
   is the one tissue whose STIR signal is the same at every level, so this profile is a flat-field
   estimate of the coil / bias profile; marrow divided by it is in "fluid units" (CSF = 1).
2. :func:`estimate_reference`: normal marrow from the lower mode of the pooled marrow of candidate
   bodies, refined iteratively on the bodies that stay below the oedema decision; robust when
   several bodies are abnormal.
3. :func:`measure_body`: ratio, oedema fraction (share of the eroded body above the threshold, small
   specks removed), supra-threshold mask and pattern (band under an endplate vs diffuse).

All arrays are ``(slice, row, col)`` crops of the anatomy grid; all lengths are mm.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from pipeline.model import EdemaPattern
from pipeline.stir.config import DecisionConfig, MeasurementConfig, ReferenceConfig
from pipeline.stir.sampling import BodySample


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
