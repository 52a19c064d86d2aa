"""Overlay picture of the oedema map on the STIR (for the HTML report and for review)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from pipeline.model import StirAssessment
from pipeline.volume import Volume

_RED = np.array([255.0, 40.0, 40.0])
_OUTLINE = np.array([255.0, 210.0, 0.0])


def overlay_rgb(
    assessment: StirAssessment,
    slice_index: int,
    labels: Volume | None = None,
    *,
    alpha: float = 0.45,
) -> np.ndarray:
    """One slice of ``assessment.stir_on_grid`` with the oedema map in red and body outlines in yellow.

    Parameters
    ----------
    assessment : StirAssessment
        Must hold ``stir_on_grid`` (status "measured" or a failure after registration).
    slice_index : int
        Array slice of the anatomy grid (for a sagittal series: left -> right).
    labels : Volume, optional
        Label map on the same grid; outlines drawn when given.
    alpha : float
        Opacity of the oedema colour.

    Returns
    -------
    numpy.ndarray
        uint8 ``(rows, cols, 3)``. Grey window: 1st-99.5th percentile of the slice's non-zero voxels.
        The pixel pitch is the grid's ``(spacing_mm[1], spacing_mm[2])``; resample for display if unequal.
    """
    if assessment.stir_on_grid is None:
        raise ValueError("assessment has no STIR on the anatomy grid (status not_available?)")
    img = np.asarray(assessment.stir_on_grid.array[slice_index], dtype=float)
    nz = img[img > 0]
    lo, hi = np.percentile(nz, [1.0, 99.5]) if nz.size else (0.0, 1.0)
    grey = np.clip((img - lo) / max(hi - lo, 1e-9), 0, 1) * 255.0
    rgb = np.repeat(grey[..., None], 3, axis=2)
    if assessment.edema_map is not None:
        m = np.asarray(assessment.edema_map.array[slice_index]) > 0
        rgb[m] = (1 - alpha) * rgb[m] + alpha * _RED
    if labels is not None:
        lab = np.asarray(labels.array[slice_index])
        edge = (lab > 0) & ~ndimage.binary_erosion(lab > 0) | (ndimage.grey_dilation(lab, size=3) != lab) & (lab > 0)
        rgb[edge] = _OUTLINE
    return np.clip(rgb, 0, 255).astype(np.uint8)
