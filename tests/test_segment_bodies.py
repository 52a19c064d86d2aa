"""Per-body contours (pipeline/segment/bodies.py): limits of the polar contour for a flat (collapsed) body."""

from __future__ import annotations

from pipeline.segment import load_segmentation_config
from pipeline.segment.bodies import BodySlot, _max_jump
from pipeline.segment.discs import Segment

CFG = load_segmentation_config()


def test_flat_body_contour_may_jump_further_between_rays():
    def slot(height: int) -> BodySlot:
        return BodySlot(0, Segment("body", 10, 10 + height), 0.0, 40.0, 0.0, 30.0, 0.44, 0.02)

    base = round(CFG.contour_max_jump_mm / CFG.contour_step_mm)
    assert _max_jump(slot(16), 1.0, CFG) == base  # a normal body: the configured jump
    assert _max_jump(slot(int(CFG.body_typical_min_mm)), 1.0, CFG) == base
    assert _max_jump(slot(7), 1.0, CFG) == 4 * base  # (14 / 7)^2 = 4: the cap
    assert base < _max_jump(slot(10), 1.0, CFG) < 4 * base
