"""Measure a phantom back from its pixels: the checks behind the truth (used by tests and benchmarks).

Nothing here is used to *make* a phantom. Heights are measured on label masks along the truth's own
measurement lines (the 10 / 50 / 90 % lines of each body, parallel to its axis ``v``) with bilinear
interpolation of the mask (sub-voxel); high-resolution re-renders use the very painters of the phantom.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.ndimage import map_coordinates

from pipeline.tools.phantom.anatomy import Anatomy
from pipeline.tools.phantom.render import Phantom, render_stack
from pipeline.volume import Volume

SAGITTAL_AXES = np.array([[-1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
HEIGHT_NAMES = ("anterior", "middle", "posterior")


def vertebra(phantom: Phantom, level: str) -> dict[str, Any]:
    """The truth record of ``level``."""
    return next(v for v in phantom.truth["vertebrae"] if v["level"] == level)


def heights_on_mask(
    mask2d: np.ndarray, vol: Volume, slice_index: int, record: dict[str, Any], step_mm: float = 0.01
) -> dict[str, float]:
    """Ha/Hm/Hp (mm) of one body on slice ``slice_index`` of ``vol``'s grid, along the truth lines.

    ``mask2d`` is the body's mask on that slice (bool, rows x cols); the extent is where the bilinearly
    interpolated mask is >= 0.5.
    """
    v = np.asarray(record["axes_lps"]["v_cranial"], float)
    out = {}
    for name in HEIGHT_NAMES:
        sup = np.asarray(record["landmarks_lps_mm"][f"{name}_superior"], float)
        inf = np.asarray(record["landmarks_lps_mm"][f"{name}_inferior"], float)
        base = 0.5 * (sup + inf)
        base[0] = vol.index_to_lps([slice_index, 0, 0])[0]  # into the slice plane
        t = np.arange(-40.0, 40.0, step_mm)
        idx = vol.lps_to_index(base[None, :] + t[:, None] * v[None, :])[:, 1:]
        vals = map_coordinates(mask2d.astype(np.float32), idx.T, order=1, mode="constant")
        hit = t[vals >= 0.5]
        out[name] = float(hit.max() - hit.min()) if hit.size else 0.0
    return out


def height_loss_pct(heights: dict[str, float], reference_mm: float) -> float:
    return 100.0 * (1.0 - min(heights.values()) / reference_mm)


def mid_plane_labels(
    anatomy: Anatomy, level: str, spacing_mm: float = 0.05, half_size_mm: float = 24.0
) -> tuple[np.ndarray, Volume]:
    """Label image of the body's mid-sagittal plane, re-rendered at ``spacing_mm`` with the same painters."""
    body = anatomy.bodies[level]
    n = int(round(2 * half_size_mm / spacing_mm))
    cy, cz = body.frame.centre
    origin = np.array([body.x0, cy - half_size_mm, cz + half_size_mm])
    st = render_stack(
        anatomy.painters,
        origin,
        SAGITTAL_AXES,
        (1.0, spacing_mm, spacing_mm),
        (1, n, n),
        1e-3,
        1,
        1,
        ("T1",),
        with_labels=True,
    )
    spacing = (1.0, spacing_mm, spacing_mm)
    vol = Volume(np.zeros((1, n, n), np.float32), spacing, (origin[0], origin[1], origin[2]), SAGITTAL_AXES)
    return st["labels"][0], vol


def edema_fraction_hires(anatomy: Anatomy, level: str, spacing_mm: float = 0.4) -> float:
    """Oedematous share of the body on an isotropic ``spacing_mm`` re-render of the whole body."""
    body = anatomy.bodies[level]
    n = int(round(48.0 / spacing_mm))
    nx = int(round((2 * body.shape.Wh + 2.0) / spacing_mm))
    cy, cz = body.frame.centre
    origin = np.array([body.x0 + spacing_mm * (nx - 1) / 2, cy - 24.0, cz + 24.0])
    st = render_stack(
        anatomy.painters,
        origin,
        SAGITTAL_AXES,
        (spacing_mm, spacing_mm, spacing_mm),
        (nx, n, n),
        1e-3,
        1,
        1,
        ("T1",),
        with_labels=True,
    )
    inside = st["labels"] == body.label
    return float((st["edema"] & inside).sum() / max(int(inside.sum()), 1))


def mask_centroid_and_volume(phantom: Phantom, label: int) -> tuple[np.ndarray, float]:
    """LPS centroid (mm) and volume (mm^3) of a label in the series-grid label map."""
    lab = phantom.labels
    idx = np.argwhere(lab.array == label)
    return lab.index_to_lps(idx.mean(axis=0)), float(len(idx) * lab.voxel_volume_mm3)
