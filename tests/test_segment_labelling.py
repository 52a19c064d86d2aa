"""Level labelling from per-body facts (pipeline.segment.labelling): sacrum anchor, ambiguity, broken counts."""

from __future__ import annotations

import pytest

from pipeline.levels import Level
from pipeline.segment import SegmentationConfig
from pipeline.segment.labelling import BodyFacts, label_bodies

CFG = SegmentationConfig()
NAMES = ["T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5", "S1", "S2"]


def column(
    angles: list[float],
    gaps: list[float | None],
    heights: list[float] | None = None,
    bone_continues: int | None = None,
) -> list[BodyFacts]:
    """Bodies cranial -> caudal: posterior-wall angle (deg), gap to the next body (mm), height (mm)."""
    heights = heights or [25.0] * len(angles)
    return [
        BodyFacts(
            angle_deg=a,
            depth_mm=32.0,
            height_mm=h,
            centroid_z_mm=-35.0 * i,
            gap_below_mm=g,
            bone_continues_below=i == bone_continues,
        )
        for i, (a, g, h) in enumerate(zip(angles, gaps, heights, strict=True))
    ]


# T10 .. S2: lordosis ends at L5, the sacrum turns backwards, S1/S2 fused (no gap)
ANGLES = [-10.0, -10.0, -8.0, -5.0, -2.0, 0.0, 5.0, 15.0, 38.0, 42.0]
GAPS: list[float | None] = [8.0, 8.0, 9.0, 10.0, 11.0, 12.0, 12.0, 10.0, 0.0, None]


def names(lab) -> list[str | None]:  # type: ignore[no-untyped-def]
    return [lv.value if lv else None for lv in lab.levels]


def test_sacrum_with_a_fused_segment_below_anchors_the_count():
    # S2 also looks sacral, but its junction above is fused: it is no rival to S1
    lab = label_bodies(column(ANGLES, GAPS), CFG)
    assert lab.sacrum_index == 8 and lab.method == "sacrum anchor"
    assert names(lab)[:9] == NAMES[:9]
    assert lab.confidence[8] >= 0.6
    assert not any("ambiguous" in w for w in lab.warnings)


# the last two bodies both tilted like a sacrum with a mobile-looking disc between them (transitional anatomy, or
# a lordotic L5 above an S1 whose fused segments were not found): S1 could be either
AMBIGUOUS = column(ANGLES[:8] + [38.0, 42.0], GAPS[:8] + [8.0, None])


def test_adjacent_bodies_that_look_equally_sacral_give_no_levels():
    lab = label_bodies(AMBIGUOUS, CFG)
    assert lab.sacrum_index is None and lab.levels == (None,) * 10
    assert any("sacrum ambiguous" in w for w in lab.warnings)


def test_lordotic_last_body_without_a_sacrum_below_is_not_taken_as_s1():
    # field of view ends at L5 (lordosis 20 deg): nothing sacral is seen, levels stay unknown
    lab = label_bodies(column(ANGLES[:7] + [20.0], GAPS[:7] + [None]), CFG)
    assert lab.sacrum_index is None and set(lab.levels) == {None}
    assert any("sacrum not identified" in w for w in lab.warnings)


def test_s1_as_last_body_is_named_with_low_confidence():
    # nothing seen below a moderately tilted (30 deg) last body: it could be a lordotic L5
    lab = label_bodies(column(ANGLES[:8] + [30.0], GAPS[:8] + [None]), CFG)
    assert lab.sacrum_index == 8 and names(lab) == NAMES[:9]
    assert max(lab.confidence) <= CFG.sacrum_unconfirmed_confidence
    assert any("could be L5" in w for w in lab.warnings)


def test_missing_body_stops_the_count_above_it():
    # L3 not segmented: a 45 mm gap between L2 and L4; counting across it would shift T10..L2 by one
    angles = ANGLES[:5] + ANGLES[6:]
    gaps = GAPS[:4] + [45.0] + GAPS[6:]
    lab = label_bodies(column(angles, gaps), CFG)
    assert lab.sacrum_index == 7
    assert names(lab)[:8] == [None] * 5 + ["L4", "L5", "S1"]
    assert all(c == 0.0 for c in lab.confidence[:5])
    assert any("missing body" in w for w in lab.warnings)


def test_merged_body_stops_the_count_at_it():
    # T11 and T12 segmented as one 55 mm body: it and everything above is left unnamed
    angles = ANGLES[:1] + ANGLES[2:]
    gaps = GAPS[:1] + GAPS[2:]
    heights = [25.0, 55.0] + [25.0] * 7
    lab = label_bodies(column(angles, gaps, heights), CFG)
    assert lab.sacrum_index == 7
    assert names(lab)[:8] == [None, None, "L1", "L2", "L3", "L4", "L5", "S1"]
    assert any("two bodies merged" in w for w in lab.warnings)


def test_severely_collapsed_body_does_not_break_the_count():
    # a crushed T12 (8 mm, no gap left below it) is still one body: the count goes through it
    heights = [25.0, 25.0, 8.0] + [25.0] * 7
    gaps = GAPS[:2] + [0.0] + GAPS[3:]
    lab = label_bodies(column(ANGLES, gaps, heights), CFG)
    assert lab.sacrum_index == 8 and names(lab)[:9] == NAMES[:9]


@pytest.mark.parametrize("anchor_level", [Level.L5, Level.S1])
def test_user_anchor_still_wins_over_an_ambiguous_sacrum(anchor_level):
    from pipeline.segment import parse_anchor

    lab = label_bodies(AMBIGUOUS, CFG, parse_anchor(f"{anchor_level.value}=8"))
    assert lab.levels[7] is anchor_level
    assert not any("ambiguous" in w for w in lab.warnings)


def test_tilted_body_above_a_mobile_column_is_not_the_sacrum():
    # T12's wall mismeasured as 60 deg with no gap below: the mobile lumbar column below it rules it out
    angles = ANGLES[:2] + [60.0] + ANGLES[3:]
    gaps = GAPS[:2] + [0.0] + GAPS[3:]
    lab = label_bodies(column(angles, gaps), CFG)
    assert lab.sacrum_index == 8 and names(lab)[3:9] == NAMES[3:9]


def test_segment_leaning_forwards_below_is_no_evidence_of_fusion():
    # a lordotic L5 (30 deg) touching a segment whose wall leans 55 deg forwards (a failed segmentation, not S2)
    lab = label_bodies(column(ANGLES[:7] + [30.0, -55.0], GAPS[:7] + [0.0, None]), CFG)
    assert lab.sacrum_index in (7, None)
    if lab.sacrum_index is not None:
        assert max(lab.confidence) <= CFG.sacrum_unconfirmed_confidence
        assert any("could be L5" in w for w in lab.warnings)


def test_a_short_sacrum_candidate_gives_no_levels():
    # the body taken for S1 is 14 mm tall where the bodies above are 25 mm: a partly seen L5 looks like this
    heights = [25.0] * 8 + [14.0, 20.0]
    lab = label_bodies(column(ANGLES, GAPS, heights), CFG)
    assert lab.sacrum_index is None and all(lv is None for lv in lab.levels)
    assert any("may be a partly seen L5" in w for w in lab.warnings)
    # the same column with a full-height S1 is named
    assert names(label_bodies(column(ANGLES, GAPS, [25.0] * 8 + [24.0, 20.0]), CFG))[:9] == NAMES[:9]
