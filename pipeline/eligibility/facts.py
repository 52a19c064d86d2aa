"""Imaging facts per vertebra, as the eligibility rules read them.

Built from the morphometry and STIR stages' results (:mod:`pipeline.model`). Unknown stays unknown:
a body whose morphometry is not assessable, or has no Genant grade, has an *unknown* fracture status
(``None``), never "no fracture"; no STIR series (or a STIR stage that did not measure) gives unknown
oedema at every level, and the reason is kept so that the report can say why.
No threshold is applied here: the rules (``configs/eligibility.yaml``) decide what the numbers mean.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.levels import Level
from pipeline.model import GradeState, Morphology, StirAssessment, StirFinding, StirStatus, VertebraMorphometry

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LevelFacts:
    """What imaging says about one vertebral body (``None`` = not known, see ``notes``).

    Attributes
    ----------
    label : int
        Label value of the body in the segmentation (identifies it when ``level`` is unknown).
    level : Level or None
        Level name, ``None`` when labelling failed.
    genant_grade : int or None
        Genant semi-quantitative grade 0-3.
    height_loss_pct : float or None
        Height loss, % of the expected (reference) height, 0-100.
    morphology : Morphology or None
        Shape; ``None`` when not assessable.
    posterior_wall_bulge_mm : float or None
        Bulge of the posterior cortex into the canal, mm (displacement, not proof of a cortical break).
    canal_compromise_pct : float or None
        Sagittal canal compromise at the level, % of the expected canal diameter.
    stir_edema : bool or None
        Marrow oedema on STIR (or a flagged substitute).
    stir_edema_fraction : float or None
        Share of the body above the oedema threshold, 0-1.
    notes : tuple of str
        Why a fact is unknown, or qualifications (substitute sequence, low confidence).
    """

    label: int
    level: Level | None
    genant_grade: int | None = None
    height_loss_pct: float | None = None
    morphology: Morphology | None = None
    posterior_wall_bulge_mm: float | None = None
    canal_compromise_pct: float | None = None
    stir_edema: bool | None = None
    stir_edema_fraction: float | None = None
    notes: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """``"L1"``, or ``"vertebra #3"`` when the level is unknown."""
        return self.level.value if self.level is not None else f"vertebra #{self.label}"


def imaging_facts(morphometry: Sequence[VertebraMorphometry], stir: StirAssessment | None) -> tuple[LevelFacts, ...]:
    """Combine morphometry and STIR results into one :class:`LevelFacts` per vertebral body.

    Parameters
    ----------
    morphometry : sequence of VertebraMorphometry
        One per segmented body (any order); matched to STIR findings by ``label``.
    stir : StirAssessment or None
        ``None`` or a ``status`` other than ``"measured"`` makes oedema unknown at every level.

    Returns
    -------
    tuple of LevelFacts
        Cranial to caudal (by segmentation label, which runs cranial -> caudal), one per body.
    """
    findings: dict[int, StirFinding] = {}
    stir_note = ""
    if stir is None:
        stir_note = "no STIR assessment (no fluid-sensitive fat-suppressed series); a bone scan/SPECT can stand in"
    elif stir.status != StirStatus.MEASURED:
        stir_note = f"STIR not measured ({stir.status}: {stir.reason}); a bone scan/SPECT can stand in"
    else:
        findings = {f.label: f for f in stir.findings}

    out = []
    for m in morphometry:
        notes: list[str] = []
        grade = height = bulge = canal = None
        morph: Morphology | None = None
        shown = m.grade_display  # the same decision every output shows (pipeline.model.grade_display)
        if m.assessable and m.low_confidence:
            # A grade measured on a doubtful mask must not decide a level either way: fracture status unknown.
            notes.append(f"Genant {shown.short} uncertain: {shown.note}")
        elif m.assessable:
            grade = m.genant_grade
            height = m.height_loss_pct
            morph = None if m.morphology is Morphology.NOT_ASSESSABLE else m.morphology
            if grade is None:
                notes.append("no Genant grade: fracture status unknown")
            elif shown.state is GradeState.UNCERTAIN:
                # keep the measured loss (other rules read it) but do not decide fractured-or-not on it
                grade, morph = None, None
                notes.append(f"Genant {shown.short} uncertain: {shown.note}")
        else:
            notes.append(f"morphometry not assessable: {m.reason}")
        wall = m.posterior_wall
        if wall.assessable:
            bulge = wall.bulge_mm
            canal = wall.canal_compromise_pct
        else:
            notes.append(f"posterior wall not assessable: {wall.reason}")

        edema: bool | None = None
        fraction: float | None = None
        if stir_note:
            notes.append(stir_note)
        else:
            assert stir is not None
            finding = findings.get(m.label)
            if finding is None:
                notes.append("no STIR finding for this body")
            else:
                edema = finding.edema
                fraction = finding.edema_fraction
                if edema is None:
                    notes.append(f"STIR oedema not assessable: {finding.reason}")
                if stir.substitute is not None:
                    notes.append(f"oedema read on a STIR substitute ({stir.substitute.value}), lower confidence")
        out.append(
            LevelFacts(
                label=m.label,
                level=m.level,
                genant_grade=grade,
                height_loss_pct=height,
                morphology=morph,
                posterior_wall_bulge_mm=bulge,
                canal_compromise_pct=canal,
                stir_edema=edema,
                stir_edema_fraction=fraction,
                notes=tuple(notes),
            )
        )
    out.sort(key=lambda f: f.label)
    return tuple(out)
