"""Orientation classification and stack checks (hand-made geometry with known answers)."""

from pathlib import Path

import numpy as np
import pytest

from pipeline.errors import InputError, SeriesError
from pipeline.ingest.attributes import FrameGeometry
from pipeline.ingest.config import GeometryConfig
from pipeline.ingest.geometry import SliceRef, assess_stack, classify_orientation
from pipeline.model import Orientation
from tests.dicom_factory import IOP, rotated_iop


@pytest.mark.parametrize("plane", ["SAGITTAL", "CORONAL", "AXIAL"])
def test_cardinal_planes(plane: str):
    assert classify_orientation(IOP[plane], tolerance_deg=20) is Orientation[plane]


@pytest.mark.parametrize(
    ("plane", "axis", "angle", "tol", "expected"),
    [
        ("SAGITTAL", (0, 0, 1), 15, 20, "SAGITTAL"),  # sagittal slab rotated about head-feet axis
        ("SAGITTAL", (0, 0, 1), 25, 20, "OBLIQUE"),
        ("SAGITTAL", (0, 1, 0), 19.9, 20, "SAGITTAL"),
        ("SAGITTAL", (0, 1, 0), 25, 30, "SAGITTAL"),  # a looser configured tolerance
        ("AXIAL", (1, 0, 0), 10, 20, "AXIAL"),  # gantry-like tilt of an axial stack
        ("AXIAL", (1, 0, 0), 40, 20, "OBLIQUE"),
        ("CORONAL", (1, 0, 0), 5, 5.5, "CORONAL"),
        ("SAGITTAL", (0, 0, 1), 90, 20, "CORONAL"),  # rotated by 90 degrees it *is* coronal
    ],
)
def test_tolerance_is_the_angle_of_the_normal(plane, axis, angle, tol, expected):
    iop = rotated_iop(plane, angle, axis)
    assert classify_orientation(iop, tolerance_deg=tol) is Orientation[expected]


def test_orientation_ignores_in_plane_rotation_and_flips():
    # Rotating the image within its plane or flipping row/column directions keeps the plane.
    iop = rotated_iop("SAGITTAL", 30, (1, 0, 0))
    assert classify_orientation(iop, tolerance_deg=1) is Orientation.SAGITTAL
    flipped = tuple(-v for v in IOP["SAGITTAL"])
    assert classify_orientation(flipped, tolerance_deg=1) is Orientation.SAGITTAL


@pytest.mark.parametrize(
    ("iop", "match"),
    [
        ((1, 0, 0, 1, 0, 0), "not orthogonal"),
        ((2, 0, 0, 0, 1, 0), "not two unit vectors"),
        ((1, 0, 0, 0, 1), "must be 6 finite numbers"),
        ((float("nan"), 0, 0, 0, 1, 0), "must be 6 finite numbers"),
    ],
)
def test_invalid_orientation_is_an_input_error(iop, match):
    with pytest.raises(InputError, match=match):
        classify_orientation(iop, tolerance_deg=20)


# --------------------------------------------------------------------------- stacks
def _stack(positions, *, iop=IOP["SAGITTAL"], ps=(0.5, 0.6), rows=4, cols=3, **geo) -> list[SliceRef]:
    return [
        SliceRef(
            Path(f"f{i}"),
            None,
            f"1.2.{i}",
            rows,
            cols,
            FrameGeometry(None, tuple(map(float, p)), iop, ps, 3.0, **geo),
        )
        for i, p in enumerate(positions)
    ]


def test_stack_sorted_along_normal_with_spacing_from_positions():
    # Sagittal normal is row x col = (0,1,0) x (0,0,-1) = (-1, 0, 0): increasing index goes to the right (-L).
    xs = [0.0, -8.0, -4.0, -12.0]  # shuffled
    stack = assess_stack(_stack([(x, 10, 20) for x in xs]), GeometryConfig(), where="s")
    assert [s.path.name for s in stack.slices] == ["f0", "f2", "f1", "f3"]
    assert stack.spacing_mm == (4.0, 0.5, 0.6)
    assert stack.origin_lps == (0.0, 10.0, 20.0)
    np.testing.assert_allclose(stack.axes_lps, [[-1, 0, 0], [0, 0, -1], [0, 1, 0]])
    assert stack.slice_thickness_mm == 3.0  # kept, but not used as the pitch


@pytest.mark.parametrize(
    ("positions", "kwargs", "match"),
    [
        ([(0, 0, 0)], {}, "single-slice series"),
        ([(0, 0, 0), (-4, 0, 0)], {}, "only 2 slices"),
        ([(0, 0, 0), (-4, 0, 0), (-4, 0, 0), (-8, 0, 0)], {}, "duplicate slice position"),
        ([(0, 0, 0), (-4, 0, 0), (-12, 0, 0), (-16, 0, 0)], {}, "missing slice"),
        ([(0, 0, 0), (-4, 0, 0), (-8.5, 0, 0), (-12, 0, 0), (-16, 0, 0)], {}, "non-uniform slice spacing"),
        ([(0, 0, 0), (-4, 2, 0), (-8, 4, 0)], {}, "not stacked along their normal"),
    ],
)
def test_bad_stacks_name_the_problem(positions, kwargs, match):
    with pytest.raises(SeriesError, match=match):
        assess_stack(_stack(positions, **kwargs), GeometryConfig(), where="series 1.2.3")


def test_inconsistent_slices_are_refused():
    good = _stack([(0, 0, 0), (-4, 0, 0), (-8, 0, 0)])
    cfg = GeometryConfig()
    other_size = good[:2] + _stack([(-8, 0, 0)], rows=5)
    with pytest.raises(SeriesError, match=r"is 5 x 3 pixels but .* is 4 x 3"):
        assess_stack(other_size, cfg, where="s")
    other_ps = good[:2] + _stack([(-8, 0, 0)], ps=(0.7, 0.6))
    with pytest.raises(SeriesError, match="has PixelSpacing"):
        assess_stack(other_ps, cfg, where="s")
    tilted = good[:2] + _stack([(-8, 0, 0)], iop=rotated_iop("SAGITTAL", 5, (0, 0, 1)))
    with pytest.raises(SeriesError, match="oriented differently"):
        assess_stack(tilted, cfg, where="s")
    no_ipp = [
        SliceRef(
            s.path,
            None,
            s.sop_instance_uid,
            4,
            3,
            FrameGeometry(None, None, s.geometry.orientation, (0.5, 0.6), 3.0),
        )
        for s in good
    ]
    with pytest.raises(SeriesError, match=r"f0 has no valid ImagePositionPatient \(nor do 2 other slices\)"):
        assess_stack(no_ipp, cfg, where="s")


def test_size_limit_is_a_series_error():
    cfg = GeometryConfig(max_megavoxels=0.001)
    with pytest.raises(SeriesError, match="exceeds the limit"):
        assess_stack(_stack([(0, 0, 0), (-4, 0, 0), (-8, 0, 0)], rows=20, cols=20), cfg, where="s")
