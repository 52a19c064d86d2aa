"""STIR marrow oedema per vertebral body: the stage function :func:`assess_stir`.

Method (details in the helper modules):

1. STIR onto the anatomy grid (:mod:`pipeline.stir.register`).
2. In-plane smoothing (``smoothing_mm``), bodies eroded by ``erosion_mm`` (plus half of any extra STIR
   voxel extent), canal fluid sampled behind each body (:mod:`pipeline.stir.sampling`).
3. Flat field: marrow divided by a smooth robust fit of the canal fluid along the column, so a coil /
   bias profile cancels and everything is in "fluid units" (CSF = 1).
4. Normal marrow: lower mode of the pooled marrow of the non-sacral, non-deformed bodies, iterated on the
   bodies that stay normal; implausibly bright relative to fluid -> prior and low confidence.
5. Voxel threshold: reference + ``k`` robust SD of normal marrow, and at least ``floor`` of the way from
   normal marrow to fluid. Oedema fraction = share of the eroded body above it (specks removed);
   oedema when the fraction reaches ``edema_fraction_min``; pattern from where the voxels sit between
   the endplates.
6. T1 corroboration (oedema is T1-dark) and confidence factors.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np

from pipeline.errors import InputError
from pipeline.model import (
    EdemaPattern,
    LoadedSeries,
    SegmentationResult,
    StirAssessment,
    StirFinding,
    StirStatus,
    Substitute,
    VertebraSeg,
)
from pipeline.stir.config import StirConfig
from pipeline.stir.measure import (
    BodyMeasurement,
    FluidProfile,
    Reference,
    estimate_reference,
    fit_fluid_profile,
    measure_body,
)
from pipeline.stir.register import GridResult, RegistrationFailed, bring_onto_grid
from pipeline.stir.sampling import BodySample, erosion_radii_mm, sample_bodies, short_bodies, smooth_inplane
from pipeline.volume import Volume

logger = logging.getLogger(__name__)

NOT_AVAILABLE_REASON = (
    "no fluid-sensitive fat-suppressed series (STIR/TIRM, fat-sat T2, Dixon water): oedema cannot be "
    "assessed from this study; the guideline's alternative is a bone scan / SPECT (JNCCN 2010, Table 1)"
)
_SUBSTITUTE_NAMES = {
    Substitute.T2_FATSAT: "fat-saturated T2 (SPAIR/CHESS)",
    Substitute.DIXON_WATER: "Dixon water image",
}


def assess_stir(
    anatomy: LoadedSeries,
    segmentation: SegmentationResult,
    stir: LoadedSeries | None,
    *,
    cfg: StirConfig,
    t1: LoadedSeries | None = None,
    deformity: Mapping[int, bool] | None = None,
) -> StirAssessment:
    """Marrow oedema (STIR hyperintensity) of every segmented vertebral body.

    Parameters
    ----------
    anatomy : LoadedSeries
        The series the segmentation was made on, shape ``(S, R, C)``.
    segmentation : SegmentationResult
        ``labels`` (uint16, anatomy grid) and ``vertebrae`` (cranial -> caudal).
    stir : LoadedSeries or None
        Fluid-sensitive fat-suppressed series (STIR/TIRM, or a substitute: ``stir.substitute`` set, flagged,
        lower confidence); its volume may be the anatomy's. Its series UID is recorded in the result.
        None -> ``StirStatus.NOT_AVAILABLE``.
        Same frame of reference as the anatomy -> resampling with the scanner geometry (plus a motion check);
        unknown -> the same, labelled so; different -> rigid registration (:func:`LoadedSeries.same_frame`).
    cfg : StirConfig
    t1 : LoadedSeries, optional
        T1-weighted series for corroboration (oedema is T1-dark); brought onto the grid like ``stir``.
    deformity : mapping label -> bool, optional
        True for bodies with height loss: excluded from the normal-marrow reference.

    Returns
    -------
    StirAssessment
        ``status`` measured, not available or failed (with ``reason``); one finding per vertebra.
        ``stir_on_grid`` is the STIR on the anatomy grid; ``edema_map`` (uint8 0/1, anatomy grid) marks the
        supra-threshold voxels of the bodies called oedematous.
    """
    if not segmentation.labels.same_grid(anatomy.volume):
        raise InputError(
            f"segmentation of series {segmentation.series_uid} is not on the anatomy grid "
            f"({segmentation.labels.shape} vs {anatomy.volume.shape}); pass the series the segmentation was made on"
        )
    verts = tuple(segmentation.vertebrae)
    if stir is None:
        return _unmeasured(
            StirStatus.NOT_AVAILABLE,
            NOT_AVAILABLE_REASON,
            verts,
            None,
            None,
            "none",
            "no fluid-sensitive fat-suppressed series",
        )
    if not verts:
        return _unmeasured(
            StirStatus.FAILED,
            "no vertebral bodies were segmented; nothing to assess",
            verts,
            stir.series_uid,
            stir.substitute,
            "none",
            "no bodies",
        )
    landmarks = [v.centroid_lps_mm for v in verts]
    region = _column_region(segmentation.labels, cfg.registration.mask_margin_mm)
    try:
        grid = bring_onto_grid(
            anatomy.volume,
            stir.volume,
            same_frame=stir.same_frame(anatomy),
            landmarks_lps=landmarks,
            region=region,
            cfg=cfg.registration,
            what="STIR",
        )
    except RegistrationFailed as exc:
        logger.warning("STIR series %s: %s", stir.series_uid, exc)
        return _unmeasured(
            StirStatus.FAILED,
            f"STIR not usable: {exc}",
            verts,
            stir.series_uid,
            stir.substitute,
            "rigid MI (failed)",
            "STIR could not be registered to the anatomy series",
        )
    return _measure(anatomy, segmentation, stir, grid, cfg=cfg, t1=t1, deformity=deformity or {}, region=region)


# --------------------------------------------------------------------------- helpers
def _unmeasured(
    status: StirStatus,
    reason: str,
    verts: Sequence[VertebraSeg],
    series_uid: str | None,
    substitute: Substitute | None,
    registration: str,
    short: str,
) -> StirAssessment:
    findings = tuple(
        StirFinding(
            label=v.label,
            ratio=None,
            edema_fraction=None,
            edema=None,
            pattern=EdemaPattern.NOT_ASSESSABLE,
            confidence=0.0,
            reason=short,
        )
        for v in verts
    )
    return StirAssessment(
        status=status,
        reason=reason,
        series_uid=series_uid,
        substitute=substitute,
        registration=registration,
        registration_residual_mm=None,
        reference_value=None,
        fluid_value=None,
        threshold_value=None,
        findings=findings,
    )


def _column_region(labels: Volume, margin_mm: float) -> tuple[slice, slice, slice] | None:
    nz = np.nonzero(np.asarray(labels.array))
    if not nz[0].size:
        return None
    pad = [int(np.ceil(margin_mm / p)) for p in labels.spacing_mm]
    return tuple(
        slice(max(0, int(ix.min()) - p), min(n, int(ix.max()) + 1 + p))
        for ix, p, n in zip(nz, pad, labels.shape, strict=True)
    )  # type: ignore[return-value]


def _measure(
    loaded: LoadedSeries,
    segmentation: SegmentationResult,
    stir: LoadedSeries,
    grid: GridResult,
    *,
    cfg: StirConfig,
    t1: LoadedSeries | None,
    deformity: Mapping[int, bool],
    region: tuple[slice, slice, slice] | None,
) -> StirAssessment:
    mcfg, rcfg, dcfg = cfg.measurement, cfg.reference, cfg.decision
    anatomy, substitute, stir_series_uid = loaded.volume, stir.substitute, stir.series_uid
    verts = tuple(segmentation.vertebrae)
    warnings: list[str] = list(grid.warnings)
    sp = anatomy.spacing_mm
    smooth = smooth_inplane(grid.volume, mcfg.smoothing_mm)
    radii = erosion_radii_mm(anatomy, stir.volume, mcfg.erosion_mm)
    samples = sample_bodies(segmentation.labels, verts, smooth, grid.valid, erosion_radii=radii, cfg=mcfg)
    by_label = {s.label: s for s in samples}
    assessable = [s for s in samples if s.assessable]
    if not assessable:
        return _finish_unassessable(
            verts,
            samples,
            grid,
            stir_series_uid,
            substitute,
            "no vertebral body large enough inside the STIR field of view",
        )

    profile = fit_fluid_profile(samples, mcfg)
    if profile is None:
        warnings.append(
            "no canal fluid (CSF) found behind the bodies: marrow not flat-field corrected and the threshold "
            "floor assumes a typical marrow/fluid contrast; lower confidence"
        )
        norms = {s.label: 1.0 for s in samples}
        fluid_units: float | None = None
    else:
        norms = {s.label: profile.fitted[s.label] for s in samples}
        fluid_units = 1.0
        if profile.rejected_labels:
            warnings.append(
                f"canal fluid behind label(s) {', '.join(map(str, profile.rejected_labels))} did not follow "
                "the column's fluid profile (narrow canal or flow artefact?); not used for the flat field"
            )

    candidates = [s.label for s in assessable if not s.is_sacrum and not deformity.get(s.label, False)]
    if len(candidates) < rcfg.min_reference_bodies:
        extra = [s.label for s in assessable if not s.is_sacrum and s.label not in candidates]
        if extra:
            warnings.append(
                f"only {len(candidates)} non-deformed bodies available for the normal-marrow reference; "
                f"deformed label(s) {', '.join(map(str, extra))} included as candidates"
            )
            candidates = sorted(candidates + extra)
    if not candidates:
        return _finish_unassessable(
            verts,
            samples,
            grid,
            stir_series_uid,
            substitute,
            "no non-sacral vertebral body available as a normal-marrow reference",
        )

    sub = substitute is not None
    ref = estimate_reference(
        samples,
        norms,
        candidates,
        fluid_units=fluid_units,
        max_marrow_to_fluid=rcfg.max_marrow_to_fluid_substitute if sub else rcfg.max_marrow_to_fluid,
        prior_marrow_to_fluid=rcfg.prior_marrow_to_fluid_substitute if sub else rcfg.prior_marrow_to_fluid,
        spacing_mm=sp,
        rcfg=rcfg,
        dcfg=dcfg,
        mcfg=mcfg,
    )
    if not ref.plausible:
        warnings.append(f"normal-marrow reference: {ref.method}; every decision has low confidence")
    elif len(ref.labels) < rcfg.min_reference_bodies:
        warnings.append(f"normal-marrow reference from only {len(ref.labels)} body; lower confidence")
    if sub:
        name = _SUBSTITUTE_NAMES[substitute]  # type: ignore[index]
        warnings.append(f"oedema assessed on a {name} instead of STIR (flagged substitute, lower confidence)")
    logger.info(
        "STIR reference: %s, value %.3f, sd %.3f, threshold %.3f (%s units)",
        ref.method,
        ref.value,
        ref.sd,
        ref.threshold,
        "fluid" if fluid_units else "raw",
    )

    measured = {s.label: measure_body(s, norms[s.label], ref, spacing_mm=sp, mcfg=mcfg, dcfg=dcfg) for s in assessable}
    t1_result = _t1_corroboration(
        anatomy,
        t1.volume if t1 is not None else None,
        verts,
        by_label,
        measured,
        ref,
        grid,
        region,
        same_frame=t1.same_frame(loaded) if t1 is not None else None,
        cfg=cfg,
        warnings=warnings,
    )

    short = short_bodies(assessable, dcfg.short_body_ratio)
    findings = []
    edema_map = np.zeros(anatomy.shape, dtype=np.uint8)
    quality = {v.label: v.quality for v in verts}
    for v in verts:
        s = by_label[v.label]
        m = measured.get(v.label)
        if m is None:
            findings.append(
                StirFinding(v.label, None, None, None, EdemaPattern.NOT_ASSESSABLE, 0.0, s.reason or "not assessable")
            )
            continue
        agrees, t1_ratio = t1_result.get(v.label, (None, None))
        conf, notes = _confidence(m, ref, profile, grid, sub, agrees, quality[v.label], cfg, short.get(v.label))
        if m.edema:
            edema_map[s.crop][m.supra] = 1
        findings.append(
            StirFinding(
                label=v.label,
                ratio=m.ratio,
                edema_fraction=m.edema_fraction,
                edema=m.edema,
                pattern=m.pattern,
                confidence=conf,
                reason=_reason(m, s, dcfg.edema_fraction_min, notes),
                t1_agrees=agrees,
                t1_ratio=t1_ratio,
                thirds=m.thirds,
                eroded_volume_mm3=s.eroded_volume_mm3,
            )
        )
    n_ed = sum(1 for f in findings if f.edema)
    n_ok = sum(1 for f in findings if f.edema is not None)
    scale = profile.median if profile is not None else 1.0
    return StirAssessment(
        status=StirStatus.MEASURED,
        reason=f"{n_ed} of {n_ok} assessable bodies with STIR hyperintensity; reference: {ref.method}",
        series_uid=stir_series_uid,
        substitute=substitute,
        registration=grid.method,
        registration_residual_mm=grid.residual_mm,
        reference_value=ref.value * scale,
        fluid_value=profile.median if profile is not None else None,
        threshold_value=ref.threshold * scale,
        findings=tuple(findings),
        warnings=tuple(warnings),
        stir_on_grid=grid.volume,
        edema_map=anatomy.with_array(edema_map),
        registration_correction_mm=grid.correction_mm,
        registration_matrix_lps=_matrix(grid),
        reference_method=ref.method,
        reference_labels=ref.labels,
        reference_plausible=ref.plausible,
        reference_to_fluid_ratio=ref.value if fluid_units else None,
        threshold_to_fluid_ratio=ref.threshold if fluid_units else None,
        fluid_profile_labels=profile.used_labels if profile is not None else (),
    )


def _matrix(grid: GridResult) -> tuple[tuple[float, ...], ...] | None:
    if grid.matrix_lps is None:
        return None
    return tuple(tuple(round(float(x), 6) for x in row) for row in grid.matrix_lps)


def _finish_unassessable(
    verts: Sequence[VertebraSeg],
    samples: Sequence[BodySample],
    grid: GridResult,
    series_uid: str | None,
    substitute: Substitute | None,
    reason: str,
) -> StirAssessment:
    by_label = {s.label: s for s in samples}
    findings = tuple(
        StirFinding(v.label, None, None, None, EdemaPattern.NOT_ASSESSABLE, 0.0, by_label[v.label].reason or reason)
        for v in verts
    )
    return StirAssessment(
        status=StirStatus.FAILED,
        reason=reason,
        series_uid=series_uid,
        substitute=substitute,
        registration=grid.method,
        registration_residual_mm=grid.residual_mm,
        reference_value=None,
        fluid_value=None,
        threshold_value=None,
        findings=findings,
        warnings=grid.warnings,
        stir_on_grid=grid.volume,
        registration_correction_mm=grid.correction_mm,
        registration_matrix_lps=_matrix(grid),
    )


def _reason(m: BodyMeasurement, s: BodySample, fmin: float, notes: Sequence[str]) -> str:
    if m.edema:
        head = (
            f"STIR hyperintense ({m.pattern.value}): {m.edema_fraction:.0%} of the eroded body above the "
            f"oedema threshold, median {m.ratio:.2f} x normal marrow"
        )
    else:
        head = (
            f"no STIR hyperintensity: {m.edema_fraction:.0%} of the eroded body above the oedema threshold "
            f"(oedema from {fmin:.0%}), median {m.ratio:.2f} x normal marrow"
        )
    extra = (["sacrum: measured, not part of the reference"] if s.is_sacrum else []) + list(notes)
    return head + ("; " + "; ".join(extra) if extra else "")


def _confidence(
    m: BodyMeasurement,
    ref: Reference,
    profile: FluidProfile | None,
    grid: GridResult,
    substitute: bool,
    t1_agrees: bool | None,
    quality: float,
    cfg: StirConfig,
    short: tuple[float, float] | None = None,
) -> tuple[float, list[str]]:
    """Confidence 0..1 as a product of factors, and the notes explaining the reductions.

    ``short``: (height, neighbours' height) of a body much shorter than its neighbours.
    """
    c = cfg.confidence
    margin = abs(m.edema_fraction - cfg.decision.edema_fraction_min) / c.margin_scale
    conf = 0.5 + 0.5 * min(1.0, margin)
    notes = []
    if margin < 1.0:
        notes.append("close to the decision threshold")
    if substitute:
        conf *= c.substitute_factor
        notes.append("substitute series")
    if t1_agrees is False:
        conf *= c.t1_disagreement_factor
        notes.append("T1 does not corroborate" if m.edema else "T1 shows darkening without STIR hyperintensity")
    if grid.registered:
        conf *= c.registered_factor
    if not ref.plausible:
        conf *= c.prior_reference_factor
        notes.append("no trustworthy normal-marrow reference")
    elif len(ref.labels) < cfg.reference.min_reference_bodies:
        conf *= c.few_reference_factor
        notes.append("reference from few bodies")
    if profile is None:
        conf *= c.no_fluid_factor
        notes.append("no canal fluid for scale")
    if short is not None and not m.edema:
        conf *= c.short_body_factor
        notes.append(
            f"body {short[0]:.0f} mm tall vs {short[1]:.0f} mm for its neighbours: collapsed, or the segmentation "
            "left out part of it (an oedematous band next to the disc looks like disc on T2); check the STIR"
        )
    conf *= 0.5 + 0.5 * float(np.clip(quality, 0.0, 1.0))
    return float(np.clip(conf, 0.0, 1.0)), notes


def _t1_corroboration(
    anatomy: Volume,
    t1: Volume | None,
    verts: Sequence[VertebraSeg],
    samples: Mapping[int, BodySample],
    measured: Mapping[int, BodyMeasurement],
    ref: Reference,
    stir_grid: GridResult,
    region: tuple[slice, slice, slice] | None,
    *,
    same_frame: bool | None,
    cfg: StirConfig,
    warnings: list[str],
) -> dict[int, tuple[bool | None, float | None]]:
    """label -> (t1_agrees, t1_ratio).

    Oedematous body: T1 of its supra-threshold voxels / T1 of normal marrow (the nearest, up to two,
    other normal bodies); agrees when the ratio is at most ``1 - t1_min_drop``. Body without oedema: T1
    of its eroded body / the same neighbours' normal marrow; agrees when above ``1 - t1_min_drop`` (no
    unexplained darkening).
    Using one neighbour on each side where possible cancels a linear T1 bias along the column.
    """
    if t1 is None:
        return {}
    dcfg = cfg.decision
    try:
        t1_grid = bring_onto_grid(
            anatomy,
            t1,
            same_frame=same_frame,
            landmarks_lps=[v.centroid_lps_mm for v in verts],
            region=region,
            cfg=cfg.registration,
            what="T1",
        )
    except RegistrationFailed as exc:
        warnings.append(f"T1 not used for corroboration: {exc}")
        return {}
    warnings.extend(t1_grid.warnings)
    t1s = smooth_inplane(t1_grid.volume, cfg.measurement.smoothing_mm)
    order = [v.label for v in verts]
    normal_pool = [lab for lab in ref.labels] or [lab for lab, m in measured.items() if not m.edema]

    def vals(lab: int, mask: np.ndarray) -> np.ndarray:
        s = samples[lab]
        sel = mask & t1_grid.valid[s.crop]
        return np.asarray(t1s[s.crop][sel], dtype=float)

    out: dict[int, tuple[bool | None, float | None]] = {}
    for lab, m in measured.items():
        others = sorted(
            (lab2 for lab2 in normal_pool if lab2 != lab),
            key=lambda x: abs(order.index(x) - order.index(lab)),
        )
        above = [x for x in others if order.index(x) < order.index(lab)][:1]
        below = [x for x in others if order.index(x) > order.index(lab)][:1]
        neigh = above + below if above and below else others[:2]
        if not neigh:
            out[lab] = (None, None)
            continue
        normal = np.concatenate([vals(x, samples[x].eroded) for x in neigh])
        probe = vals(lab, m.supra) if m.edema else vals(lab, samples[lab].eroded)
        if normal.size < dcfg.t1_min_voxels or probe.size < dcfg.t1_min_voxels:
            out[lab] = (None, None)
            continue
        normal_med = float(np.median(normal))
        if normal_med <= 0:
            out[lab] = (None, None)
            continue
        r = float(np.median(probe)) / normal_med
        agrees = r <= 1.0 - dcfg.t1_min_drop if m.edema else r > 1.0 - dcfg.t1_min_drop
        out[lab] = (bool(agrees), r)
    return out
