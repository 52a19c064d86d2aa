"""Working grid, bias-field correction and intensity normalisation.

The segmentation works on a *canonical* copy of the sagittal series: array axes ``(slice, row, col)`` with
rows running head -> feet and columns running anterior -> posterior, in-plane pitch no finer than
``working_pitch_mm``. :class:`WorkingGrid` remembers how that copy maps back onto the input grid, so the
output label map is always on the caller's grid.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi

from pipeline.errors import InputError
from pipeline.segment.config import SegmentationConfig
from pipeline.volume import Volume

logger = logging.getLogger(__name__)

_SUPERIOR = np.array([0.0, 0.0, 1.0])  # LPS +z
_POSTERIOR = np.array([0.0, 1.0, 0.0])  # LPS +y
_LEFT = np.array([1.0, 0.0, 0.0])  # LPS +x
# A sagittal series' slice normal must be within 45 degrees of left-right.
_MIN_LR_COSINE = float(np.cos(np.deg2rad(45.0)))


@dataclass(frozen=True, eq=False)
class WorkingGrid:
    """Canonical working copy of a sagittal series and the way back to the input grid.

    Attributes
    ----------
    image : Volume
        Float32 working image, axes ``(slice, row, col)`` = (left-right as acquired, head -> feet,
        anterior -> posterior), in-plane pitch ``>= working_pitch_mm`` unless the input was coarser.
    transpose_rows_cols : bool
        The input's row axis ran anterior-posterior (rows and columns were swapped).
    flip_rows, flip_cols : bool
        The working rows / columns run opposite to the (possibly transposed) input axes.
    resampled : bool
        The in-plane pitch was changed (labels must be resampled back, not only flipped).
    input_shape : tuple of int
        Shape of the input array.
    """

    image: Volume
    transpose_rows_cols: bool
    flip_rows: bool
    flip_cols: bool
    resampled: bool
    input_volume: Volume

    @property
    def spacing(self) -> np.ndarray:
        return np.asarray(self.image.spacing_mm, dtype=float)

    def labels_to_input(self, labels: np.ndarray) -> np.ndarray:
        """Working-grid label array -> label array on the input grid (uint16, same shape as the input)."""
        lab = labels.astype(np.uint16, copy=False)
        if self.resampled:
            vol = self._permuted_geometry(lab)
            out = vol.resample_like(self.input_volume, linear=False, default=0.0).array
            return np.ascontiguousarray(out.astype(np.uint16))
        return np.ascontiguousarray(self._unpermute(lab))

    def _unpermute(self, arr: np.ndarray) -> np.ndarray:
        if self.flip_rows:
            arr = arr[:, ::-1, :]
        if self.flip_cols:
            arr = arr[:, :, ::-1]
        if self.transpose_rows_cols:
            arr = arr.transpose(0, 2, 1)
        return arr

    def _permuted_geometry(self, arr: np.ndarray) -> Volume:
        return Volume(arr, self.image.spacing_mm, self.image.origin_lps, self.image.axes_lps)


def make_working_grid(image: Volume, cfg: SegmentationConfig) -> WorkingGrid:
    """Canonical float32 copy of ``image`` (see :class:`WorkingGrid`).

    Raises
    ------
    InputError
        The series is not sagittal (its slice normal is more than 45 degrees from left-right), or too small.
    """
    axes = np.asarray(image.axes_lps, dtype=float)
    if abs(float(axes[0] @ _LEFT)) < _MIN_LR_COSINE:
        raise InputError(
            "vertebral segmentation needs a sagittal series (slices stacked left-right); this series' slice "
            f"normal is {np.round(axes[0], 3).tolist()} (LPS). Choose the sagittal T2/T1/STIR series."
        )
    if min(image.shape[1:]) < 16:
        raise InputError(f"series too small for segmentation: {image.shape} voxels (slice, row, col)")
    transpose = abs(float(axes[1] @ _SUPERIOR)) < abs(float(axes[2] @ _SUPERIOR))
    arr = image.array
    spacing = list(image.spacing_mm)
    ax = axes.copy()
    if transpose:
        arr = arr.transpose(0, 2, 1)
        spacing = [spacing[0], spacing[2], spacing[1]]
        ax = ax[[0, 2, 1]]
    origin = np.asarray(image.origin_lps, dtype=float)
    flip_rows = float(ax[1] @ _SUPERIOR) > 0  # rows must run towards the feet
    flip_cols = float(ax[2] @ _POSTERIOR) < 0  # cols must run towards the back
    n = arr.shape
    if flip_rows:
        arr = arr[:, ::-1, :]
        origin = origin + (n[1] - 1) * spacing[1] * ax[1]
        ax[1] = -ax[1]
    if flip_cols:
        arr = arr[:, :, ::-1]
        origin = origin + (n[2] - 1) * spacing[2] * ax[2]
        ax[2] = -ax[2]
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    work = Volume(arr, (spacing[0], spacing[1], spacing[2]), (origin[0], origin[1], origin[2]), ax)
    resampled = False
    pitch = cfg.working_pitch_mm
    if min(spacing[1], spacing[2]) < 0.75 * pitch:
        new_sp = (spacing[0], max(spacing[1], pitch), max(spacing[2], pitch))
        work = _resample_in_plane(work, new_sp)
        resampled = True
    return WorkingGrid(work, transpose, flip_rows, flip_cols, resampled, image)


def _resample_in_plane(vol: Volume, new_spacing: tuple[float, float, float]) -> Volume:
    """Down-sample rows/cols to ``new_spacing`` (Gaussian anti-aliasing, linear interpolation)."""
    sp = np.asarray(vol.spacing_mm)
    factor = np.asarray(new_spacing) / sp
    sigma = [0.0] + [0.42 * f if f > 1 else 0.0 for f in factor[1:]]
    arr = ndi.gaussian_filter(vol.array, sigma) if any(s > 0 for s in sigma) else vol.array
    shape = [vol.shape[0]] + [max(2, int(np.floor((vol.shape[i] - 1) * sp[i] / new_spacing[i])) + 1) for i in (1, 2)]
    grids = [np.arange(shape[i]) * (new_spacing[i] / sp[i]) for i in range(3)]
    out = np.empty(shape, np.float32)
    rr, cc = np.meshgrid(grids[1], grids[2], indexing="ij")
    for s in range(shape[0]):
        out[s] = ndi.map_coordinates(arr[s], [rr, cc], order=1, mode="nearest")
    pitch = (float(new_spacing[0]), float(new_spacing[1]), float(new_spacing[2]))
    return Volume(out, pitch, vol.origin_lps, vol.axes_lps)


def correct_bias(vol: Volume, cfg: SegmentationConfig) -> np.ndarray:
    """N4 bias-field-corrected voxels of ``vol`` (float32, same shape).

    N4 is fitted on a copy shrunk to about ``n4_pitch_mm`` in-plane (it is smooth), inside an Otsu
    foreground mask, and its log field is interpolated back to the full grid.
    """
    arr = vol.array.astype(np.float32, copy=False)
    if not cfg.bias_correction:
        return arr.copy()
    sp = np.asarray(vol.spacing_mm)
    shrink = [max(1, int(round(cfg.n4_pitch_mm / s))) for s in sp]
    small = arr[:: shrink[0], :: shrink[1], :: shrink[2]]
    if min(small.shape[1:]) < 8:
        return arr.copy()
    floor = float(np.percentile(arr, 99.5)) * 1e-3 + 1e-6
    img = sitk.GetImageFromArray(np.maximum(small, floor).astype(np.float32))
    img.SetSpacing((float(sp[2] * shrink[2]), float(sp[1] * shrink[1]), float(sp[0] * shrink[0])))
    mask = sitk.OtsuThreshold(img, 0, 1, 128)
    n4 = sitk.N4BiasFieldCorrectionImageFilter()
    n4.SetMaximumNumberOfIterations([cfg.n4_iterations] * 2)
    n4.SetNumberOfThreads(1)
    try:
        n4.Execute(img, mask)
        log_small = sitk.GetArrayFromImage(n4.GetLogBiasFieldAsImage(img))
    except RuntimeError as exc:  # degenerate mask etc.: carry on uncorrected, the later steps are local
        logger.warning("N4 bias correction failed (%s); continuing without it", exc)
        return arr.copy()
    zoom = [arr.shape[i] / log_small.shape[i] for i in range(3)]
    log_full = ndi.zoom(log_small, zoom, order=1, mode="nearest", grid_mode=True)
    log_full = log_full[: arr.shape[0], : arr.shape[1], : arr.shape[2]]
    if log_full.shape != arr.shape:
        pad = [(0, arr.shape[i] - log_full.shape[i]) for i in range(3)]
        log_full = np.pad(log_full, pad, mode="edge")
    return (arr / np.exp(log_full)).astype(np.float32)


def normalise(arr: np.ndarray) -> np.ndarray:
    """Scale so that the 95th percentile of the foreground (upper half of voxels) is 1.0."""
    sample = arr[:, ::2, ::2]
    fg = sample[sample > np.percentile(sample, 50)]
    scale = float(np.percentile(fg, 95)) if fg.size else float(sample.max())
    if not np.isfinite(scale) or scale <= 0:
        scale = 1.0
    return (arr / scale).astype(np.float32)
