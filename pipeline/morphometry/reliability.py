"""Plausibility of a body's segmentation, judged from the morphometry's own measurements.

A wrong mask (leaking past an endplate, merged with a neighbour, cut by the field of view, traced sideways)
must give "not assessable" or a low-confidence grade with the reason, never a confident false grade; and an
over-tall mask must not become the reference height of its neighbours.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pipeline.morphometry.config import MorphometryConfig
from pipeline.morphometry.section import Body


@dataclass(frozen=True)
class Plausibility:
    """Outcome of the plausibility checks of one measured body."""

    not_assessable: str = ""  # reason the height loss cannot be graded ("" when it can)
    not_reference: bool = False  # its posterior height must not be a reference for its neighbours
    low_confidence: bool = False
    notes: tuple[str, ...] = ()


def endplate_deviation_deg(b: Body, up: np.ndarray) -> tuple[float, float]:
    """Angles (deg, >= 0) of the superior and inferior endplate lines from the perpendicular to ``up``.

    The lines join the anterior and posterior landmarks of the measured section; ``up`` is the local column
    direction (unit, plane mm).
    """
    sec = b.mid
    out = []
    for k in (2, 1):  # superior (v_superior), inferior (v_inferior)
        a = sec.chord_point(sec.chords["anterior"][0], sec.chords["anterior"][k])
        p = sec.chord_point(sec.chords["posterior"][0], sec.chords["posterior"][k])
        d = a - p
        n = float(np.linalg.norm(d))
        cos_to_up = abs(float(d @ up)) / n if n > 0 else 1.0
        out.append(math.degrees(math.asin(min(1.0, cos_to_up))))
    return out[0], out[1]


def check_body(b: Body, up: np.ndarray, spacings_mm: list[float], cfg: MorphometryConfig) -> Plausibility:
    """Plausibility checks of one measured body.

    Parameters
    ----------
    b : Body
        The measured body.
    up : ndarray, shape (2,)
        Local column direction towards the head (plane mm, unit), from the neighbours' centres (the endplate check
        is skipped for a body without a labelled neighbour).
    spacings_mm : list of float
        Distances (mm, in the sagittal plane) from the body's centre to the centres of the labelled bodies just
        above and below it (the sacrum included); empty when it has no labelled neighbour.
    cfg : MorphometryConfig
        ``min_segmentation_quality``, ``max_height_to_spacing_ratio``, ``reference_max_height_to_spacing_ratio``,
        ``max_endplate_deviation_deg``.
    """
    notes: list[str] = []
    not_ref = False
    low = False
    h = b.heights
    if spacings_mm:
        spacing = float(np.mean(spacings_mm))
        tallest = max(h.anterior_mm, h.middle_mm, h.posterior_mm)
        if tallest >= cfg.max_height_to_spacing_ratio * spacing:
            return Plausibility(
                not_assessable=(
                    f"segmentation implausible: the body is {tallest:.1f} mm tall but its centre lies only "
                    f"{spacing:.1f} mm from its neighbours' centres (ratio {tallest / spacing:.2f} >= "
                    f"{cfg.max_height_to_spacing_ratio:g}), so the mask spans a disc (leak or merged bodies)"
                ),
                not_reference=True,
                notes=("mask spans a disc",),
            )
        if h.posterior_mm > cfg.reference_max_height_to_spacing_ratio * spacing:
            not_ref = low = True  # its own heights (and its own-Hp reference) rest on the suspect mask
            notes.append(
                f"posterior height {h.posterior_mm:.1f} mm is {h.posterior_mm / spacing:.2f} of the {spacing:.1f} mm "
                f"centre spacing (> {cfg.reference_max_height_to_spacing_ratio:g}): mask may leak past an "
                "endplate, low confidence, not used as a reference"
            )
    # Without a labelled neighbour ``up`` is only the patient's superior direction: no column to compare with.
    dev_sup, dev_inf = endplate_deviation_deg(b, up) if spacings_mm else (0.0, 0.0)
    if min(dev_sup, dev_inf) > cfg.max_endplate_deviation_deg:
        return Plausibility(
            not_assessable=(
                f"segmentation implausible: both endplates are tilted from square to the column (superior "
                f"{dev_sup:.0f} deg, inferior {dev_inf:.0f} deg > {cfg.max_endplate_deviation_deg:g} deg)"
            ),
            not_reference=True,
            notes=("endplates not square to the column",),
        )
    quality = float(b.seg.quality)
    if quality < cfg.min_segmentation_quality:
        not_ref = low = True
        notes.append(
            f"segmentation quality {quality:.2f} < {cfg.min_segmentation_quality:g}: low confidence, not used as a "
            "reference"
        )
    return Plausibility(not_reference=not_ref, low_confidence=low, notes=tuple(notes))
