"""S1 pseudo-labels: a first model's S1 on the research scans whose masks stop at L5 (numpy + onnxruntime)."""

from __future__ import annotations

import logging

import numpy as np

from pipeline.segment.config import SegmentationConfig
from pipeline.segment.instances import find_bodies
from pipeline.segment.network import ModelCard, predict
from pipeline.segment.train.data import BODY, S1, TrainingCase, add_pseudo_s1

logger = logging.getLogger(__name__)


def pseudo_s1_body(case: TrainingCase, card: ModelCard, cfg: SegmentationConfig) -> tuple[np.ndarray, int] | None:
    """The predicted body just below the case's labelled L5: ``(working label map, its label)``, or ``None``.

    Taken only when the case's lowest labelled level is L5, no S1 is labelled, and a predicted body lies below
    the L5 mask within 1.6 body steps of it (the next body down the column), outside every manual mask.
    """
    if case.bottom_level != "L5" or np.any(case.target == S1):
        return None
    spacing = (case.slice_mm, case.pitch_mm, case.pitch_mm)
    sp = np.asarray(spacing)
    prob = predict(case.image, card)
    labels, bodies = find_bodies(prob, spacing, cfg)
    manual = case.target == BODY
    if not bodies or not manual.any():
        return None
    # the manual bodies' own centroids (by predicted instance overlap), to find L5 and the step between bodies
    on_manual = [b for b in bodies if (manual[labels == b.label]).mean() > 0.5]
    if len(on_manual) < 2:
        return None
    l5 = max(on_manual, key=lambda b: b.centroid[1])
    centres = np.array([b.centroid for b in sorted(on_manual, key=lambda b: b.centroid[1])]) * sp
    step = float(np.median(np.linalg.norm(np.diff(centres, axis=0), axis=1)))
    below = [b for b in bodies if b.centroid[1] > l5.centroid[1] and (manual[labels == b.label]).mean() < 0.1]
    if not below:
        return None
    c5 = np.asarray(l5.centroid) * sp
    dist = [float(np.linalg.norm(np.asarray(b.centroid) * sp - c5)) for b in below]
    k = int(np.argmin(dist))
    if dist[k] > 1.6 * step:
        return None
    return labels, below[k].label


def with_pseudo_s1(cases: list[TrainingCase], card: ModelCard, cfg: SegmentationConfig) -> list[TrainingCase]:
    """Every case, with an S1 pseudo-label added where :func:`pseudo_s1_body` finds one."""
    out = []
    added = 0
    for c in cases:
        found = pseudo_s1_body(c, card, cfg)
        if found is not None:
            c = add_pseudo_s1(c, *found)
            added += 1
        out.append(c)
    logger.info("S1 pseudo-labels added to %d of %d real series", added, len(cases))
    return out
