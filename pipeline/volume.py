"""A 3-D image and its patient geometry, kept together.

Conventions used everywhere in the pipeline:

- Array axes are ``(slice, row, col)``; for a sagittal series "slice" runs left-right,
  "row" runs head-feet and "col" runs anterior-posterior (as the scanner stored them).
- Physical coordinates are DICOM patient coordinates, LPS, in millimetres.
- ``axes_lps[i]`` is the unit LPS vector of array axis ``i``; ``spacing_mm[i]`` its voxel pitch.
  The LPS position of voxel centre ``(s, r, c)`` is ``origin_lps + (s, r, c) * spacing_mm @ axes_lps``.

:meth:`Volume.to_sitk` / :meth:`Volume.from_sitk` are the only place that deals with SimpleITK's
reversed (x, y, z) = (col, row, slice) axis order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import SimpleITK as sitk

from pipeline.errors import InputError

_ORTHO_TOL = 1e-3


@dataclass(frozen=True, eq=False)
class Volume:
    """Voxel array plus geometry.

    Parameters
    ----------
    array : numpy.ndarray
        Shape ``(n_slices, n_rows, n_cols)``.
    spacing_mm : tuple of float
        Voxel pitch along ``(slice, row, col)`` in mm; all > 0.
    origin_lps : tuple of float
        LPS position (mm) of the centre of voxel ``(0, 0, 0)``.
    axes_lps : numpy.ndarray
        Shape ``(3, 3)``; row ``i`` is the unit LPS direction of array axis ``i``. Orthonormal.
    """

    array: np.ndarray
    spacing_mm: tuple[float, float, float]
    origin_lps: tuple[float, float, float]
    axes_lps: np.ndarray

    def __post_init__(self) -> None:
        if self.array.ndim != 3:
            raise InputError(f"volume must be 3-D (slice, row, col), got shape {self.array.shape}")
        sp = tuple(float(s) for s in self.spacing_mm)
        if len(sp) != 3 or not all(np.isfinite(s) and s > 0 for s in sp):
            raise InputError(f"voxel spacing must be three positive numbers, got {self.spacing_mm}")
        org = tuple(float(o) for o in self.origin_lps)
        if len(org) != 3 or not all(np.isfinite(o) for o in org):
            raise InputError(f"volume origin must be three finite numbers, got {self.origin_lps}")
        axes = np.asarray(self.axes_lps, dtype=float).reshape(3, 3)
        if not np.allclose(axes @ axes.T, np.eye(3), atol=_ORTHO_TOL):
            raise InputError(f"volume axes are not orthonormal: {axes.tolist()}")
        object.__setattr__(self, "spacing_mm", sp)
        object.__setattr__(self, "origin_lps", org)
        object.__setattr__(self, "axes_lps", axes)

    # ------------------------------------------------------------------ basic properties
    @property
    def shape(self) -> tuple[int, int, int]:
        s = self.array.shape
        return (int(s[0]), int(s[1]), int(s[2]))

    @property
    def voxel_volume_mm3(self) -> float:
        return float(np.prod(self.spacing_mm))

    @property
    def slice_normal_lps(self) -> np.ndarray:
        """Unit LPS vector of increasing slice index."""
        return self.axes_lps[0].copy()

    def with_array(self, array: np.ndarray) -> Volume:
        """Same geometry, other voxels (shape must match)."""
        if array.shape != self.array.shape:
            raise ValueError(f"array shape {array.shape} does not match volume shape {self.array.shape}")
        return Volume(array, self.spacing_mm, self.origin_lps, self.axes_lps)

    def same_grid(self, other: Volume, tol_mm: float = 1e-3) -> bool:
        """True when ``other`` has the same shape, spacing, origin and axes."""
        return (
            self.shape == other.shape
            and np.allclose(self.spacing_mm, other.spacing_mm, atol=tol_mm)
            and np.allclose(self.origin_lps, other.origin_lps, atol=tol_mm)
            and np.allclose(self.axes_lps, other.axes_lps, atol=1e-4)
        )

    # ------------------------------------------------------------------ coordinates
    def index_to_lps(self, index: Any) -> np.ndarray:
        """Continuous ``(slice, row, col)`` index (shape ``(..., 3)``) -> LPS mm (shape ``(..., 3)``)."""
        idx = np.asarray(index, dtype=float)
        return np.asarray(self.origin_lps) + (idx * np.asarray(self.spacing_mm)) @ self.axes_lps

    def lps_to_index(self, lps: Any) -> np.ndarray:
        """LPS mm (shape ``(..., 3)``) -> continuous ``(slice, row, col)`` index (shape ``(..., 3)``)."""
        p = np.asarray(lps, dtype=float) - np.asarray(self.origin_lps)
        return (p @ self.axes_lps.T) / np.asarray(self.spacing_mm)

    def vector_to_lps(self, delta_index: Any) -> np.ndarray:
        """A displacement in index units ``(ds, dr, dc)`` -> LPS mm displacement."""
        d = np.asarray(delta_index, dtype=float)
        return (d * np.asarray(self.spacing_mm)) @ self.axes_lps

    # ------------------------------------------------------------------ SimpleITK bridge
    def to_sitk(self) -> sitk.Image:
        """SimpleITK image with the same voxels and geometry (copies the array)."""
        arr = self.array
        if arr.dtype == np.bool_:
            arr = arr.astype(np.uint8)
        img = sitk.GetImageFromArray(np.ascontiguousarray(arr))
        img.SetSpacing(tuple(float(s) for s in self.spacing_mm[::-1]))
        img.SetOrigin(tuple(float(o) for o in self.origin_lps))
        # SimpleITK direction: columns are the LPS directions of its x (col), y (row), z (slice) axes.
        img.SetDirection(tuple(float(v) for v in self.axes_lps[::-1].T.ravel()))
        return img

    @classmethod
    def from_sitk(cls, image: sitk.Image) -> Volume:
        """Volume from a 3-D SimpleITK image (copies the voxels)."""
        if image.GetDimension() != 3:
            raise InputError(f"expected a 3-D image, got {image.GetDimension()}-D")
        if image.GetNumberOfComponentsPerPixel() != 1:
            raise InputError(
                f"expected a scalar image, got {image.GetNumberOfComponentsPerPixel()} components per voxel"
            )
        arr = sitk.GetArrayFromImage(image)
        direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
        axes = direction.T[::-1]
        return cls(arr, tuple(image.GetSpacing()[::-1]), tuple(image.GetOrigin()), axes)

    def resample_like(self, reference: Volume, *, linear: bool = True, default: float = 0.0) -> Volume:
        """This volume's voxels sampled on ``reference``'s grid using both geometries (no registration)."""
        interp = sitk.sitkLinear if linear else sitk.sitkNearestNeighbor
        src = self.to_sitk()
        if linear and src.GetPixelID() != sitk.sitkFloat32:
            src = sitk.Cast(src, sitk.sitkFloat32)
        out = sitk.Resample(src, reference.to_sitk(), sitk.Transform(), interp, float(default))
        return Volume.from_sitk(out)
