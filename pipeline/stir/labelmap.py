"""A :class:`~pipeline.model.SegmentationResult` from an existing label map (manual masks, NIfTI inputs).

Used by ``spine-assess stir`` and ``benchmarks/stir.py`` to run the oedema stage on a given segmentation
(e.g. the manual masks of a research set) instead of the pipeline's own.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy import ndimage

from pipeline.errors import InputError
from pipeline.levels import Level
from pipeline.model import SegmentationResult, VertebraSeg
from pipeline.volume import Volume


def segmentation_from_label_map(
    labels: Volume,
    levels: Mapping[int, Level | None] | None = None,
    *,
    series_uid: str = "",
    method: str = "given label map",
) -> SegmentationResult:
    """Describe every non-zero label of ``labels`` as a vertebral body.

    Parameters
    ----------
    labels : Volume
        Integer label map ``(S, R, C)``; 1..N cranial -> caudal, 0 background.
    levels : mapping label -> Level, optional
        Level names; a label at ``Level.S1`` is flagged ``is_sacrum``.
    series_uid : str
        Recorded in the result.

    Raises
    ------
    InputError
        The label map is not integer-valued or holds no label.
    """
    arr = np.asarray(labels.array)
    if not np.issubdtype(arr.dtype, np.integer):
        raise InputError(f"label map must hold integers, got {arr.dtype}; is this the image instead of the labels?")
    if arr.min() < 0:
        raise InputError("label map holds negative values")
    lab = arr.astype(np.uint16)
    present = [int(v) for v in np.unique(lab) if v != 0]
    if not present:
        raise InputError("label map holds no vertebral body (all zero)")
    levels = dict(levels or {})
    objects = ndimage.find_objects(lab)
    verts = []
    for v in present:
        sl = objects[v - 1]
        assert sl is not None
        m = lab[sl] == v
        idx = np.argwhere(m) + np.array([s.start for s in sl])
        centre_idx = idx.mean(axis=0)
        lv = levels.get(v)
        verts.append(
            VertebraSeg(
                label=v,
                level=lv,
                level_confidence=1.0 if lv is not None else 0.0,
                centroid_lps_mm=tuple(float(x) for x in labels.index_to_lps(centre_idx)),  # type: ignore[arg-type]
                mid_slice=int(round(centre_idx[0])),
                bbox=(sl[0].start, sl[1].start, sl[2].start, sl[0].stop, sl[1].stop, sl[2].stop),
                quality=1.0,
                volume_mm3=float(m.sum() * labels.voxel_volume_mm3),
                is_sacrum=lv is Level.S1,
            )
        )
    return SegmentationResult(
        labels=labels.with_array(lab),
        vertebrae=tuple(verts),
        series_uid=series_uid,
        sacrum_found=any(v.is_sacrum for v in verts),
        labelling_method=method,
    )
