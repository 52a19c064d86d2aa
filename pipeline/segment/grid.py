"""The network's working grid: a canonical copy of a sagittal series at a fixed in-plane pitch.

Every sagittal series, whatever its orientation and pixel size, is presented to the network the same way:
array axes ``(slice, row, col)`` with rows running head -> feet and columns anterior -> posterior, square pixels
of ``pitch_mm``, slices as acquired (left-right). Training (:mod:`pipeline.segment.train`) and inference use the
same functions here, so the network sees at run time exactly what it saw in training.

:class:`WorkingGrid` maps arrays both ways: :meth:`WorkingGrid.to_work` (input -> working, any array) and
:meth:`WorkingGrid.to_input` (working -> input; linear interpolation of probabilities, so a boundary found at
0.5 is sub-pixel on the input grid).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from pipeline.errors import InputError
from pipeline.volume import Volume

_SUPERIOR = np.array([0.0, 0.0, 1.0])  # LPS +z
_POSTERIOR = np.array([0.0, 1.0, 0.0])  # LPS +y
_LEFT = np.array([1.0, 0.0, 0.0])  # LPS +x
# A sagittal series' slice normal must be within 45 degrees of left-right.
_MIN_LR_COSINE = float(np.cos(np.deg2rad(45.0)))
_MIN_FOV_MM = 60.0


@dataclass(frozen=True, eq=False)
class WorkingGrid:
    """Canonical copy of a sagittal series and the way back to the input grid.

    Attributes
    ----------
    image : Volume
        Float32 working image ``(slice, row, col)``: rows head -> feet, columns anterior -> posterior, in-plane
        pitch ``pitch_mm`` (both axes).
    input_volume : Volume
        The series as given.
    transpose_rows_cols, flip_rows, flip_cols : bool
        How the input array was permuted to reach the canonical axes (transpose first, then flips).
    in_plane_mm : tuple of float
        Input (row, col) pixel pitch after the transpose.
    """

    image: Volume
    input_volume: Volume
    transpose_rows_cols: bool
    flip_rows: bool
    flip_cols: bool
    in_plane_mm: tuple[float, float]

    @property
    def pitch_mm(self) -> float:
        return float(self.image.spacing_mm[1])

    @property
    def slice_mm(self) -> float:
        return float(self.image.spacing_mm[0])

    def _permute(self, arr: np.ndarray) -> np.ndarray:
        if self.transpose_rows_cols:
            arr = arr.transpose(0, 2, 1)
        if self.flip_rows:
            arr = arr[:, ::-1, :]
        if self.flip_cols:
            arr = arr[:, :, ::-1]
        return arr

    def _unpermute(self, arr: np.ndarray) -> np.ndarray:
        if self.flip_rows:
            arr = arr[:, ::-1, :]
        if self.flip_cols:
            arr = arr[:, :, ::-1]
        if self.transpose_rows_cols:
            arr = arr.transpose(0, 2, 1)
        return arr

    def to_work(self, arr: np.ndarray, *, order: int = 1) -> np.ndarray:
        """An array on the input grid -> the working grid (``order`` 0 for labels, 1 for intensities)."""
        perm = np.asarray(self._permute(arr))
        shape = self.image.shape[1:]
        return _resample_slices(perm, self.in_plane_mm, self.pitch_mm, shape, order=order, forward=True)

    def to_input(
        self, arr: np.ndarray, *, order: int = 1, window: tuple[int, int, int, int] | None = None
    ) -> np.ndarray:
        """An array on the working grid -> the input grid (same shape as the input volume).

        ``window`` ``(row0, row1, col0, col1)`` on the working grid: only that part is resampled (zeros elsewhere),
        which saves most of the time when the bodies cover a small part of a large field of view.
        """
        perm_shape = self._permute(np.empty(self.input_volume.shape, dtype=np.uint8)).shape[1:]
        if window is None:
            out = _resample_slices(arr, self.in_plane_mm, self.pitch_mm, perm_shape, order=order, forward=False)
        else:
            scale = self.pitch_mm / np.asarray(self.in_plane_mm)  # working index -> input index
            r0 = max(0, int(np.floor(window[0] * scale[0])))
            r1 = min(perm_shape[0], int(np.ceil(window[1] * scale[0])) + 1)
            c0 = max(0, int(np.floor(window[2] * scale[1])))
            c1 = min(perm_shape[1], int(np.ceil(window[3] * scale[1])) + 1)
            out = np.zeros((arr.shape[0], *perm_shape), dtype=arr.dtype if order == 0 else np.float32)
            if r1 > r0 and c1 > c0:
                out[:, r0:r1, c0:c1] = _resample_slices(
                    arr,
                    self.in_plane_mm,
                    self.pitch_mm,
                    (r1 - r0, c1 - c0),
                    order=order,
                    forward=False,
                    offset=(r0, c0),
                )
        return np.ascontiguousarray(self._unpermute(out))


def _resample_slices(
    arr: np.ndarray,
    in_mm: tuple[float, float],
    pitch_mm: float,
    out_shape: tuple[int, ...],
    *,
    order: int,
    forward: bool,
    offset: tuple[int, int] = (0, 0),
) -> np.ndarray:
    """Resample every slice between the input pixel pitch ``in_mm`` and the working ``pitch_mm``.

    Both grids share pixel (0, 0) (the working origin is the permuted input origin), so working index
    ``w = i * in_mm / pitch_mm``. ``forward``: input -> working (Gaussian anti-aliasing when shrinking).
    """
    scale = np.array(in_mm) / pitch_mm  # input index -> working index
    if not forward:
        scale = 1.0 / scale
    src = arr
    if forward and order > 0:
        # anti-aliasing when the working pitch is coarser than the input pixels
        sigma = [0.0] + [0.42 / s if s < 1.0 else 0.0 for s in scale]
        if any(s > 0 for s in sigma):
            src = ndi.gaussian_filter(arr.astype(np.float32, copy=False), sigma)
    rows = (offset[0] + np.arange(out_shape[0])) / scale[0]
    cols = (offset[1] + np.arange(out_shape[1])) / scale[1]
    if np.allclose(scale, 1.0) and src.shape[1:] == tuple(out_shape) and offset == (0, 0):
        return np.array(src, copy=True)
    dtype = src.dtype if order == 0 else np.float32
    out = np.empty((src.shape[0], *out_shape), dtype=dtype)
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    for s in range(src.shape[0]):
        out[s] = ndi.map_coordinates(src[s], [rr, cc], order=order, mode="nearest", prefilter=False)
    return out


def make_working_grid(image: Volume, pitch_mm: float) -> WorkingGrid:
    """Canonical float32 copy of ``image`` at ``pitch_mm`` in-plane (see :class:`WorkingGrid`).

    Raises
    ------
    InputError
        The series is not sagittal (its slice normal is more than 45 degrees from left-right) or its field of
        view is too small to hold a vertebral body.
    """
    axes = np.asarray(image.axes_lps, dtype=float)
    if abs(float(axes[0] @ _LEFT)) < _MIN_LR_COSINE:
        raise InputError(
            "vertebral segmentation needs a sagittal series (slices stacked left-right); this series' slice "
            f"normal is {np.round(axes[0], 3).tolist()} (LPS). Choose the sagittal T2/T1/STIR series."
        )
    fov = [image.shape[i] * image.spacing_mm[i] for i in (1, 2)]
    if min(fov) < _MIN_FOV_MM or min(image.shape[1:]) < 16:
        raise InputError(
            f"series too small for segmentation: {image.shape} voxels (slice, row, col), in-plane field of view "
            f"{fov[0]:.0f} x {fov[1]:.0f} mm (at least {_MIN_FOV_MM:.0f} mm and 16 pixels needed)"
        )
    transpose = abs(float(axes[1] @ _SUPERIOR)) < abs(float(axes[2] @ _SUPERIOR))
    spacing = list(image.spacing_mm)
    ax = axes.copy()
    n = list(image.shape)
    if transpose:
        spacing = [spacing[0], spacing[2], spacing[1]]
        ax = ax[[0, 2, 1]]
        n = [n[0], n[2], n[1]]
    origin = np.asarray(image.origin_lps, dtype=float)
    flip_rows = float(ax[1] @ _SUPERIOR) > 0  # rows must run towards the feet
    flip_cols = float(ax[2] @ _POSTERIOR) < 0  # cols must run towards the back
    if flip_rows:
        origin = origin + (n[1] - 1) * spacing[1] * ax[1]
        ax[1] = -ax[1]
    if flip_cols:
        origin = origin + (n[2] - 1) * spacing[2] * ax[2]
        ax[2] = -ax[2]
    in_plane = (float(spacing[1]), float(spacing[2]))
    shape = tuple(max(16, int(np.floor((n[i] - 1) * spacing[i] / pitch_mm)) + 1) for i in (1, 2))
    grid = WorkingGrid(
        image=Volume(np.zeros((1, 1, 1), np.float32), (spacing[0], pitch_mm, pitch_mm), tuple(origin), ax),
        input_volume=image,
        transpose_rows_cols=transpose,
        flip_rows=flip_rows,
        flip_cols=flip_cols,
        in_plane_mm=in_plane,
    )
    # the placeholder image above only carries the geometry needed by to_work; now fill the real pixels
    work = _resample_slices(
        np.asarray(grid._permute(image.array), dtype=np.float32), in_plane, pitch_mm, shape, order=1, forward=True
    )
    vol = Volume(work.astype(np.float32, copy=False), (spacing[0], pitch_mm, pitch_mm), tuple(origin), ax)
    return WorkingGrid(vol, image, transpose, flip_rows, flip_cols, in_plane)


def normalise_slices(arr: np.ndarray) -> np.ndarray:
    """Per sagittal slice: divide by the 99.5th percentile of the slice and clip to [0, 1.5] (float32).

    Per-slice scaling makes the input independent of the scanner's arbitrary intensity scale and of a coil
    fall-off across slices; the network was trained with exactly this (on the whole slice, before cropping).
    """
    a = np.asarray(arr, dtype=np.float32)
    flat = a.reshape(a.shape[0], -1)
    hi = np.percentile(flat[:, ::3], 99.5, axis=1)
    lo = np.minimum(np.percentile(flat[:, ::3], 0.5, axis=1), 0.0)
    scale = np.where(hi - lo > 1e-6, hi - lo, 1.0)
    out = (a - lo[:, None, None]) / scale[:, None, None]
    return np.clip(out, 0.0, 1.5).astype(np.float32)
