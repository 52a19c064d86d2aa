"""Level names for the segmented bodies: sacrum anchor, user anchors, transitional anatomy.

Automatic labelling anchors at the sacrum and counts up. S1 is recognised by two properties of the
lumbosacral junction that hold on every sequence:

- the column turns: the sacrum is tilted backwards, so the canal direction at S1 differs from the
  mid-lumbar direction by ``sacrum_min_turn_deg`` or more (lumbar lordosis ends at the lumbosacral junction
  and the sacral kyphosis begins), while L5 is still close to the lumbar direction;
- below S1 the fused sacral segments shrink: S2 is clearly shallower (antero-posterior) than S1, whereas S1 is
  as deep as L5.

Each candidate body gets a score from these two cues; the best one is S1 if its score is positive. The margin
to the runner-up sets the confidence. Without any candidate (thoracic or upper lumbar field of view, or the
column cut by the image edge before it turns) the sacrum is "not found": levels stay unknown with a warning,
unless the user gives an anchor (:func:`parse_anchor`), which always wins.

Transitional anatomy is flagged, never silently resolved: a mobile-looking disc space below S1 (lumbarised S1)
or a rudimentary one above it (sacralised L5) lowers the confidence and adds a warning.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import numpy as np

from pipeline.levels import Level
from pipeline.segment.config import SegmentationConfig

logger = logging.getLogger(__name__)

_ANCHOR_RE = re.compile(r"^\s*([A-Za-z]\d{1,2})\s*=\s*(.+?)\s*$")


@dataclass(frozen=True)
class Anchor:
    """A user statement fixing the level count.

    Attributes
    ----------
    level : Level
        The level of the designated body.
    position : str or int or float
        ``"lowest"`` (the most caudal body found), an ``int`` n >= 1 (the n-th body from the top), or a ``float``
        LPS z coordinate in mm (the body whose centroid is nearest to that head-feet position).
    """

    level: Level
    position: str | int | float

    def describe(self) -> str:
        if isinstance(self.position, str):
            return f"{self.level.value}={self.position}"
        if isinstance(self.position, int):
            return f"{self.level.value}={self.position}"
        return f"{self.level.value}=z:{self.position:g}"


def parse_anchor(text: str) -> Anchor:
    """Parse a level anchor: ``"L5=lowest"``, ``"S1=lowest"``, ``"L1=3"`` (3rd body from the top),
    ``"L3=z:-120.5"`` (the body nearest to LPS z = -120.5 mm).

    Raises
    ------
    ValueError
        With the accepted forms in the message.
    """
    forms = "expected LEVEL=lowest, LEVEL=N (N-th body from the top, N >= 1) or LEVEL=z:MM, e.g. L5=lowest"
    m = _ANCHOR_RE.match(text or "")
    if not m:
        raise ValueError(f"invalid level anchor {text!r}; {forms}")
    try:
        level = Level.parse(m.group(1))
    except ValueError as exc:
        raise ValueError(f"invalid level anchor {text!r}: {exc}") from None
    pos = m.group(2).strip().lower()
    if pos == "lowest":
        return Anchor(level, "lowest")
    if pos.startswith("z:"):
        try:
            z = float(pos[2:])
        except ValueError:
            raise ValueError(f"invalid level anchor {text!r}: {pos[2:]!r} is not a number of mm; {forms}") from None
        if not np.isfinite(z):
            raise ValueError(f"invalid level anchor {text!r}: z must be finite; {forms}")
        return Anchor(level, z)
    if pos.isdigit():
        n = int(pos)
        if n < 1:
            raise ValueError(f"invalid level anchor {text!r}: bodies are counted from 1; {forms}")
        return Anchor(level, n)
    raise ValueError(f"invalid level anchor {text!r}; {forms}")


@dataclass(frozen=True)
class BodyFacts:
    """What labelling needs to know about one body (cranial -> caudal order)."""

    angle_deg: float  # direction of the column at the body, degrees from head->feet towards posterior
    depth_mm: float  # antero-posterior depth of the mid-sagittal section
    height_mm: float
    centroid_z_mm: float  # LPS z of the centroid (head is +z)
    disc_below_mm: float | None = None  # length of the disc space below (None: no disc found below)
    disc_below_energy: float | None = None  # its integrated signal (see ColumnProfile.disc_energy_mm)
    gap_below_mm: float | None = None  # width of the non-marrow gap to the next body on the mid-sagittal slab
    cut_by_fov: bool = False  # the body reaches the lower edge of the image (what lies below is not seen)
    bone_continues_below: bool = False  # marrow continues below the body's contour without any disc space


@dataclass(frozen=True)
class Labelling:
    levels: tuple[Level | None, ...]
    confidence: tuple[float, ...]
    sacrum_index: int | None
    method: str
    warnings: tuple[str, ...]


def _levels_from(anchor_index: int, anchor_level: Level, n: int) -> list[Level | None]:
    return [anchor_level.offset(i - anchor_index) for i in range(n)]


def sacrum_scores(facts: list[BodyFacts], cfg: SegmentationConfig) -> np.ndarray:
    """Score of "body j is S1" for every body (``-inf`` where impossible); see the module docstring.

    Three cues, each clipped to [-1, 1]: the body is tilted backwards like the sacrum (posterior wall at least
    ``sacrum_min_tilt_deg`` from the patient's head-feet axis, or ``sacrum_min_turn_deg`` more than the
    mid-lumbar bodies two to four levels up); the junction above it is a mobile disc (gap
    between the contours at least ``mobile_gap_ratio`` of the median junction above); the junction below it is
    fused (at most ``fused_gap_ratio`` of that median), or it is the last body found.
    """
    n = len(facts)
    scores = np.full(n, -np.inf)
    for j in range(2, n):
        above = [f.gap_below_mm for f in facts[max(0, j - 6) : j - 1] if f.gap_below_mm is not None]
        # reference: an upper quartile of the junctions above (a spurious split inside a body has no gap and
        # must not make every real junction look mobile)
        ref = max(float(np.percentile(above, 75)), cfg.min_reference_gap_mm) if above else None
        tilt = facts[j].angle_deg
        s_tilt = float(np.clip((tilt - cfg.sacrum_min_tilt_deg) / cfg.sacrum_tilt_scale_deg, -1, 1))
        ref_angles = [f.angle_deg for f in facts[max(0, j - 4) : j - 1]]
        if len(ref_angles) >= 2:  # relative to the mid-lumbar bodies: robust to how the patient lies
            turn = tilt - float(np.median(ref_angles))
            s_turn = float(np.clip((turn - cfg.sacrum_min_turn_deg) / cfg.sacrum_tilt_scale_deg, -1, 1))
            s_tilt = max(s_tilt, s_turn)
        g_above = facts[j - 1].gap_below_mm
        g_below = facts[j].gap_below_mm
        if ref is None or g_above is None:
            s_mobile = 0.0
        else:
            s_mobile = float(np.clip((g_above / ref - cfg.mobile_gap_ratio) / 0.3, -1, 1))
        if facts[j].bone_continues_below:
            s_fused = 1.0  # bone continues below without a disc space: fused (sacrum)
        elif j == n - 1 or g_below is None or ref is None:
            # nothing seen below: no evidence of fusion; neutral when the image simply ends there
            s_fused = 0.0 if facts[j].cut_by_fov else cfg.sacrum_last_body_fused
        else:
            s_fused = float(np.clip((cfg.fused_gap_ratio - g_below / ref) / 0.2, -1, 1))
        scores[j] = s_tilt + s_mobile + s_fused
    return scores


def label_bodies(facts: list[BodyFacts], cfg: SegmentationConfig, anchor: Anchor | None = None) -> Labelling:
    """Assign levels (cranial -> caudal ``facts``); see the module docstring.

    Returns
    -------
    Labelling
        ``sacrum_index`` is the index of the body labelled S1 (it is then the last one kept by the caller),
        or ``None``.
    """
    n = len(facts)
    warnings: list[str] = []
    if n == 0:
        return Labelling((), (), None, "no bodies", ("no vertebral bodies found",))
    scores = sacrum_scores(facts, cfg)
    # S1 is the first (most cranial) body that looks sacral: the segments below it (S2, S3, coccyx, pelvic
    # structures) can look sacral too, but they never have the mobile disc above them
    auto_s1: int | None = None
    auto_conf = 0.0
    clear = [j for j in range(n) if scores[j] >= cfg.sacrum_clear_score]
    if clear:
        auto_s1 = clear[0]
    elif np.isfinite(scores).any() and float(np.max(scores)) >= cfg.sacrum_min_score:
        auto_s1 = int(np.argmax(scores))
    if auto_s1 is not None:
        others = [float(scores[j]) for j in range(max(0, auto_s1 - 3), auto_s1) if np.isfinite(scores[j])]
        margin = float(scores[auto_s1]) - (max(others) if others else -1.0)
        auto_conf = float(np.clip(0.35 + 0.15 * scores[auto_s1] + 0.1 * margin, 0.3, 0.95))

    if anchor is not None:
        idx, why = _anchor_index(anchor, facts)
        if idx is not None:
            levels = _levels_from(idx, anchor.level, n)
            s1 = next((i for i, lv in enumerate(levels) if lv is Level.S1), None)
            if auto_s1 is not None and s1 is not None and auto_s1 != s1:
                warnings.append(
                    f"user anchor {anchor.describe()} puts S1 on body {s1 + 1} from the top; the image suggests "
                    f"body {auto_s1 + 1}. Using the user anchor."
                )
            conf = tuple(0.99 if lv is not None else 0.0 for lv in levels)
            return Labelling(tuple(levels), conf, s1, f"user anchor {anchor.describe()}", tuple(warnings))
        warnings.append(f"user anchor {anchor.describe()} could not be applied ({why}); labelled automatically")

    if auto_s1 is None:
        warnings.append(
            "sacrum not identified in the field of view: vertebral levels are not assigned (give an anchor such "
            "as --anchor L5=lowest to name them)"
        )
        return Labelling(tuple([None] * n), tuple([0.0] * n), None, "no anchor", tuple(warnings))

    conf_s1 = auto_conf
    # transitional anatomy: judged on the disc spaces next to S1 against the lumbar ones above (integrated disc
    # signal: thickness x contrast, see ColumnProfile.disc_energy_mm)
    lumbar = [f.disc_below_energy for f in facts[max(0, auto_s1 - 5) : auto_s1 - 1] if f.disc_below_energy]
    if lumbar:
        ref = float(np.median(lumbar))
        below = facts[auto_s1].disc_below_energy
        above = facts[auto_s1 - 1].disc_below_energy
        if below is not None and below >= cfg.lumbarised_disc_ratio * ref:
            warnings.append(
                "possible transitional anatomy (lumbarised S1): the disc space below the body labelled S1 looks "
                f"mobile ({below / ref:.0%} of the median lumbar disc signal); check the level count"
            )
            conf_s1 *= 0.7
        if above is not None and above <= cfg.sacralised_disc_ratio * ref:
            warnings.append(
                "possible transitional anatomy (sacralised L5): the L5/S1 disc space looks rudimentary "
                f"({above / ref:.0%} of the median lumbar disc signal); check the level count"
            )
            conf_s1 *= 0.7
    if conf_s1 < 0.6:
        warnings.append(f"sacrum identification is uncertain (confidence {conf_s1:.2f}); check the level count")
    levels = _levels_from(auto_s1, Level.S1, n)
    confidence = tuple(
        float(conf_s1 * (0.99 ** abs(i - auto_s1))) if lv is not None else 0.0 for i, lv in enumerate(levels)
    )
    return Labelling(tuple(levels), confidence, auto_s1, "sacrum anchor", tuple(warnings))


def _anchor_index(anchor: Anchor, facts: list[BodyFacts]) -> tuple[int | None, str]:
    n = len(facts)
    if anchor.position == "lowest":
        return n - 1, ""
    if isinstance(anchor.position, int):
        if anchor.position > n:
            return None, f"only {n} bodies were found"
        return anchor.position - 1, ""
    z = float(anchor.position)
    dz = np.array([abs(f.centroid_z_mm - z) for f in facts])
    i = int(np.argmin(dz))
    heights = [f.height_mm for f in facts if f.height_mm > 0]
    limit = max(heights) if heights else 30.0
    if dz[i] > limit:
        return None, f"no body centroid within {limit:.0f} mm of z = {z:g} mm"
    return i, ""
