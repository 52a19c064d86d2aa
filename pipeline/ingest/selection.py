"""Choosing the series each later stage uses, and recording why every series was or was not used.

- Candidates are usable (no problems), analysed-modality (MR), SAGITTAL series.
- Anatomy: the best candidate of the first role in ``selection.anatomy_roles`` (T2, then T1). Falls back
  to the best STIR (warning), then to a sagittal series of unknown role (no rule matched), e.g. a NIfTI
  without sidecar (warning); never to a series recognised as OTHER (localizer, FLAIR, PD, diffusion...).
  ``anatomy`` is None when there is no candidate at all.
- STIR (oedema): ranked first by ``selection.stir_preference`` (true STIR before fat-saturated T2 before
  Dixon water), then by score. Substitutes are flagged in the warnings.
- T1 (corroboration): the anatomy series itself when it is a T1, else the best T1.

"Best" is a weighted score of coverage (imaged volume), in-plane resolution, number of slices, role
confidence and, for STIR / T1, sharing the anatomy's FrameOfReferenceUID; each term is relative to the
best candidate in the same comparison, so the weights in ``configs/ingest.yaml`` are comparable.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.ingest.config import IngestConfig, default_ingest_config
from pipeline.ingest.roles import NO_RULE
from pipeline.model import Orientation, Role, SeriesChoice, SeriesDecision, SeriesRecord, StudyRecord

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Scored:
    series: SeriesRecord
    score: float
    detail: str


def series_label(s: SeriesRecord) -> str:
    """Short human label: ``#5 't2_tse_sag' [SAGITTAL]`` (series number, description, stack)."""
    num = f"#{s.series_number} " if s.series_number is not None else ""
    stack = f" [{s.stack}]" if s.stack else ""
    return f"{num}'{s.description or s.series_uid}'{stack}"


def coverage_mm3(s: SeriesRecord) -> float:
    """Imaged volume: in-plane field of view times slab extent (slices x pitch), mm^3 (0 if unknown)."""
    if s.pixel_spacing_mm is None:
        return 0.0
    pitch = s.slice_spacing_mm or s.slice_thickness_mm or 0.0
    return s.rows * s.pixel_spacing_mm[0] * s.cols * s.pixel_spacing_mm[1] * s.n_images * pitch


def choose_series(study: StudyRecord, *, cfg: IngestConfig | None = None) -> SeriesChoice:
    """Pick anatomy, STIR and T1 series of a study, with a decision (used or not, and why) for every series.

    Parameters
    ----------
    study : StudyRecord
        From :func:`~pipeline.ingest.discovery.discover_study`.
    cfg : IngestConfig, optional
        Uses ``cfg.selection`` and ``cfg.discovery.modalities``; default the shipped configuration.

    Returns
    -------
    SeriesChoice
        ``anatomy`` is None when no usable sagittal series exists (``warnings`` says so). ``decisions`` has
        one entry per :class:`SeriesRecord` of the study, in the study's order. A series used for two
        purposes (a T1 or STIR that is also the anatomy) has ``used_as="anatomy"`` and its reason says
        what else it is used for; ``anatomy`` / ``stir`` / ``t1`` carry the full choice.
    """
    cfg = cfg or default_ingest_config()
    sel = cfg.selection
    reasons: dict[str, str] = {}
    candidates: list[SeriesRecord] = []
    for s in study.series:
        if s.problems:
            reasons[s.key] = f"not usable: {s.problems[0]}"
        elif s.modality not in cfg.discovery.modalities:
            allowed = ", ".join(cfg.discovery.modalities)
            reasons[s.key] = f"modality {s.modality or 'unknown'} is not analysed (only {allowed})"
        elif s.orientation is not Orientation.SAGITTAL:
            reasons[s.key] = f"{s.orientation.value.lower()} series: only sagittal series are analysed"
        else:
            candidates.append(s)
    warnings: list[str] = []
    used: dict[str, list[str]] = {}
    why_used: dict[str, list[str]] = {}

    def use(s: SeriesRecord, purpose: str, text: str) -> None:
        used.setdefault(s.key, []).append(purpose)
        why_used.setdefault(s.key, []).append(text)

    # ---- anatomy
    anatomy: SeriesRecord | None = None
    for role in sel.anatomy_roles:
        pool = [s for s in candidates if s.role is role and s.substitute is None]
        if pool:
            ranked = _rank(pool, cfg, reference=None)
            anatomy = ranked[0].series
            use(anatomy, "anatomy", f"anatomy: best sagittal {role.value} of {len(pool)} ({ranked[0].detail})")
            _note_losers(ranked, reasons, f"sagittal {role.value} not chosen for anatomy")
            break
    if anatomy is None and sel.stir_as_anatomy_fallback:
        stir_pool = _stir_ranked(candidates, cfg, reference=None)
        if stir_pool:
            anatomy = stir_pool[0].series
            use(
                anatomy,
                "anatomy",
                f"anatomy (fallback): no sagittal {'/'.join(r.value for r in sel.anatomy_roles)}; "
                f"best STIR-type series ({stir_pool[0].detail})",
            )
            warnings.append(
                f"no sagittal {' or '.join(r.value for r in sel.anatomy_roles)} series: the STIR-type series "
                f"{series_label(anatomy)} is used for anatomy; segmentation may be less reliable"
            )
    if anatomy is None and sel.other_as_anatomy_fallback:
        # Only series of *unknown* role: one recognised as OTHER (localizer, FLAIR, PD, diffusion, post-contrast,
        # Dixon fat...) is known not to be a T1/T2 anatomy image.
        pool = [s for s in candidates if s.role is Role.OTHER and s.role_rule.startswith(NO_RULE)]
        if pool:
            ranked = _rank(pool, cfg, reference=None)
            anatomy = ranked[0].series
            use(anatomy, "anatomy", f"anatomy (fallback): sagittal series of role OTHER ({ranked[0].detail})")
            warnings.append(
                f"no sagittal series recognised as {'/'.join(r.value for r in sel.anatomy_roles)}/STIR: "
                f"{series_label(anatomy)} (role OTHER: {anatomy.role_rule}) is used for anatomy; "
                "check that it is a T1- or T2-weighted sagittal image"
            )
            _note_losers(ranked, reasons, "sagittal OTHER not chosen for anatomy")
    if anatomy is None:
        warnings.append("no usable sagittal series: nothing can be measured in this study")

    # ---- STIR
    stir: SeriesRecord | None = None
    ranked_stir = _stir_ranked(candidates, cfg, reference=anatomy)
    if ranked_stir:
        stir = ranked_stir[0].series
        kind = stir.substitute.value if stir.substitute else "true STIR"
        use(stir, "stir", f"STIR for oedema: {kind}, best of {len(ranked_stir)} ({ranked_stir[0].detail})")
        if stir.substitute is not None:
            warnings.append(
                f"no true STIR: {series_label(stir)} ({stir.substitute.value}) stands in for STIR; "
                "oedema findings are flagged and less certain"
            )
        _note_losers(ranked_stir, reasons, "STIR-type series not chosen")
    elif anatomy is not None:
        warnings.append(
            "no sagittal STIR, fat-saturated T2 or Dixon water series: marrow oedema cannot be assessed from this study"
        )

    # ---- T1
    t1: SeriesRecord | None = None
    if anatomy is not None and anatomy.role is Role.T1:
        t1 = anatomy
        use(t1, "t1", "T1 for corroboration: the anatomy series is a T1")
    else:
        pool = [s for s in candidates if s.role is Role.T1]
        if pool:
            ranked = _rank(pool, cfg, reference=anatomy)
            t1 = ranked[0].series
            use(t1, "t1", f"T1 for corroboration: best sagittal T1 of {len(pool)} ({ranked[0].detail})")
            _note_losers(ranked, reasons, "sagittal T1 not chosen")
        elif anatomy is not None:
            warnings.append("no sagittal T1 series: oedema is not corroborated on T1")

    decisions = []
    for s in study.series:
        if s.key in used:
            decisions.append(
                SeriesDecision(s.series_uid, True, used[s.key][0], "; also ".join(why_used[s.key]), stack=s.stack)
            )
        else:
            reason = reasons.get(s.key) or f"sagittal {s.role.value}: not needed for anatomy, STIR or T1"
            decisions.append(SeriesDecision(s.series_uid, False, None, reason, stack=s.stack))
    for w in warnings:
        logger.info("study %s: %s", study.study_uid, w)
    return SeriesChoice(anatomy=anatomy, stir=stir, t1=t1, decisions=tuple(decisions), warnings=tuple(warnings))


# --------------------------------------------------------------------------- scoring
def _rank(pool: Sequence[SeriesRecord], cfg: IngestConfig, *, reference: SeriesRecord | None) -> list[_Scored]:
    w = cfg.selection.weights
    cov = {s.key: coverage_mm3(s) for s in pool}
    area = {s.key: (s.pixel_spacing_mm[0] * s.pixel_spacing_mm[1]) if s.pixel_spacing_mm else 0.0 for s in pool}
    best_cov = max(cov.values()) or 1.0
    best_area = min((a for a in area.values() if a > 0), default=1.0)
    most = max(s.n_images for s in pool) or 1
    scored = []
    for s in pool:
        c = cov[s.key] / best_cov
        r = best_area / area[s.key] if area[s.key] > 0 else 0.0
        n = s.n_images / most
        same_for = bool(
            reference is not None
            and s.frame_of_reference_uid
            and s.frame_of_reference_uid == reference.frame_of_reference_uid
        )
        score = (
            w.coverage * c
            + w.resolution * r
            + w.slices * n
            + w.confidence * s.role_confidence
            + (w.same_frame_of_reference if same_for else 0.0)
        )
        ps = f"{s.pixel_spacing_mm[0]:.2f}x{s.pixel_spacing_mm[1]:.2f} mm" if s.pixel_spacing_mm else "pixel ?"
        detail = (
            f"score {score:.2f}: coverage {100 * c:.0f}% of best, pixel {ps}, {s.n_images} slices, "
            f"role confidence {s.role_confidence:.2f}" + (", same frame of reference" if same_for else "")
        )
        scored.append(_Scored(s, score, detail))
    scored.sort(
        key=lambda x: (
            -x.score,
            x.series.series_number if x.series.series_number is not None else 1 << 31,
            x.series.key,
        )
    )
    return scored


def _stir_ranked(
    candidates: Sequence[SeriesRecord], cfg: IngestConfig, *, reference: SeriesRecord | None
) -> list[_Scored]:
    order = {name: i for i, name in enumerate(cfg.selection.stir_preference)}
    pool = [s for s in candidates if s.role is Role.STIR and (s.substitute.value if s.substitute else "STIR") in order]
    if not pool:
        return []
    ranked = _rank(pool, cfg, reference=reference)
    ranked.sort(key=lambda x: order[x.series.substitute.value if x.series.substitute else "STIR"])  # stable
    return ranked


def _note_losers(ranked: Sequence[_Scored], reasons: dict[str, str], prefix: str) -> None:
    if not ranked:
        return
    top = ranked[0]
    for x in ranked[1:]:
        if x.series.key not in reasons:
            why = "preferred type (selection.stir_preference)" if x.score > top.score else f"winner {top.score:.2f}"
            reasons[x.series.key] = f"{prefix}: ranked below {series_label(top.series)} ({x.detail}; {why})"
