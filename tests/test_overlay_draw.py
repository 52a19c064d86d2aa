"""Overlay drawing primitives: plane orientation from axes_lps, cropping, decision markers, side-panel layout."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from pipeline.model import Decision
from pipeline.report.overlay_draw import PanelEntry, PlaneView, _box_h, _fit, _place, decision_marker
from pipeline.volume import Volume
from tests.report_fixtures import make_case

L, P, S = np.eye(3)


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    return make_case(tmp_path_factory.mktemp("ovd"))


def _orientations():
    """Every axis-aligned sagittal-family orientation: each permutation of (L, P, S) with each sign."""
    for perm in itertools.permutations([L, P, S]):
        for signs in itertools.product([1, -1], repeat=3):
            yield np.stack([s * v for s, v in zip(signs, perm, strict=True)])


@pytest.mark.parametrize("axes", list(_orientations()), ids=lambda a: "".join(f"{v:+.0f}" for v in a.ravel()))
def test_plane_puts_anterior_left_and_head_up_whatever_the_array_layout(axes):
    shape = (6, 7, 8)
    spacing = (1.5, 0.7, 1.1)
    vol = Volume(np.zeros(shape), spacing, (0.0, 0.0, 0.0), axes)
    pos = vol.index_to_lps(np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1))
    # marker: the most anterior (min y), most superior (max z) voxels of the middle left-right plane
    view = PlaneView.for_volume(vol)
    assert abs(axes[view.through_axis, 0]) == 1.0
    mid = shape[view.through_axis] // 2
    y = np.take(pos[..., 1], mid, axis=view.through_axis)
    z = np.take(pos[..., 2], mid, axis=view.through_axis)
    y_screen = view.plane(np.expand_dims(y, view.through_axis).repeat(shape[view.through_axis], view.through_axis), mid)
    z_screen = view.plane(np.expand_dims(z, view.through_axis).repeat(shape[view.through_axis], view.through_axis), mid)
    assert np.all(np.diff(y_screen, axis=1) > 0)  # left -> right goes anterior -> posterior
    assert np.all(np.diff(z_screen, axis=0) < 0)  # top -> bottom goes head -> feet
    # square millimetres: picture size proportional to the physical extent
    w, h = view.size
    h_mm = shape[view.h_axis] * spacing[view.h_axis]
    v_mm = shape[view.v_axis] * spacing[view.v_axis]
    assert w / h == pytest.approx(h_mm / v_mm, rel=0.03)
    assert view.px_h / spacing[view.h_axis] == pytest.approx(view.px_v / spacing[view.v_axis])
    # index_to_xy agrees with plane(): the voxel drawn at (row, col) maps to that pixel's centre
    idx = np.zeros(3)
    idx[view.h_axis] = 0 if not view.h_flip else shape[view.h_axis] - 1
    idx[view.v_axis] = 0 if not view.v_flip else shape[view.v_axis] - 1
    x, y_px = view.index_to_xy(idx)[0]
    assert (x, y_px) == pytest.approx((view.px_h / 2, view.px_v / 2))


def test_decision_markers_differ_in_shape_and_carry_no_grade_colour():
    masks = []
    for d in Decision:
        m = np.asarray(decision_marker(d))
        opaque = m[..., 3] > 0
        rgb = m[..., :3][opaque].astype(int)
        assert (rgb.max(axis=1) - rgb.min(axis=1) <= 8).all(), f"{d}: markers are white and black, no hue"
        masks.append((m[..., 3] > 127) & (m[..., :3].mean(axis=2) > 127))  # the white part
    for i, j in itertools.combinations(range(len(masks)), 2):
        assert (masks[i] != masks[j]).mean() > 0.05, (list(Decision)[i], list(Decision)[j])


@pytest.mark.parametrize("n", [1, 4, 9, 18])
def test_panel_boxes_never_overlap_and_stay_in_order(n):
    line_h, height = 18, 700
    rng = np.random.default_rng(n)
    ys = np.sort(rng.uniform(0, height, n))
    entries = _fit(
        [PanelEntry(i, float(y), 0.0, (0, 0, 0), ("a", "b", "c", "d")) for i, y in enumerate(ys)], line_h, height
    )
    tops = _place(entries, line_h, height)
    spans = [(t, t + _box_h(len(e.lines), line_h)) for t, e in zip(tops, entries, strict=True)]
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False))  # body order, no overlap
    assert spans[0][0] >= 0 and spans[-1][1] <= height


def test_picture_is_cropped_around_the_bodies_with_a_margin(case):
    a = case
    labels = a.segmentation.labels
    full = PlaneView.for_volume(labels)
    crop = PlaneView.for_volume(labels, around=labels.array > 0, margin_mm=5.0)
    # bodies span display rows 6-63 and cols 10-33; 5 mm margin = 5 rows (1 mm) and 7 cols (0.8 mm)
    assert (crop.v0, crop.n_v) == (1, 63) and (crop.h0, crop.n_h) == (3, 38)
    assert crop.px_per_mm > full.px_per_mm
    idx = np.array([[2.0, 30.0, 20.0]])
    x_full, y_full = full.index_to_xy(idx)[0]
    x_crop, y_crop = crop.index_to_xy(idx)[0]
    assert x_crop == pytest.approx((x_full / full.px_h - crop.h0) * crop.px_h)
    assert y_crop == pytest.approx((y_full / full.px_v - crop.v0) * crop.px_v)
    np.testing.assert_array_equal(crop.plane(labels.array, 2), full.plane(labels.array, 2)[1:64, 3:41])
