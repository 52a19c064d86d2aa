"""Per-body contours (pipeline/segment/bodies.py): limits of the polar contour for a flat (collapsed) body."""

from __future__ import annotations

import numpy as np

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


def test_oedema_band_against_a_dark_disc_is_inside_the_body():
    """A ray from the centre: marrow, a bright oedema band under the endplate, then a dark (desiccated) disc with no
    cortex line of its own. In the disc zone the dark disc bounds the band like a cortex line; elsewhere (in
    front of the body: fat then muscle) it does not."""
    from pipeline.segment.bodies import _cortex_valley, _inside_likelihood

    level, sigma = 0.44, 0.02
    vals = np.array([[level] * 8 + [0.62] * 12 + [0.30] * 20])  # 0.5-mm samples: 4 mm, 6 mm, 10 mm
    valley = _cortex_valley(vals, level, sigma, CFG.contour_step_mm, CFG)
    band = slice(8, 20)
    outside_zone = _inside_likelihood(vals, valley, level, sigma, CFG, dark_zone=np.zeros(vals.shape, bool))
    in_zone = _inside_likelihood(vals, valley, level, sigma, CFG, dark_zone=np.ones(vals.shape, bool))
    assert np.all(outside_zone[0, band] < 0.5)
    assert np.all(in_zone[0, band] > 0.5)
    assert np.all(in_zone[0, 22:] < 0.5)  # the disc itself stays outside
