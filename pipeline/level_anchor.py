"""What a user's ``--anchor`` means next to the detected sacrum, so that no anchor silently contradicts it.

The anchor forms (parsed by :func:`pipeline.segment.parse_anchor`):

- ``LEVEL=lowest``: the lowest *lumbar-type* body is LEVEL. When the segmentation detected the sacrum, that is
  the body just above the detected S1 (so ``L5=lowest`` names the levels exactly as the automatic count does
  on a normal spine, and ``S1=lowest`` names the detected S1); when no sacrum was detected, it is the lowest
  body found.
- ``LEVEL=N``: the N-th body from the top is LEVEL.
- ``LEVEL=z:MM``: the body whose centroid is nearest to LPS z = MM is LEVEL.

Whatever the form, when the anchored levels disagree with a detected sacrum (the body detected as S1 gets
another name), the anchor is still used, but a warning says by how many levels the count differs, so that the
report, the HTML and the terminal all show it. This module only compares two
:class:`~pipeline.model.SegmentationResult`\\ s (without and with the anchor); chaining is in :mod:`pipeline.run`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.levels import Level
from pipeline.model import SegmentationResult, VertebraSeg
from pipeline.segment import Anchor

# Two segmentations of the same image find the same body when their centroids are this close (mm).
_SAME_BODY_MM = 10.0


@dataclass(frozen=True)
class ResolvedAnchor:
    anchor: Anchor  # what the segmentation is given
    note: str  # how ``lowest`` was read ("" when the anchor is passed on unchanged)


def _detected_s1(auto: SegmentationResult) -> tuple[int, VertebraSeg] | None:
    """(1-based position from the top, body) of the S1 the automatic labelling detected, or None."""
    if not auto.sacrum_found:
        return None
    for i, v in enumerate(auto.vertebrae):
        if v.is_sacrum or v.level is Level.S1:
            return i + 1, v
    return None


def resolve_anchor(anchor: Anchor, auto: SegmentationResult) -> ResolvedAnchor:
    """Turn ``LEVEL=lowest`` into the body it means (see the module docstring); other forms pass unchanged.

    Parameters
    ----------
    anchor : Anchor
        As given by the user.
    auto : SegmentationResult
        The segmentation of the same image without an anchor (automatic labelling).
    """
    if anchor.position != "lowest":
        return ResolvedAnchor(anchor, "")
    s1 = _detected_s1(auto)
    if s1 is None:
        return ResolvedAnchor(anchor, "")
    pos, _body = s1
    if anchor.level is Level.S1:
        return ResolvedAnchor(Anchor(anchor.level, pos), f"given as {anchor.describe()}: the detected sacrum")
    if pos < 2:
        return ResolvedAnchor(anchor, "")  # nothing above the detected S1: keep the literal meaning
    return ResolvedAnchor(
        Anchor(anchor.level, pos - 1),
        f"given as {anchor.describe()}: the lowest body above the detected sacrum",
    )


def _match(body: VertebraSeg, candidates: tuple[VertebraSeg, ...]) -> VertebraSeg | None:
    if not candidates:
        return None
    c = np.asarray(body.centroid_lps_mm)
    dist = [float(np.linalg.norm(np.asarray(v.centroid_lps_mm) - c)) for v in candidates]
    i = int(np.argmin(dist))
    return candidates[i] if dist[i] <= _SAME_BODY_MM else None


def level_shift(auto: SegmentationResult, anchored: SegmentationResult) -> int | None:
    """Levels by which the anchored names differ from the automatic ones (``+1``: each body named one level
    lower down the spine, e.g. the automatic L1 called L2), over the bodies both name; None when none is
    named by both."""
    for v in auto.vertebrae:
        if v.level is None:
            continue
        other = _match(v, anchored.vertebrae)
        if other is not None and other.level is not None:
            return other.level.ordinal - v.level.ordinal
    return None


def anchor_warning(given: str, auto: SegmentationResult, anchored: SegmentationResult) -> str | None:
    """A warning when the anchored levels contradict the detected sacrum, else None.

    ``given`` is the anchor as the user wrote it (for the message).
    """
    s1 = _detected_s1(auto)
    if s1 is None:
        return None
    pos, body = s1
    shift = level_shift(auto, anchored)
    other = _match(body, anchored.vertebrae)
    if shift == 0 and other is not None and other.level is Level.S1:
        return None
    named = other.level.value if other is not None and other.level is not None else "no level"
    if shift:
        by = f"every level differs by {abs(shift)} from the automatic count (the automatic {_example(auto, anchored)})"
    else:
        by = "the levels differ from the automatic count"
    return (
        f"level anchor {given} disagrees with the detected sacrum: the body detected as S1 (body {pos} from the "
        f"top) is named {named} by the anchor, so {by}. The anchor was used; confirm the level count on the "
        "images before any intervention"
    )


def _example(auto: SegmentationResult, anchored: SegmentationResult) -> str:
    for v in auto.vertebrae:
        if v.level is None or v.is_sacrum:
            continue
        other = _match(v, anchored.vertebrae)
        if other is not None and other.level is not None:
            return f"{v.level.value} is called {other.level.value}"
    return "names are shifted"


__all__ = ["ResolvedAnchor", "anchor_warning", "level_shift", "resolve_anchor"]
