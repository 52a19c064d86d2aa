"""From class probabilities to body instances (pipeline.segment.instances) on hand-made probability maps."""

from __future__ import annotations

import numpy as np

from pipeline.segment import SegmentationConfig
from pipeline.segment.instances import find_bodies, labels_on_input

CFG = SegmentationConfig()
SPACING = (4.0, 2.0, 2.0)  # slice, row, col (mm)


def prob_map(shape: tuple[int, int, int] = (7, 100, 60)) -> np.ndarray:
    """All background: (slice, class, row, col) with classes background, body, disc, S1."""
    p = np.zeros((shape[0], 4, shape[1], shape[2]), np.float32)
    p[:, 0] = 1.0
    return p


def paint(p: np.ndarray, cls: int, slices: slice, rows: slice, cols: slice, value: float = 0.97) -> None:
    p[slices, :, rows, cols] = (1.0 - value) / 3.0
    p[slices, cls, rows, cols] = value


def column(p: np.ndarray, n: int = 4, *, s1_last: bool = True, disc_rows: int = 4) -> None:
    """Bodies 13 px (26 mm) tall and 16 px deep on slices 1..5, discs between them."""
    r = 8
    for i in range(n):
        cls = 3 if (s1_last and i == n - 1) else 1
        paint(p, cls, slice(1, 6), slice(r, r + 13), slice(20, 36))
        r += 13
        if i < n - 1:
            paint(p, 2, slice(1, 6), slice(r, r + disc_rows), slice(20, 36))
            r += disc_rows


def test_one_instance_per_body_cranial_to_caudal_with_s1_score():
    p = prob_map()
    column(p, 4)
    labels, bodies = find_bodies(p, SPACING, CFG)
    assert [b.label for b in bodies] == [1, 2, 3, 4]
    assert set(np.unique(labels)) == {0, 1, 2, 3, 4}
    rows = [b.centroid[1] for b in bodies]
    assert rows == sorted(rows)
    assert [round(b.s1_score) for b in bodies] == [0, 0, 0, 1]
    for b in bodies:
        assert abs(b.height_mm - 26.0) <= 2.0 and abs(b.depth_mm - 32.0) <= 2.0
        assert b.width_mm == 5 * 4.0
        assert b.certainty > 0.9 and not b.touches_edge


def test_a_thin_disc_still_separates_two_bodies():
    p = prob_map()
    column(p, 3, s1_last=False, disc_rows=1)
    _, bodies = find_bodies(p, SPACING, CFG)
    assert len(bodies) == 3


def test_a_body_split_by_a_fracture_line_without_disc_stays_one_body():
    p = prob_map()
    column(p, 4, s1_last=False)  # bodies at rows 8-20, 25-37, 42-54, 59-71
    # the second body: two halves with a weak (body 0.6) line between them, not disc
    p[1:6, :, 31, 20:36] = 0.0
    p[1:6, 1, 31, 20:36] = 0.6
    p[1:6, 0, 31, 20:36] = 0.4
    _, bodies = find_bodies(p, SPACING, CFG)
    assert len(bodies) == 4
    assert abs(bodies[1].height_mm - 26.0) <= 2.0


def test_two_whole_bodies_without_a_visible_disc_are_not_merged():
    """When the network misses a disc, the two bodies' cores are still apart; together they are twice a body's
    height, which one body never is."""
    p = prob_map()
    column(p, 4, s1_last=False)
    paint(p, 1, slice(1, 6), slice(37, 42), slice(20, 36), 0.97)  # the disc between bodies 2 and 3 read as body
    p[1:6, 1, 38:41, 20:36] = 0.8  # a little less certain there (no core)
    p[1:6, 0, 38:41, 20:36] = 0.2
    _, bodies = find_bodies(p, SPACING, CFG)
    assert len(bodies) == 4


def test_small_and_implausible_blobs_are_dropped():
    p = prob_map()
    column(p, 3, s1_last=False)
    paint(p, 1, slice(3, 4), slice(80, 84), slice(5, 9))  # 4 x 4 px on one slice: 256 mm3
    paint(p, 1, slice(1, 6), slice(85, 95), slice(0, 60))  # a 120 mm deep slab: not a body
    _, bodies = find_bodies(p, SPACING, CFG)
    assert len(bodies) == 3


def test_each_body_keeps_one_contiguous_run_of_slices_and_one_section_per_slice():
    p = prob_map()
    column(p, 2, s1_last=False)
    paint(p, 1, slice(0, 1), slice(8, 12), slice(50, 54))  # stray bit on slice 0, disconnected in-plane
    labels, bodies = find_bodies(p, SPACING, CFG)
    top = labels == 1
    assert not top[0, :, 45:].any()
    assert top[1:6].any(axis=(1, 2)).all()


def test_no_body_probability_gives_no_bodies():
    labels, bodies = find_bodies(prob_map(), SPACING, CFG)
    assert bodies == [] and not labels.any()


def test_labels_on_input_cut_the_interpolated_probability_at_one_half():
    """Working pixels of 2 mm, input pixels of 1 mm: the boundary falls between working pixels."""
    work = np.zeros((1, 10, 10), np.int32)
    work[0, 3:7, 3:7] = 1
    fg = np.zeros((1, 10, 10), np.float32)
    fg[0, 3:7, 3:7] = 1.0

    def to_input(a: np.ndarray, order: int = 1, window=None) -> np.ndarray:  # noqa: ARG001  2x upsampling
        from scipy import ndimage as ndi

        rr, cc = np.meshgrid(np.arange(20) / 2.0, np.arange(20) / 2.0, indexing="ij")
        return ndi.map_coordinates(a[0], [rr, cc], order=order, mode="nearest", prefilter=False)[None]

    out = labels_on_input(work, fg, to_input, expand_px=2)
    rows = np.flatnonzero(out[0].any(axis=1))
    # working rows 3..6 -> input rows 6..12; the 0.5 crossing lies half a working pixel outside
    assert rows.min() == 6 and rows.max() == 12
    assert set(np.unique(out)) == {0, 1}


def test_a_candidate_off_the_column_and_a_rival_at_the_same_level_are_dropped():
    p = prob_map((7, 100, 120))
    column(p, 4, s1_last=False)  # bodies in columns 20..36
    paint(p, 1, slice(1, 6), slice(30, 40), slice(80, 96))  # a body-like blob 120 mm behind the column
    paint(p, 1, slice(2, 4), slice(8, 21), slice(45, 55))  # a smaller rival beside the top body
    labels, bodies = find_bodies(p, SPACING, CFG)
    assert len(bodies) == 4
    assert all(20 <= b.centroid[2] <= 36 for b in bodies)



def test_a_vertebra_plana_under_a_taller_neighbour_is_its_own_level():
    # Sample study 03: the neighbour's mask hung down beside the collapsed body (its head-feet extent inflated);
    # an interval-overlap test took the collapsed body for a rival at that neighbour's level, dropped it and shifted
    # every level above it by one, without a warning.
    p = prob_map((7, 100, 60))
    paint(p, 1, slice(1, 6), slice(10, 23), slice(20, 36))  # a normal body, 26 mm
    paint(p, 1, slice(1, 6), slice(23, 31), slice(34, 36))  # ... whose posterior corner hangs down 16 mm
    paint(p, 2, slice(1, 6), slice(23, 32), slice(20, 34))  # disc space
    paint(p, 1, slice(1, 6), slice(25, 28), slice(20, 33))  # ... holding a vertebra plana: 6 mm
    paint(p, 2, slice(1, 6), slice(31, 32), slice(34, 36))
    paint(p, 1, slice(1, 6), slice(32, 45), slice(20, 36))  # the next normal body
    _, bodies = find_bodies(p, SPACING, CFG)
    assert len(bodies) == 3
    assert [round(b.height_mm) for b in bodies][1] == 6  # the plana, between its neighbours
