"""Level labelling from per-body facts (pipeline.segment.labelling): learned S1, ambiguity, broken counts, anchors."""

from __future__ import annotations

import pytest

from pipeline.levels import Level
from pipeline.segment import SegmentationConfig, parse_anchor
from pipeline.segment.labelling import BodyFacts, label_bodies

CFG = SegmentationConfig()
STEP = 35.0  # mm between body centres


def column(
    s1_scores: list[float],
    heights: list[float] | None = None,
    steps: list[float] | None = None,
    gaps: list[float] | None = None,
) -> list[BodyFacts]:
    """Bodies cranial -> caudal with their S1 scores; centres ``steps`` mm apart along the column."""
    heights = heights or [25.0] * len(s1_scores)
    steps = steps or [STEP] * (len(s1_scores) - 1)
    pos = [0.0]
    for s in steps:
        pos.append(pos[-1] + s)
    gaps_below: list[float | None] = [*(gaps or [8.0] * (len(s1_scores) - 1)), None]
    return [
        BodyFacts(centre_mm=(0.0, p, 0.0), centroid_z_mm=-p, height_mm=h, s1_score=s, gap_below_mm=g)
        for p, h, s, g in zip(pos, heights, s1_scores, gaps_below, strict=True)
    ]


def names(lab) -> list[str | None]:  # type: ignore[no-untyped-def]
    return [lv.value if lv else None for lv in lab.levels]


# T12 .. S1: the network recognises the last body as S1
NORMAL = [0.0, 0.01, 0.0, 0.02, 0.05, 0.1, 0.92]


def test_s1_anchors_the_count_up():
    lab = label_bodies(column(NORMAL), CFG)
    assert names(lab) == ["T12", "L1", "L2", "L3", "L4", "L5", "S1"]
    assert lab.sacrum_index == 6 and lab.method == "sacrum anchor"
    assert lab.confidence[6] == pytest.approx(0.92)
    assert all(0.8 < c <= 0.92 for c in lab.confidence)
    assert not lab.warnings


def test_no_s1_in_view_gives_no_levels_and_says_how_to_name_them():
    lab = label_bodies(column([0.0, 0.1, 0.2, 0.3, 0.2]), CFG)
    assert names(lab) == [None] * 5 and lab.sacrum_index is None
    assert any("not identified" in w and "--anchor" in w for w in lab.warnings)


def test_two_s1_like_bodies_are_ambiguous():
    lab = label_bodies(column([0.0, 0.0, 0.0, 0.7, 0.8]), CFG)
    assert names(lab) == [None] * 5
    assert any("ambiguous" in w for w in lab.warnings)


def test_an_ordinary_body_just_below_the_s1_candidate_is_ambiguous():
    lab = label_bodies(column([0.0, 0.0, 0.0, 0.9, 0.05]), CFG)
    assert names(lab) == [None] * 5
    assert any("ordinary-looking body" in w for w in lab.warnings)


def test_a_distant_candidate_below_s1_is_not_a_vertebra_and_gets_no_name():
    lab = label_bodies(column([0.0, 0.0, 0.0, 0.9, 0.0], steps=[STEP, STEP, STEP, 4 * STEP]), CFG)
    assert names(lab)[:4] == ["L3", "L4", "L5", "S1"] and lab.sacrum_index == 3


def test_uncertain_s1_is_named_with_a_warning():
    lab = label_bodies(column([0.0, 0.0, 0.0, 0.0, 0.75]), CFG)
    assert names(lab)[-1] == "S1"
    assert any("uncertain" in w for w in lab.warnings)


def test_a_weak_s1_score_names_nothing():
    """Validation model V on held-out Dixon exam vb3 case_32: the true L5 scored 0.61 as S1 (the true S1 not
    found), which named every level one off. Below s1_min_score the sacrum counts as not identified."""
    lab = label_bodies(column([0.0, 0.0, 0.0, 0.0, 0.61]), CFG)
    assert names(lab) == [None] * 5
    assert any("not identified" in w for w in lab.warnings)


def test_missing_body_stops_the_count_above_it():
    lab = label_bodies(column(NORMAL, steps=[STEP, STEP, 2.2 * STEP, STEP, STEP, STEP]), CFG)
    assert names(lab) == [None, None, None, "L3", "L4", "L5", "S1"]
    assert any("missing body" in w for w in lab.warnings)


def test_merged_body_stops_the_count_at_it():
    heights = [25.0, 25.0, 45.0, 25.0, 25.0, 25.0, 25.0]
    lab = label_bodies(column(NORMAL, heights=heights), CFG)
    assert names(lab) == [None, None, None, "L3", "L4", "L5", "S1"]
    assert any("two bodies merged" in w for w in lab.warnings)


def test_a_step_too_short_for_a_level_stops_the_count_above_it():
    # sample study 03: a vertebra plana found partly (its centre 16 mm under its neighbour's), or a piece of a body
    # kept as a level: either way the count above it cannot be trusted
    lab = label_bodies(column([0.0, *NORMAL], steps=[STEP, STEP, 0.45 * STEP, 0.7 * STEP, STEP, STEP, STEP]), CFG)
    assert names(lab) == [None, None, None, "L2", "L3", "L4", "L5", "S1"]
    assert any("0.5 times the median" in w and "vertebra plana" in w for w in lab.warnings)


def test_severely_collapsed_body_does_not_break_the_count():
    heights = [25.0, 25.0, 6.0, 25.0, 25.0, 25.0, 25.0]
    lab = label_bodies(column(NORMAL, heights=heights), CFG)
    assert names(lab) == ["T12", "L1", "L2", "L3", "L4", "L5", "S1"]


@pytest.mark.parametrize(
    ("anchor", "expected"),
    [
        # the README's example: with S1 in view, L5=lowest names the lowest body that is not S1
        ("L5=lowest", ["T12", "L1", "L2", "L3", "L4", "L5", "S1"]),
        ("S1=lowest", ["T12", "L1", "L2", "L3", "L4", "L5", "S1"]),
        ("L1=2", ["T12", "L1", "L2", "L3", "L4", "L5", "S1"]),
    ],
)
def test_anchors_that_agree_with_the_detected_s1_give_no_warning(anchor, expected):
    lab = label_bodies(column(NORMAL), CFG, parse_anchor(anchor))
    assert names(lab) == expected
    assert lab.method == f"user anchor {parse_anchor(anchor).describe()}"
    assert not any("contradicts" in w for w in lab.warnings)


def test_an_anchor_that_contradicts_the_detected_s1_wins_with_a_warning():
    lab = label_bodies(column(NORMAL), CFG, parse_anchor("L1=1"))
    assert names(lab)[0] == "L1"
    assert any("contradicts the image" in w for w in lab.warnings)


@pytest.mark.parametrize("anchor", ["L5=lowest", "S1=lowest"])
def test_lowest_without_a_visible_sacrum_is_the_lowest_body(anchor):
    lab = label_bodies(column([0.0, 0.0, 0.0, 0.0, 0.1]), CFG, parse_anchor(anchor))
    assert names(lab)[-1] == parse_anchor(anchor).level.value


def test_user_anchor_still_wins_over_an_ambiguous_sacrum():
    lab = label_bodies(column([0.0, 0.0, 0.0, 0.7, 0.8]), CFG, parse_anchor("L5=3"))
    assert names(lab) == ["L3", "L4", "L5", "S1", None]


def test_unusable_anchor_falls_back_with_a_warning():
    lab = label_bodies(column(NORMAL), CFG, parse_anchor("L1=12"))
    assert lab.method == "sacrum anchor"
    assert any("could not be applied" in w for w in lab.warnings)


def test_z_anchor_names_the_nearest_body():
    lab = label_bodies(column([0.0] * 5), CFG, parse_anchor(f"L3=z:{-2 * STEP + 3}"))
    assert names(lab) == ["L1", "L2", "L3", "L4", "L5"]


def test_no_bodies():
    lab = label_bodies([], CFG)
    assert lab.levels == () and lab.method == "no bodies"


def test_level_enum_order_is_what_the_count_uses():
    assert Level.S1.offset(-1) is Level.L5 and Level.L1.offset(-1) is Level.T12


def test_an_s1_candidate_cut_by_the_lower_image_edge_gives_no_levels():
    facts = column(NORMAL)
    facts[-1] = BodyFacts(facts[-1].centre_mm, facts[-1].centroid_z_mm, 12.0, 0.9, cut_below=True)
    lab = label_bodies(facts, CFG)
    assert names(lab) == [None] * 7
    assert any("lower edge of the image" in w and "partly seen L5" in w for w in lab.warnings)


def test_a_disc_space_two_discs_long_stops_the_count_above_it():
    """A vertebra plana the network took for disc: the step between its neighbours looks almost normal, but the
    disc space between them is about two discs and a flat body long."""
    gaps = [6.0, 7.0, 17.0, 8.0, 9.0, 10.0]
    lab = label_bodies(column(NORMAL, steps=[STEP, STEP, 1.3 * STEP, STEP, STEP, STEP], gaps=gaps), CFG)
    assert names(lab) == [None, None, None, "L3", "L4", "L5", "S1"]
    assert any("collapsed body may be missing" in w for w in lab.warnings)


def test_a_tall_lumbosacral_disc_alone_does_not_stop_the_count():
    lab = label_bodies(column(NORMAL, gaps=[6.0, 7.0, 8.0, 8.0, 9.0, 15.0]), CFG)
    assert names(lab) == ["T12", "L1", "L2", "L3", "L4", "L5", "S1"]


def test_fused_s1_like_segments_are_one_sacrum_named_from_its_top():
    """S1 and a partly seen S2 both look sacral; no disc space between them: S1 is the upper one."""
    lab = label_bodies(column([0.0, 0.0, 0.0, 0.9, 0.9], gaps=[8.0, 8.0, 10.0, 0.0]), CFG)
    assert names(lab)[:4] == ["L3", "L4", "L5", "S1"] and lab.sacrum_index == 3
    assert not any("ambiguous" in w for w in lab.warnings)


def test_a_body_above_s1_that_looks_partly_like_s1_makes_the_sacrum_ambiguous():
    """On a scan unlike the training data the network may score S2 above a faint S1: the faint S1 is then the
    body above the candidate, one level off everywhere if the candidate were taken."""
    lab = label_bodies(column([0.0, 0.01, 0.0, 0.02, 0.05, 0.25, 0.92]), CFG)
    assert names(lab) == [None] * 7 and lab.sacrum_index is None
    assert any("ambiguous" in w and "partly like S1" in w and "0.25" in w for w in lab.warnings)


def test_a_faint_s1_score_above_the_candidate_below_the_rival_limit_is_ignored():
    lab = label_bodies(column([0.0, 0.01, 0.0, 0.02, 0.05, 0.15, 0.92]), CFG)
    assert names(lab) == ["T12", "L1", "L2", "L3", "L4", "L5", "S1"]


def test_a_body_joined_to_the_s1_candidate_from_above_makes_the_sacrum_ambiguous():
    """S1 always has the L5/S1 disc above it: a body joined to the candidate without one is S1 itself (the
    candidate being S2) or a piece of a body."""
    lab = label_bodies(column(NORMAL, gaps=[8.0, 8.0, 8.0, 8.0, 8.0, 1.0]), CFG)
    assert names(lab) == [None] * 7
    assert any("joined to it" in w and "no disc space" in w for w in lab.warnings)


def test_sacral_segments_below_s1_that_look_partly_like_s1_do_not_make_it_ambiguous():
    lab = label_bodies(column([*NORMAL, 0.3], gaps=[8.0, 8.0, 8.0, 8.0, 8.0, 10.0, 0.0]), CFG)
    assert names(lab)[:7] == ["T12", "L1", "L2", "L3", "L4", "L5", "S1"] and lab.sacrum_index == 6
    assert not lab.warnings
