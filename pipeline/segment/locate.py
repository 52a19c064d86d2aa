"""Find the vertebral column: choose the canal among tube candidates and centre the mid-sagittal slab."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from pipeline.errors import AnalysisError
from pipeline.segment import column as col
from pipeline.segment.config import SegmentationConfig
from pipeline.segment.discs import ColumnProfile, column_evidence, column_profile

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class ColumnFit:
    """The located column.

    Attributes
    ----------
    axis : ColumnAxis
        Canal curve on the working grid.
    profile : ColumnProfile
        Straightened mid-slab with its body / disc partition.
    mid_slice : float
        Working slice index (continuous) of the mid-sagittal plane.
    evidence : float
        :func:`~pipeline.segment.discs.column_evidence` of the chosen candidate (0 = no column).
    canal_strength : numpy.ndarray
        Tube-likeness per slice along the chosen canal path (for the mid-sagittal estimate).
    """

    axis: col.ColumnAxis
    profile: ColumnProfile
    mid_slice: float
    evidence: float
    canal_strength: np.ndarray


def _best_candidate(
    arr: np.ndarray, centre: float, pitch: tuple[float, float], slice_mm: float, cfg: SegmentationConfig, bright: bool
) -> tuple[float, np.ndarray, col.ColumnAxis, ColumnProfile]:
    mid = col.slab_image(arr, centre, cfg.slab_halfwidth_mm, slice_mm)
    background = float(np.percentile(mid, 5))
    ridge = col.canal_ridge(mid, pitch, cfg, bright)
    best: tuple[float, np.ndarray, col.ColumnAxis, ColumnProfile] | None = None
    for path in col.candidate_paths(ridge, pitch, cfg):
        path = col.corridor_path(ridge, path, pitch, cfg)
        axis = col.axis_from_path(path, pitch, cfg)
        prof = column_profile(mid, ridge, axis, cfg, bright)
        ev = column_evidence(prof, cfg, axis.step_mm, background)
        logger.debug(
            "canal candidate at median column %.0f: evidence %.2f, %d bodies", np.median(path), ev, len(prof.bodies)
        )
        if best is None or ev > best[0]:
            best = (ev, path, axis, prof)
    if best is None:
        raise AnalysisError("no spinal canal found (no tube-like structure along the series' head-feet axis)")
    return best


def locate_column(
    arr: np.ndarray, spacing_mm: tuple[float, float, float], cfg: SegmentationConfig, bright_canal: bool
) -> ColumnFit:
    """Locate the canal, the mid-sagittal plane and the body / disc partition along the column.

    Parameters
    ----------
    arr : numpy.ndarray
        Normalised canonical working image ``(slices, rows head->feet, cols anterior->posterior)``.
    spacing_mm : tuple of float
        Working voxel pitch ``(slice, row, col)``.
    bright_canal : bool
        CSF is bright (T2, STIR, Dixon water) rather than dark (T1).

    Raises
    ------
    AnalysisError
        No canal-like structure with vertebral bodies in front of it.
    """
    slice_mm = spacing_mm[0]
    pitch = (spacing_mm[1], spacing_mm[2])
    centre = (arr.shape[0] - 1) / 2.0
    ev, path, axis, prof = _best_candidate(arr, centre, pitch, slice_mm, cfg, bright_canal)
    strength = col.canal_strength_per_slice(arr, path, pitch, cfg, bright_canal)
    new_centre = col.midline_from_strength(strength, slice_mm)
    if abs(new_centre - centre) * slice_mm > max(cfg.slab_halfwidth_mm, slice_mm) * 0.5:
        logger.debug("mid-sagittal plane moved from slice %.1f to %.1f", centre, new_centre)
        ev2, path2, axis2, prof2 = _best_candidate(arr, new_centre, pitch, slice_mm, cfg, bright_canal)
        same_canal = float(np.median(np.abs(path2 - path))) * pitch[1] <= 10.0
        if same_canal or ev2 > ev:
            ev, path, axis, prof = ev2, path2, axis2, prof2
        else:  # the slab moved onto another structure: keep the first fit
            new_centre = centre
    if ev <= 0 or not prof.bodies:
        raise AnalysisError(
            "no vertebral column found: no canal with a regular series of bodies and discs in "
            "front of it (is this a sagittal spine series?)"
        )
    return ColumnFit(axis, prof, float(new_centre), float(ev), strength)
