"""``segment_vertebrae``: the stage function (sagittal series -> labelled vertebral bodies).

Steps (each in its own module): the canonical working grid at the network's pitch (:mod:`.grid`); class
probabilities per sagittal slice from the committed network (:mod:`.network`); one instance per body with the
anatomy as constraints (:mod:`.instances`); level names from the learned S1 and the count up from it
(:mod:`.labelling`); the label map back on the input grid with a sub-voxel boundary, and per-vertebra geometry.
"""

from __future__ import annotations

import logging
import time
from functools import lru_cache

import numpy as np
from scipy import ndimage as ndi

from pipeline.levels import Level
from pipeline.model import Role, SegmentationResult, VertebraSeg
from pipeline.segment.config import SegmentationConfig
from pipeline.segment.grid import WorkingGrid, make_working_grid
from pipeline.segment.instances import BodyInstance, find_bodies, gaps_mm, labels_on_input
from pipeline.segment.labelling import Anchor, BodyFacts, label_bodies
from pipeline.segment.network import MODEL_DIR, ModelCard, load_card, predict
from pipeline.volume import Volume

logger = logging.getLogger(__name__)

NO_BODY_WARNING = (
    "no vertebral body found: the segmentation network saw no body-like structure in this series "
    "(check that it is a sagittal spine series covering the thoracolumbar column)"
)


@lru_cache(maxsize=1)
def _card() -> ModelCard:
    return load_card(MODEL_DIR)


def segment_vertebrae(
    image: Volume,
    *,
    cfg: SegmentationConfig,
    series_uid: str = "",
    contrast: Role = Role.T2,
    anchor: Anchor | None = None,
    model: ModelCard | None = None,
) -> SegmentationResult:
    """Segment and label the vertebral bodies of a sagittal spine series.

    Parameters
    ----------
    image : Volume
        Sagittal series, array ``(slice, row, col)`` with slices stacked left-right; rows and columns may run
        in any direction (``axes_lps`` says which way is superior / anterior).
    cfg : SegmentationConfig
        Stage settings (``configs/segmentation.yaml``).
    series_uid : str
        Recorded in the result and in log lines.
    contrast : Role
        The series' role, for the log. The network was trained on T1, T2 and STIR / Dixon-water alike and
        needs no per-contrast setting.
    anchor : Anchor, optional
        User override of the level count (see :func:`pipeline.segment.parse_anchor`).
    model : ModelCard, optional
        Another network than the committed one (:func:`pipeline.segment.network.load_card` of its folder), for
        validation models in the benchmarks.

    Returns
    -------
    SegmentationResult
        ``labels``: uint16 label map on the input grid (0 background, 1..N cranial -> caudal, S1 last when
        named); one :class:`VertebraSeg` per label.

    Raises
    ------
    InputError
        The series is not sagittal or too small.
    ConfigError
        The committed model is missing or damaged.
    """
    t_start = time.perf_counter()
    card = model if model is not None else _card()
    grid = make_working_grid(image, card.pitch_mm)
    prob = predict(grid.image.array, card)
    work_labels, bodies = find_bodies(prob, grid.image.spacing_mm, cfg)
    if not bodies:
        logger.info("series %s (%s): no vertebral body found", series_uid or "?", contrast.value)
        return _empty(image, series_uid, [NO_BODY_WARNING], card.sha256)

    sp = np.asarray(grid.image.spacing_mm)
    fg = prob[:, 1] + prob[:, 3]
    gaps: list[float | None] = [*gaps_mm(fg, bodies, grid.image.spacing_mm), None]
    facts = [
        BodyFacts(
            centre_mm=tuple(float(v) for v in np.asarray(b.centroid) * sp),  # type: ignore[arg-type]
            centroid_z_mm=float(grid.image.index_to_lps(np.asarray(b.centroid))[2]),
            height_mm=b.height_mm,
            s1_score=b.s1_score,
            cut_below=b.cut_below,
            gap_below_mm=g,
        )
        for b, g in zip(bodies, gaps, strict=True)
    ]
    lab = label_bodies(facts, cfg, anchor)
    warnings = list(lab.warnings)
    last = lab.sacrum_index if lab.sacrum_index is not None else len(bodies) - 1
    if last + 1 < len(bodies):
        logger.debug("dropping %d candidates below S1", len(bodies) - last - 1)
    kept = bodies[: last + 1]
    work_kept = np.where(work_labels <= last + 1, work_labels, 0)
    expand_px = max(1, int(round(cfg.subvoxel_territory_mm / card.pitch_mm)))
    labels = labels_on_input(work_kept, fg, grid.to_input, expand_px=expand_px)
    vertebrae = _describe(
        labels, image, kept, lab.levels[: last + 1], lab.confidence[: last + 1], lab.sacrum_index, grid, warnings
    )
    logger.info(
        "series %s (%s): %d vertebral bodies (%s) in %.2f s",
        series_uid or "?",
        contrast.value,
        len(vertebrae),
        lab.method,
        time.perf_counter() - t_start,
    )
    return SegmentationResult(
        labels=image.with_array(labels),
        vertebrae=tuple(vertebrae),
        series_uid=series_uid,
        sacrum_found=any(v.is_sacrum for v in vertebrae),
        labelling_method=lab.method,
        warnings=tuple(warnings),
        column_axis_lps=tuple(v.centroid_lps_mm for v in vertebrae),
        model_sha256=card.sha256,
    )


def _describe(
    labels: np.ndarray,
    image: Volume,
    bodies: list[BodyInstance],
    levels: tuple[Level | None, ...],
    confidence: tuple[float, ...],
    sacrum_index: int | None,
    grid: WorkingGrid,
    warnings: list[str],
) -> list[VertebraSeg]:
    out: list[VertebraSeg] = []
    objects = ndi.find_objects(labels)
    heights = np.array([b.height_mm for b in bodies])
    med_h = float(np.median(heights)) if heights.size else 0.0
    for n, (b, lv, conf) in enumerate(zip(bodies, levels, confidence, strict=True), start=1):
        sl = objects[n - 1] if n - 1 < len(objects) else None
        name = lv.value if lv else "level unknown"
        if sl is None:
            warnings.append(f"body {n} ({name}) vanished when put back on the series grid (thinner than a voxel)")
            continue
        sub = labels[sl] == n
        count = int(sub.sum())
        com = np.array(ndi.center_of_mass(sub)) + np.array([s.start for s in sl])
        c3 = image.index_to_lps(com)
        areas = sub.sum(axis=(1, 2))
        mid = int(np.argmax(areas)) + sl[0].start
        quality = b.certainty
        if b.touches_edge:
            quality *= 0.5
            warnings.append(f"body {n} ({name}) touches the edge of the field of view; it may be incomplete")
        if med_h > 0 and b.height_mm < 0.6 * med_h:
            warnings.append(
                f"body {n} ({name}) is much lower than its neighbours ({b.height_mm:.0f} mm vs {med_h:.0f} mm): "
                "collapsed or partly segmented"
            )
        out.append(
            VertebraSeg(
                label=n,
                level=lv,
                level_confidence=float(conf),
                centroid_lps_mm=(float(c3[0]), float(c3[1]), float(c3[2])),
                mid_slice=mid,
                bbox=(sl[0].start, sl[1].start, sl[2].start, sl[0].stop, sl[1].stop, sl[2].stop),
                quality=float(quality),
                volume_mm3=count * image.voxel_volume_mm3,
                is_sacrum=(sacrum_index is not None and n - 1 == sacrum_index and lv is Level.S1),
            )
        )
    return out


def _empty(image: Volume, series_uid: str, warnings: list[str], model_sha256: str) -> SegmentationResult:
    return SegmentationResult(
        labels=image.with_array(np.zeros(image.shape, dtype=np.uint16)),
        vertebrae=(),
        series_uid=series_uid,
        sacrum_found=False,
        labelling_method="no bodies",
        warnings=tuple(warnings),
        column_axis_lps=(),
        model_sha256=model_sha256,
    )
