"""Imaging facts from the morphometry and STIR results: unknown stays unknown, with the reason."""

from __future__ import annotations

import pytest

from pipeline.eligibility import imaging_facts
from pipeline.levels import Level
from pipeline.model import (
    EdemaPattern,
    Heights,
    Morphology,
    PosteriorWall,
    StirAssessment,
    StirFinding,
    Substitute,
    VertebraMorphometry,
)


def morph(
    label: int,
    level: Level | None,
    grade: int | None = 2,
    loss: float | None = 35.0,
    *,
    assessable: bool = True,
    wall: PosteriorWall | None = None,
    shape: Morphology = Morphology.WEDGE,
) -> VertebraMorphometry:
    return VertebraMorphometry(
        label=label,
        level=level,
        assessable=assessable,
        reason="six-point" if assessable else "body cut by FOV",
        heights=Heights(15.0, 20.0, 24.0) if assessable else None,
        reference_height_mm=24.0,
        height_loss_pct=loss,
        genant_grade=grade,
        morphology=shape,
        posterior_wall=wall or PosteriorWall(True, "measured on T2", bulge_mm=1.5, canal_compromise_pct=12.0),
    )


def stir(
    findings: tuple[StirFinding, ...], status: str = "measured", substitute: Substitute | None = None
) -> StirAssessment:
    return StirAssessment(
        status=status,
        reason="ok" if status == "measured" else "no STIR series",
        series_uid="1.2.3",
        substitute=substitute,
        registration="same frame of reference",
        registration_residual_mm=None,
        reference_value=100.0,
        fluid_value=400.0,
        threshold_value=160.0,
        findings=findings,
    )


def finding(label: int, edema: bool | None, fraction: float | None = 0.5) -> StirFinding:
    return StirFinding(
        label=label,
        ratio=1.8 if edema else 1.0,
        edema_fraction=fraction,
        edema=edema,
        pattern=EdemaPattern.BAND if edema else EdemaPattern.NONE,
        confidence=0.9,
        reason="" if edema is not None else "body too small after erosion",
    )


def test_measured_values_pass_through_and_are_matched_by_label():
    facts = imaging_facts(
        [morph(2, Level.L1), morph(1, Level.T12, 0, 3.0, shape=Morphology.NORMAL)],
        stir((finding(1, False, 0.0), finding(2, True, 0.45))),
    )
    assert [f.name for f in facts] == ["T12", "L1"]  # cranial -> caudal by label
    l1 = facts[1]
    assert (l1.genant_grade, l1.height_loss_pct, l1.morphology) == (2, 35.0, Morphology.WEDGE)
    assert (l1.posterior_wall_bulge_mm, l1.canal_compromise_pct) == (1.5, 12.0)
    assert l1.stir_edema is True and l1.stir_edema_fraction == 0.45
    assert facts[0].stir_edema is False and facts[0].genant_grade == 0
    assert l1.notes == ()


def test_not_assessable_body_has_unknown_fracture_status():
    f = imaging_facts([morph(1, Level.L2, grade=0, loss=0.0, assessable=False)], None)[0]
    assert f.genant_grade is None and f.height_loss_pct is None and f.morphology is None
    assert any("not assessable: body cut by FOV" in n for n in f.notes)


def test_low_confidence_grade_does_not_decide_the_level():
    from dataclasses import replace

    doubtful = replace(morph(1, Level.L2), low_confidence=True, reliability_notes=("Hp 31 mm > 0.9 x spacing",))
    f = imaging_facts([doubtful], None)[0]
    assert f.genant_grade is None and f.height_loss_pct is None and f.morphology is None
    assert any("uncertain" in n and "low-confidence mask (Hp 31 mm > 0.9 x spacing)" in n for n in f.notes)
    assert f.posterior_wall_bulge_mm == 1.5  # the wall is measured on its own


def test_grade_at_the_fracture_threshold_is_unknown_but_the_loss_is_kept():
    from dataclasses import replace

    borderline = replace(morph(1, Level.L4, grade=0, loss=19.0, shape=Morphology.NORMAL), grade_uncertain=True)
    f = imaging_facts([borderline], None)[0]
    assert f.genant_grade is None and f.morphology is None and f.height_loss_pct == 19.0
    assert any("within the measurement uncertainty of the fracture threshold" in n for n in f.notes)


def test_missing_grade_is_unknown_not_zero():
    f = imaging_facts([morph(1, Level.L2, grade=None)], None)[0]
    assert f.genant_grade is None
    assert any("fracture status unknown" in n for n in f.notes)


def test_morphology_not_assessable_becomes_none():
    f = imaging_facts([morph(1, Level.L2, shape=Morphology.NOT_ASSESSABLE)], None)[0]
    assert f.morphology is None


def test_posterior_wall_not_assessable_is_unknown_never_zero():
    f = imaging_facts([morph(1, Level.L1, wall=PosteriorWall(False, "no CSF column on T2"))], None)[0]
    assert f.posterior_wall_bulge_mm is None and f.canal_compromise_pct is None
    assert any("no CSF column on T2" in n for n in f.notes)


@pytest.mark.parametrize(
    "assessment, note",
    [
        (None, "no STIR assessment"),
        (stir((), status="not_available"), "STIR not measured (not_available: no STIR series)"),
        (stir((finding(1, True),), status="failed"), "STIR not measured (failed"),
    ],
)
def test_no_stir_measurement_gives_unknown_oedema(assessment, note):
    f = imaging_facts([morph(1, Level.L1)], assessment)[0]
    assert f.stir_edema is None and f.stir_edema_fraction is None
    assert any(note in n and "bone scan" in n for n in f.notes)


def test_stir_finding_missing_or_not_assessable():
    facts = imaging_facts([morph(1, Level.L1), morph(2, Level.L2)], stir((finding(2, None, None),)))
    assert facts[0].stir_edema is None and any("no STIR finding" in n for n in facts[0].notes)
    assert facts[1].stir_edema is None and any("body too small" in n for n in facts[1].notes)


def test_substitute_sequence_is_flagged():
    f = imaging_facts([morph(1, Level.L1)], stir((finding(1, True),), substitute=Substitute.DIXON_WATER))[0]
    assert f.stir_edema is True
    assert any("DIXON_WATER" in n for n in f.notes)


def test_unlabelled_body_keeps_its_label():
    f = imaging_facts([morph(3, None)], None)[0]
    assert f.level is None and f.name == "vertebra #3"
