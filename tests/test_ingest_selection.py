"""Series choice: anatomy / STIR / T1 with a recorded reason for every series (records built in memory)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from pipeline.ingest import choose_series, load_ingest_config
from pipeline.ingest.config import SelectionConfig
from pipeline.model import Orientation, Role, SeriesRecord, StudyRecord, Substitute

CFG = load_ingest_config()
_n = iter(range(1, 1000))


def rec(
    role: Role,
    *,
    orientation=Orientation.SAGITTAL,
    sub=None,
    n=15,
    ps=(0.7, 0.7),
    rows=320,
    cols=320,
    spacing=4.0,
    conf=0.9,
    problems=(),
    modality="MR",
    frame="1.2.3",
    desc=None,
    rule="name rule",
) -> SeriesRecord:
    num = next(_n)
    return SeriesRecord(
        study_uid="1.2",
        series_uid=f"1.2.{num}",
        frame_of_reference_uid=frame,
        modality=modality,
        description=desc or f"{role.value.lower()}_{num}",
        series_number=num,
        orientation=orientation,
        role=role,
        role_rule=rule,
        role_confidence=conf,
        substitute=sub,
        n_images=n,
        rows=rows,
        cols=cols,
        pixel_spacing_mm=ps,
        slice_thickness_mm=spacing,
        transfer_syntaxes=("1.2.840.10008.1.2.1",),
        files=(Path(f"/x/{num}"),),
        problems=tuple(problems),
        slice_spacing_mm=spacing,
    )


def study(*series: SeriesRecord) -> StudyRecord:
    return StudyRecord("1.2", "pk-x", "MR L-SPINE", "20240101", tuple(series), Path("/x"))


def decision(choice, s: SeriesRecord):
    (d,) = [d for d in choice.decisions if d.series_uid == s.series_uid and d.stack == s.stack]
    return d


def test_full_study_t2_anatomy_stir_and_t1():
    t2, t1, stir = rec(Role.T2), rec(Role.T1), rec(Role.STIR)
    ax = rec(Role.T2, orientation=Orientation.AXIAL)
    loc = rec(Role.OTHER, n=1, problems=("series 1.2.x: single-slice series",))
    ct = rec(Role.OTHER, modality="CT")
    choice = choose_series(study(loc, t2, t1, stir, ax, ct), cfg=CFG)
    assert (choice.anatomy, choice.stir, choice.t1) == (t2, stir, t1)
    assert choice.warnings == ()
    assert len(choice.decisions) == 6
    assert decision(choice, t2).used_as == "anatomy" and "best sagittal T2 of 1" in decision(choice, t2).reason
    assert decision(choice, stir).used_as == "stir" and "true STIR" in decision(choice, stir).reason
    assert decision(choice, t1).used_as == "t1"
    assert not decision(choice, ax).used and "axial series: only sagittal" in decision(choice, ax).reason
    assert "not usable: series 1.2.x: single-slice series" in decision(choice, loc).reason
    assert "modality CT is not analysed" in decision(choice, ct).reason


def test_t2_preferred_over_t1_unless_configured():
    t2, t1 = rec(Role.T2, ps=(1.0, 1.0)), rec(Role.T1, ps=(0.5, 0.5))
    assert choose_series(study(t1, t2), cfg=CFG).anatomy == t2
    t1_first = replace(CFG, selection=replace(CFG.selection, anatomy_roles=(Role.T1, Role.T2)))
    choice = choose_series(study(t1, t2), cfg=t1_first)
    assert choice.anatomy == t1 and choice.t1 == t1
    assert decision(choice, t1).used_as == "anatomy"
    assert "also T1 for corroboration" in decision(choice, t1).reason


def test_best_t2_by_coverage_then_resolution():
    small = rec(Role.T2, n=9)  # covers 9 x 4 mm
    large = rec(Role.T2, n=17)
    fine_but_small_fov = rec(Role.T2, n=17, ps=(0.5, 0.5), rows=200, cols=200)
    choice = choose_series(study(small, large, fine_but_small_fov), cfg=CFG)
    assert choice.anatomy == large
    assert "ranked below" in decision(choice, small).reason and "coverage 53% of best" in decision(choice, small).reason
    same_cover_finer = rec(Role.T2, n=17, ps=(0.5, 0.5), rows=448, cols=448)
    assert choose_series(study(large, same_cover_finer), cfg=CFG).anatomy == same_cover_finer


def test_true_stir_preferred_over_substitutes_even_if_smaller():
    t2 = rec(Role.T2)
    fs = rec(Role.STIR, sub=Substitute.T2_FATSAT, n=20)
    dixon = rec(Role.STIR, sub=Substitute.DIXON_WATER, n=20)
    true = rec(Role.STIR, n=11)
    choice = choose_series(study(t2, dixon, fs, true), cfg=CFG)
    assert choice.stir == true and not any("STIR" in w for w in choice.warnings)
    assert "preferred type" in decision(choice, fs).reason
    choice = choose_series(study(t2, dixon, fs), cfg=CFG)
    assert choice.stir == fs
    assert any("no true STIR" in w and "T2_FATSAT" in w for w in choice.warnings)


def test_stir_in_the_anatomy_frame_of_reference_is_preferred():
    t2 = rec(Role.T2, frame="1.9.9")
    other_frame = rec(Role.STIR, frame="1.8.8")
    same_frame = rec(Role.STIR, frame="1.9.9")
    choice = choose_series(study(t2, other_frame, same_frame), cfg=CFG)
    assert choice.stir == same_frame and "same frame of reference" in decision(choice, same_frame).reason


def test_stir_only_study_uses_stir_for_anatomy_with_a_warning():
    stir = rec(Role.STIR)
    choice = choose_series(study(stir), cfg=CFG)
    assert choice.anatomy == stir == choice.stir and choice.t1 is None
    assert decision(choice, stir).used_as == "anatomy"
    assert "also STIR for oedema" in decision(choice, stir).reason
    assert any("STIR-type series" in w and "used for anatomy" in w for w in choice.warnings)
    assert any("no sagittal T1" in w for w in choice.warnings)


def test_other_fallback_uses_only_unrecognised_series():
    loc = rec(Role.OTHER, conf=0.9, rule="name rule 'localizer / survey'", n=3)
    unknown = rec(Role.OTHER, conf=0.3, rule="no rule matched ('image'; no acquisition parameters)")
    choice = choose_series(study(loc, unknown), cfg=CFG)
    assert choice.anatomy == unknown
    assert any("role OTHER" in w for w in choice.warnings)
    assert choose_series(study(loc), cfg=CFG).anatomy is None  # a localizer is known not to be anatomy
    no_fallback = replace(CFG, selection=SelectionConfig(other_as_anatomy_fallback=False))
    choice = choose_series(study(loc, unknown), cfg=no_fallback)
    assert choice.anatomy is None and choice.warnings == (
        "no usable sagittal series: nothing can be measured in this study",
    )


def test_nothing_usable():
    choice = choose_series(study(rec(Role.T2, orientation=Orientation.AXIAL)), cfg=CFG)
    assert choice.anatomy is choice.stir is choice.t1 is None
    assert [d.used for d in choice.decisions] == [False]


@pytest.mark.parametrize("n_series", [1, 4])
def test_every_series_has_exactly_one_decision(n_series: int):
    series = [rec(r) for r in (Role.T2, Role.T1, Role.STIR, Role.OTHER)[:n_series]]
    split = replace(rec(Role.OTHER, n=1, problems=("x",)), stack="AXIAL")
    choice = choose_series(study(*series, split), cfg=CFG)
    assert [(d.series_uid, d.stack) for d in choice.decisions] == [(s.series_uid, s.stack) for s in (*series, split)]
