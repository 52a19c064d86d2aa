"""Slice geometry: orientation of a plane, and checks that a set of slices forms a regular 3-D stack.

Conventions (see :mod:`pipeline.volume`): LPS millimetres; ImageOrientationPatient holds the direction
of increasing column index (first triplet) and of increasing row index (second triplet). A stack's
array axes are ``(slice, row, col)`` with ``axes_lps = [normal, column-direction, row-direction]``,
where ``normal = row_dir x col_dir`` and slices are sorted by their position along that normal
(never by InstanceNumber). The slice pitch comes from the positions, never from SliceThickness.

The same :func:`assess_stack` is used at discovery (problems are recorded on the series) and when
pixels are loaded (problems raise :class:`~pipeline.errors.SeriesError`), so both always agree.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.errors import InputError, SeriesError
from pipeline.ingest.attributes import FrameGeometry
from pipeline.ingest.config import GeometryConfig
from pipeline.model import Orientation

Vec3 = tuple[float, float, float]

# Patient axes (LPS) and the plane whose normal they are.
_CARDINAL = (
    (Orientation.SAGITTAL, (1.0, 0.0, 0.0)),
    (Orientation.CORONAL, (0.0, 1.0, 0.0)),
    (Orientation.AXIAL, (0.0, 0.0, 1.0)),
)
_UNIT_TOL = 0.05  # direction cosines written with few digits are renormalised within this tolerance


@dataclass(frozen=True)
class SliceRef:
    """One 2-D slice of a series: where its pixels are and its geometry."""

    path: Path
    frame_number: int | None  # 1-based frame of a multi-frame file; None for single-frame files
    sop_instance_uid: str
    rows: int
    cols: int
    geometry: FrameGeometry


@dataclass(frozen=True, eq=False)
class StackGeometry:
    """A validated stack: slices sorted along the normal and the volume geometry they define."""

    slices: tuple[SliceRef, ...]
    origin_lps: Vec3
    axes_lps: np.ndarray  # (3, 3): rows = unit LPS directions of (slice, row, col)
    spacing_mm: tuple[float, float, float]  # (slice pitch from positions, row pitch, col pitch)
    rows: int
    cols: int
    slice_thickness_mm: float | None

    @property
    def n_slices(self) -> int:
        return len(self.slices)

    @property
    def normal_lps(self) -> Vec3:
        n = self.axes_lps[0]
        return (float(n[0]), float(n[1]), float(n[2]))


def direction_cosines(iop: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Row and column direction cosines of ImageOrientationPatient, orthonormalised.

    Raises
    ------
    InputError
        The six values are not two (nearly) orthogonal unit vectors.
    """
    vals = [float(v) for v in iop]
    if len(vals) != 6 or not all(math.isfinite(v) for v in vals):
        raise InputError(f"ImageOrientationPatient must be 6 finite numbers, got {list(iop)}")
    row, col = np.array(vals[:3]), np.array(vals[3:])
    nr, nc = float(np.linalg.norm(row)), float(np.linalg.norm(col))
    if abs(nr - 1.0) > _UNIT_TOL or abs(nc - 1.0) > _UNIT_TOL:
        raise InputError(f"ImageOrientationPatient {vals} is not two unit vectors (lengths {nr:.3f}, {nc:.3f})")
    row, col = row / nr, col / nc
    dot = float(row @ col)
    if abs(dot) > _UNIT_TOL:
        raise InputError(f"ImageOrientationPatient {vals}: row and column directions are not orthogonal")
    col = col - dot * row
    col = col / np.linalg.norm(col)
    return row, col


def classify_orientation(iop: Sequence[float], *, tolerance_deg: float) -> Orientation:
    """SAGITTAL / CORONAL / AXIAL when the slice normal is within ``tolerance_deg`` of the
    left-right / anterior-posterior / head-feet axis, else OBLIQUE.

    Parameters
    ----------
    iop : sequence of 6 float
        ImageOrientationPatient (row direction, column direction), LPS.
    tolerance_deg : float
        Largest angle (degrees) between the slice normal and the cardinal axis; at most 45.

    Raises
    ------
    InputError
        ``iop`` is not two orthogonal unit vectors.
    """
    row, col = direction_cosines(iop)
    normal = np.cross(row, col)
    best, best_angle = Orientation.OBLIQUE, 180.0
    for orientation, axis in _CARDINAL:
        angle = math.degrees(math.acos(min(1.0, abs(float(normal @ np.array(axis))))))
        if angle < best_angle:
            best, best_angle = orientation, angle
    return best if best_angle <= tolerance_deg else Orientation.OBLIQUE


def frame_orientation(frame: FrameGeometry, tolerance_deg: float) -> Orientation:
    """Orientation of one frame; UNKNOWN when it has no valid ImageOrientationPatient."""
    if frame.orientation is None:
        return Orientation.UNKNOWN
    try:
        return classify_orientation(frame.orientation, tolerance_deg=tolerance_deg)
    except InputError:
        return Orientation.UNKNOWN


def assess_stack(slices: Sequence[SliceRef], cfg: GeometryConfig, *, where: str) -> StackGeometry:
    """Check that ``slices`` form one regular stack and compute its geometry.

    Checks, in order: enough slices, ImagePositionPatient / ImageOrientationPatient / PixelSpacing
    present and valid, same orientation, rows/columns and pixel spacing, no duplicate positions,
    no missing slices, uniform spacing, slices stacked along their normal (not sheared), size limit.

    Parameters
    ----------
    slices : sequence of SliceRef
        In any order.
    cfg : GeometryConfig
        Tolerances.
    where : str
        Names the series in messages (UID, and stack when split).

    Raises
    ------
    SeriesError
        The first problem found, naming a file where one is to blame, and how to fix it if possible.
    """
    n = len(slices)
    if n == 0:
        raise SeriesError(f"{where}: no image slices")
    if n < cfg.min_slices:
        kind = "single-slice series" if n == 1 else f"only {n} slices"
        raise SeriesError(
            f"{where}: {kind}; a 3-D volume needs at least {cfg.min_slices} parallel slices "
            "(a localizer or a single 2-D image cannot be measured)"
        )
    for keyword, attr in (
        ("ImagePositionPatient", "position_lps"),
        ("ImageOrientationPatient", "orientation"),
        ("PixelSpacing", "pixel_spacing_mm"),
    ):
        lacking = [s for s in slices if getattr(s.geometry, attr) is None]
        if lacking:
            raise SeriesError(
                f"{where}: {_slice_name(lacking[0])} has no valid {keyword}"
                + (f" (nor do {len(lacking) - 1} other slices)" if len(lacking) > 1 else "")
                + "; without it the slices cannot be placed in 3-D"
            )
    bad_ps = [s for s in slices if s.geometry.pixel_spacing_mm and min(s.geometry.pixel_spacing_mm) <= 0]
    if bad_ps:
        raise SeriesError(
            f"{where}: {_slice_name(bad_ps[0])} has a non-positive PixelSpacing {bad_ps[0].geometry.pixel_spacing_mm}"
        )
    # Consistency checks name the odd slice out against the majority of the series.
    first = _majority(slices, lambda s: tuple(round(v, 3) for v in s.geometry.orientation or ()))
    try:
        row0, col0 = direction_cosines(first.geometry.orientation)  # type: ignore[arg-type]
    except InputError as exc:
        raise SeriesError(f"{where}: {_slice_name(first)}: {exc}") from None
    cos_tol = math.cos(math.radians(cfg.orientation_consistency_deg))
    for s in slices:
        try:
            row, col = direction_cosines(s.geometry.orientation)  # type: ignore[arg-type]
        except InputError as exc:
            raise SeriesError(f"{where}: {_slice_name(s)}: {exc}") from None
        if float(row @ row0) < cos_tol or float(col @ col0) < cos_tol:
            raise SeriesError(
                f"{where}: {_slice_name(s)} is oriented differently from {_slice_name(first)} "
                f"(more than {cfg.orientation_consistency_deg:g} degrees); the slices are not one stack"
            )
    ref = _majority(slices, lambda s: (s.rows, s.cols))
    for s in slices:
        if (s.rows, s.cols) != (ref.rows, ref.cols):
            raise SeriesError(
                f"{where}: {_slice_name(s)} is {s.rows} x {s.cols} pixels but {_slice_name(ref)} (like most "
                f"slices) is {ref.rows} x {ref.cols}; all slices of a series must have the same size"
            )
    ref = _majority(slices, lambda s: s.geometry.pixel_spacing_mm)
    ps0 = ref.geometry.pixel_spacing_mm
    assert ps0 is not None
    for s in slices:
        ps = s.geometry.pixel_spacing_mm
        assert ps is not None
        if any(abs(a - b) > cfg.pixel_spacing_tolerance_ratio * b for a, b in zip(ps, ps0, strict=True)):
            raise SeriesError(
                f"{where}: {_slice_name(s)} has PixelSpacing {ps} mm but {_slice_name(ref)} (like most "
                f"slices) has {ps0} mm"
            )
    normal = np.cross(row0, col0)
    positions = np.array([s.geometry.position_lps for s in slices], dtype=float)
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    sorted_slices = [slices[i] for i in order]
    along = along[order]
    positions = positions[order]
    gaps = np.diff(along)
    dup = np.flatnonzero(gaps <= cfg.duplicate_position_mm)
    if dup.size:
        a, b = sorted_slices[dup[0]], sorted_slices[dup[0] + 1]
        raise SeriesError(
            f"{where}: {dup.size} duplicate slice position(s), e.g. {_slice_name(a)} and {_slice_name(b)} "
            f"both at {along[dup[0]]:.2f} mm along the normal (repeated acquisition, several echoes or "
            "contrasts in one series, or copied files)"
        )
    median = float(np.median(gaps))
    big = np.flatnonzero(gaps > cfg.missing_slice_factor * median)
    if big.size:
        i = int(big[0])
        raise SeriesError(
            f"{where}: missing slice(s): gap of {gaps[i]:.2f} mm after {_slice_name(sorted_slices[i])} "
            f"where the median spacing is {median:.2f} mm ({big.size} gap(s)); look for files missing from "
            "the export"
        )
    off = np.abs(gaps - median)
    if float(off.max()) > cfg.spacing_tolerance_ratio * median:
        raise SeriesError(
            f"{where}: non-uniform slice spacing: gaps from {gaps.min():.3f} to {gaps.max():.3f} mm "
            f"(median {median:.3f} mm, tolerance {100 * cfg.spacing_tolerance_ratio:g}%)"
        )
    steps = np.diff(positions, axis=0)
    in_plane = steps - np.outer(steps @ normal, normal)
    shift = np.linalg.norm(in_plane, axis=1)
    limit = cfg.max_in_plane_shift_ratio * min(ps0)
    if float(shift.max()) > limit:
        i = int(np.argmax(shift))
        raise SeriesError(
            f"{where}: slices are not stacked along their normal: {_slice_name(sorted_slices[i + 1])} is "
            f"shifted {shift[i]:.2f} mm in-plane from its neighbour (sheared or tilted stack, not supported)"
        )
    megavoxels = n * first.rows * first.cols / 1e6
    if megavoxels > cfg.max_megavoxels:
        raise SeriesError(
            f"{where}: {n} x {first.rows} x {first.cols} = {megavoxels:.0f} million voxels exceeds the limit "
            f"of {cfg.max_megavoxels:g} million (geometry.max_megavoxels in configs/ingest.yaml)"
        )
    axes = np.vstack([normal, col0, row0])
    thick = [s.geometry.slice_thickness_mm for s in sorted_slices if s.geometry.slice_thickness_mm]
    p0 = positions[0]
    return StackGeometry(
        slices=tuple(sorted_slices),
        origin_lps=(float(p0[0]), float(p0[1]), float(p0[2])),
        axes_lps=axes,
        spacing_mm=(median, float(ps0[0]), float(ps0[1])),
        rows=first.rows,
        cols=first.cols,
        slice_thickness_mm=float(np.median(thick)) if thick else None,
    )


def _majority(slices: Sequence[SliceRef], key: Callable[[SliceRef], object]) -> SliceRef:
    """The first slice having the most common value of ``key``."""
    common = Counter(key(s) for s in slices).most_common(1)[0][0]
    return next(s for s in slices if key(s) == common)


def _slice_name(s: SliceRef) -> str:
    return f"{s.path}" + (f" frame {s.frame_number}" if s.frame_number is not None else "")
