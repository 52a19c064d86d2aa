"""Level names for the segmented bodies: sacrum anchor, user anchors, transitional anatomy.

Automatic labelling anchors at the sacrum and counts up. A wrong level name is the worst error this product can
make (the wrong level gets treated), so when the evidence is not clear the levels are left unnamed ("levels
unknown" with a warning) rather than guessed. S1 is recognised by the anatomy of the lumbosacral junction
(:func:`sacrum_scores`, three cues each in [-1, 1]):

- the sacrum is tilted backwards: its posterior wall is ``sacrum_min_tilt_deg`` from the head-feet axis, or turns
  ``sacrum_min_turn_deg`` from the mid-lumbar direction (lumbar lordosis ends at the junction);
- above S1 is the last mobile disc: a real gap between the contours (``mobile_gap_ratio`` of the lumbar gaps);
- below S1 the sacral segments are fused (no gap, or bone continuing below the contour). A body with nothing
  seen below it lacks that evidence: it may still be taken as S1, but unless it is tilted fully like a sacrum
  its confidence is capped at ``sacrum_unconfirmed_confidence`` with a warning that it could be L5.

S1 is the first clearly sacral body (S2 and lower look sacral too but sit below a fused junction), else the best
one if it reaches ``sacrum_min_score``. If an adjacent body, whose choice would shift every level by one, scores
within ``sacrum_min_margin`` of it, the sacrum is ambiguous and no level is named. The count up from S1 stops
where it cannot be trusted: at a gap as long as a missing body, or at a body as tall as two merged ones; the
bodies above stay unnamed. Without any candidate (thoracic or upper lumbar field of view, or the column cut by
the image edge before it turns) the sacrum is "not found" and levels stay unknown with a warning. A user anchor
(:func:`parse_anchor`) always wins.

Transitional anatomy is flagged, never silently resolved: a mobile-looking disc space below S1 (lumbarised S1)
or a rudimentary one above it (sacralised L5) lowers the confidence and adds a warning.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import numpy as np

from pipeline.errors import ConfigError
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


def parse_anchor_option(text: str | None, where: str) -> Anchor | None:
    """:func:`parse_anchor` for a user-supplied option: ``None`` when no anchor was given; an invalid one raises
    :class:`~pipeline.errors.ConfigError` prefixed with ``where`` (the option or field that held it)."""
    if not text:
        return None
    try:
        return parse_anchor(text)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None


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

    A body tilted more than ``sacrum_max_tilt_deg`` is no candidate (no sacrum lies that flat: its wall was
    mismeasured), nor one with more than ``sacrum_max_mobile_below`` mobile-looking junctions below it (the
    mobile column goes on; one is allowed for a lumbarised S1, flagged later). A segment below that is not a
    plausible sacral continuation (see :func:`_sacral_below`) is
    no evidence of fusion: the body is scored as if nothing was seen below it.
    """
    n = len(facts)
    scores = np.full(n, -np.inf)
    for j in range(2, n):
        ref = _reference_gap_mm(facts, j, cfg)
        if abs(facts[j].angle_deg) > cfg.sacrum_max_tilt_deg or _mobile_below(facts, j, ref, cfg):
            continue
        s_tilt = _tilt_score(facts, j, cfg)
        g_above = facts[j - 1].gap_below_mm
        g_below = facts[j].gap_below_mm
        if ref is None or g_above is None:
            s_mobile = 0.0
        else:
            s_mobile = float(np.clip((g_above / ref - cfg.mobile_gap_ratio) / 0.3, -1, 1))
        if facts[j].bone_continues_below:
            s_fused = 1.0  # bone continues below without a disc space: fused (sacrum)
        elif j == n - 1 or g_below is None or ref is None or not _sacral_below(facts, j, cfg):
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
    auto_s1, auto_conf, why_not = _pick_sacrum(scores, facts, cfg)

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
            why_not
            or "sacrum not identified in the field of view: vertebral levels are not assigned (give an anchor "
            "such as --anchor L5=lowest to name them)"
        )
        return _no_levels(n, warnings)

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
    s1_facts = facts[auto_s1]
    med = _median_height_mm(facts, auto_s1)
    if med > 0 and 0 < s1_facts.height_mm < cfg.sacrum_min_height_ratio * med:
        # S1 is as tall as the lumbar bodies; a short 'sacrum' is a partly segmented or partly seen body (often L5)
        warnings.append(
            f"the body taken for S1 is only {s1_facts.height_mm:.0f} mm tall ({s1_facts.height_mm / med:.0%} of the "
            "median body above it): it may be a partly seen L5, so vertebral levels are not assigned (give an "
            "anchor such as --anchor L5=lowest to name them)"
        )
        return _no_levels(n, warnings)
    unconfirmed = auto_s1 == n - 1 or not _sacral_below(facts, auto_s1, cfg)
    if unconfirmed and not s1_facts.bone_continues_below and _tilt_score(facts, auto_s1, cfg) < 1.0:
        # nothing below it was seen (image edge or no segment found) and it is not tilted beyond a lordotic L5:
        # the fused sacral segments that tell S1 from L5 are missing, so the body could be L5
        warnings.append(
            "no fused sacral segment was found below the body labelled S1: it could be L5; check the level count"
        )
        conf_s1 = min(conf_s1, cfg.sacrum_unconfirmed_confidence)
    if conf_s1 < 0.6:
        warnings.append(f"sacrum identification is uncertain (confidence {conf_s1:.2f}); check the level count")
    levels = _levels_from(auto_s1, Level.S1, n)
    top = _count_reach(facts, auto_s1, cfg)
    if top > 0:
        warnings.append(
            f"the level count from the sacrum stops at body {top + 1} from the top "
            f"({_break_reason(facts, top - 1, cfg, _median_height_mm(facts, auto_s1))}): "
            f"the {top} bodies above it are left unnamed (give an anchor such as --anchor T12=N to name them)"
        )
        levels = [None if i < top else lv for i, lv in enumerate(levels)]
    confidence = tuple(
        float(conf_s1 * (0.99 ** abs(i - auto_s1))) if lv is not None else 0.0 for i, lv in enumerate(levels)
    )
    return Labelling(tuple(levels), confidence, auto_s1, "sacrum anchor", tuple(warnings))


def _no_levels(n: int, warnings: list[str]) -> Labelling:
    """No level names for the ``n`` bodies (no trustworthy anchor); ``warnings`` say why."""
    return Labelling(tuple([None] * n), tuple([0.0] * n), None, "no anchor", tuple(warnings))


def _tilt_score(facts: list[BodyFacts], j: int, cfg: SegmentationConfig) -> float:
    """In [-1, 1]: body ``j`` is tilted backwards like the sacrum, from the patient's head-feet axis or (robust to
    how the patient lies) relative to the mid-lumbar bodies two to four levels up."""
    tilt = facts[j].angle_deg
    s_tilt = float(np.clip((tilt - cfg.sacrum_min_tilt_deg) / cfg.sacrum_tilt_scale_deg, -1, 1))
    ref_angles = [f.angle_deg for f in facts[max(0, j - 4) : j - 1]]
    if len(ref_angles) >= 2:
        turn = tilt - float(np.median(ref_angles))
        s_turn = float(np.clip((turn - cfg.sacrum_min_turn_deg) / cfg.sacrum_tilt_scale_deg, -1, 1))
        s_tilt = max(s_tilt, s_turn)
    return s_tilt


def _mobile_below(facts: list[BodyFacts], j: int, ref: float | None, cfg: SegmentationConfig) -> bool:
    """More than ``sacrum_max_mobile_below`` junctions below body ``j`` have a mobile disc's gap between two bodies
    at least ``ordinary_body_height_ratio`` of the median height."""
    if ref is None:
        return False
    # only between bodies of ordinary size: pelvic structures and coccygeal segments below the sacrum are small
    tall = cfg.ordinary_body_height_ratio * float(np.median([f.height_mm for f in facts]))
    mobile = [
        a.gap_below_mm >= cfg.mobile_gap_ratio * ref
        for a, b in zip(facts[j:-1], facts[j + 1 :], strict=True)
        if a.gap_below_mm is not None and min(a.height_mm, b.height_mm) >= tall
    ]
    return sum(mobile) > cfg.sacrum_max_mobile_below


def _sacral_below(facts: list[BodyFacts], j: int, cfg: SegmentationConfig) -> bool:
    """The segment below body ``j`` could be sacral bone: its wall is within ``sacrum_max_tilt_deg`` and not
    turned forwards by ``sacrum_min_turn_deg`` or more from the mid-lumbar direction (the sacrum continues
    backwards; a segment leaning forwards that steeply is a failed segmentation, not S2)."""
    if j + 1 >= len(facts):
        return False
    below = facts[j + 1].angle_deg
    lumbar = [f.angle_deg for f in facts[max(0, j - 4) : j - 1]]
    ref = float(np.median(lumbar)) if lumbar else 0.0
    return abs(below) <= cfg.sacrum_max_tilt_deg and below - ref > -cfg.sacrum_min_turn_deg


def _reference_gap_mm(facts: list[BodyFacts], j: int, cfg: SegmentationConfig) -> float | None:
    """Typical mobile-disc gap (mm) above body ``j``: an upper quartile of the junction gaps two to six levels up
    (a spurious split inside a body has no gap and must not make every real junction look mobile)."""
    above = [f.gap_below_mm for f in facts[max(0, j - 6) : j - 1] if f.gap_below_mm is not None]
    return max(float(np.percentile(above, 75)), cfg.min_reference_gap_mm) if above else None


def _fused_below(facts: list[BodyFacts], j: int, cfg: SegmentationConfig) -> bool:
    """The junction below body ``j`` looks fused (no mobile disc): bone continues, or the gap to the next body is
    at most ``fused_gap_ratio`` of the reference disc gap."""
    if facts[j].bone_continues_below:
        return True
    g, ref = facts[j].gap_below_mm, _reference_gap_mm(facts, j, cfg)
    return g is not None and ref is not None and g <= cfg.fused_gap_ratio * ref


def _pick_sacrum(scores: np.ndarray, facts: list[BodyFacts], cfg: SegmentationConfig) -> tuple[int | None, float, str]:
    """The body taken as S1, its confidence, and a warning when the sacrum is refused as ambiguous.

    S1 is the first (most cranial) body that looks clearly sacral (``sacrum_clear_score``): the segments below it
    (S2, S3, coccyx) can look sacral too, but they never have the mobile disc above them; failing that, the
    best-scoring body if it reaches ``sacrum_min_score``. An adjacent body that scores within
    ``sacrum_min_margin`` of it is a rival (choosing wrongly shifts every level by one), except the body below
    when the junction between them is fused (that body is then S2): with a rival the sacrum is NOT identified,
    because a wrong level name is worse than none.
    """
    n = len(facts)
    finite = np.isfinite(scores)
    clear = [j for j in range(n) if scores[j] >= cfg.sacrum_clear_score]
    if clear:
        best = clear[0]
    elif finite.any() and float(np.max(scores)) >= cfg.sacrum_min_score:
        best = int(np.argmax(scores))
    else:
        return None, 0.0, ""
    floor = float(scores[best]) - cfg.sacrum_min_margin
    rivals = [j for j in (best - 1, best + 1) if 0 <= j < n and finite[j] and scores[j] >= floor]
    rivals = [j for j in rivals if j < best or not _fused_below(facts, best, cfg)]
    if rivals:
        r = rivals[0]
        why = (
            f"sacrum ambiguous: bodies {best + 1} and {r + 1} from the top look alike as S1 (scores "
            f"{scores[best]:.1f} and {scores[r]:.1f}); vertebral levels are not assigned (give an anchor such as "
            "--anchor L5=N to name them)"
        )
        return None, 0.0, why
    others = [float(scores[j]) for j in range(max(0, best - 3), best) if finite[j]]
    margin = float(scores[best]) - (max(others) if others else -1.0)
    conf = float(np.clip(0.35 + 0.15 * scores[best] + 0.1 * margin, 0.3, 0.95))
    return best, conf, ""


def _count_reach(facts: list[BodyFacts], s1: int, cfg: SegmentationConfig) -> int:
    """Index of the most cranial body that counting up from S1 (body ``s1``) can still name.

    The count cannot cross a junction whose gap is a missing body (a body not segmented, e.g. a vertebra plana:
    at least ``count_missing_gap_ratio`` of the median body height and ``count_missing_disc_ratio`` times the
    typical disc gap above, as the lumbosacral gap, measured obliquely, can be long) nor a body at least
    ``count_merged_height_ratio`` times the median height (two bodies merged into one): every body above it
    would be named one level off.
    """
    med = _median_height_mm(facts, s1)
    for i in range(s1 - 1, -1, -1):
        if _break_reason(facts, i, cfg, med):
            return i + 1
    return 0


def _median_height_mm(facts: list[BodyFacts], s1: int) -> float:
    above = [f.height_mm for f in facts[:s1] if f.height_mm > 0]
    return float(np.median(above)) if above else 0.0


def _break_reason(facts: list[BodyFacts], i: int, cfg: SegmentationConfig, med: float | None = None) -> str:
    """Why the level count cannot go from body ``i + 1`` up to body ``i`` ("" when it can)."""
    if med is None:
        med = _median_height_mm(facts, len(facts))
    if med <= 0:
        return ""
    g = facts[i].gap_below_mm
    ref = _reference_gap_mm(facts, i + 1, cfg)
    if (
        g is not None
        and g >= cfg.count_missing_gap_ratio * med
        and (ref is None or g >= cfg.count_missing_disc_ratio * ref)
    ):
        return f"a {g:.0f} mm gap below body {i + 1}, as long as a missing body"
    if facts[i].height_mm >= cfg.count_merged_height_ratio * med:
        return f"body {i + 1} is {facts[i].height_mm:.0f} mm tall, as two bodies merged"
    return ""


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
