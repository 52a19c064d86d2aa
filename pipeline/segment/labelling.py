"""Level names for the segmented bodies: the learned S1, the count up from it, user anchors.

A wrong level name is the worst error this product can make (the wrong level gets treated), so when the
evidence is not clear the levels are left unnamed ("levels unknown" with a warning) rather than guessed.

Automatic naming anchors at S1, recognised by the network's S1 class (trained on the lumbosacral junction of
real scans and phantoms: the first sacral body, tilted, below the last mobile disc, above the fused sacrum):

- S1 is the body with the highest mean S1 share of its probability, if that reaches ``s1_min_score``; when
  S1-like bodies follow each other with no disc space between them (``fused_gap_mm``), they are one fused sacrum
  and S1 is the most cranial of them. Two separate S1-like bodies, or an ordinary body just below the S1
  candidate, make the sacrum ambiguous: no names. So do a body just above it that looks partly like S1
  (``s1_rival_score``: on scans unlike the training data the network may score S2 above a faint S1) and a body
  joined to the candidate from above with no disc space (S1 always has the L5/S1 disc above it). A
  candidate cut by the lower edge of the image may be a partly seen L5: no names either.
- The count goes up from S1 one body at a time and stops where it cannot be trusted: a centre-to-centre step
  as long as a missing body (``count_missing_gap_ratio`` x the median step) or so short that one of the two is
  a vertebra plana or a piece of a body (``count_short_step_ratio``), a disc space as long as two discs
  and a collapsed body the network missed (``count_missing_disc_ratio`` x the median disc space), or a body as
  tall as two merged ones (``count_merged_height_ratio``). The bodies above the break stay unnamed, with a warning.
- No S1 in the field of view (thoracic or upper lumbar view, or a sacrum the network does not recognise):
  levels unknown, with a warning saying how to name them (``--anchor``).

A user anchor (:func:`parse_anchor`) always wins; when it contradicts the detected S1 a warning says so.
``LEVEL=lowest`` names the most caudal body *of that kind*: for S1 the lowest body, for any other level the
lowest body that is not the detected S1 (so ``L5=lowest`` means the same with and without a visible sacrum).
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

    centre_mm: tuple[float, float, float]  # centroid in a common mm frame (working grid), for steps along the column
    centroid_z_mm: float  # LPS z of the centroid (head is +z), for z anchors
    height_mm: float
    s1_score: float  # mean S1 share of the body's probability (0..1)
    cut_below: bool = False  # the body reaches the lower edge of the image (what lies below it is not seen)
    gap_below_mm: float | None = None  # non-body length between this body and the next one down: the disc space


@dataclass(frozen=True)
class Labelling:
    levels: tuple[Level | None, ...]
    confidence: tuple[float, ...]
    sacrum_index: int | None
    method: str
    warnings: tuple[str, ...]


def _levels_from(anchor_index: int, anchor_level: Level, n: int) -> list[Level | None]:
    return [anchor_level.offset(i - anchor_index) for i in range(n)]


def label_bodies(facts: list[BodyFacts], cfg: SegmentationConfig, anchor: Anchor | None = None) -> Labelling:
    """Assign levels to ``facts`` (cranial -> caudal); see the module docstring.

    Returns
    -------
    Labelling
        ``sacrum_index``: index of the body named S1 (the caller drops anything below it), or ``None``.
    """
    n = len(facts)
    warnings: list[str] = []
    if n == 0:
        return Labelling((), (), None, "no bodies", ("no vertebral bodies found",))
    auto_s1, why_not = _find_s1(facts, cfg)

    if anchor is not None:
        idx, why = _anchor_index(anchor, facts, auto_s1)
        if idx is not None:
            levels = _levels_from(idx, anchor.level, n)
            s1 = next((i for i, lv in enumerate(levels) if lv is Level.S1), None)
            if auto_s1 is not None and s1 != auto_s1:
                implied = levels[auto_s1]
                named = implied.value if implied else "outside the count"
                warnings.append(
                    f"the level anchor {anchor.describe()} contradicts the image: the body the network recognises as "
                    f"S1 (body {auto_s1 + 1} from the top) is named {named} by the anchor. The anchor is used; check "
                    "the level count on the images"
                )
            conf = tuple(0.99 if lv is not None else 0.0 for lv in levels)
            return Labelling(tuple(levels), conf, s1, f"user anchor {anchor.describe()}", tuple(warnings))
        warnings.append(f"user anchor {anchor.describe()} could not be applied ({why}); labelled automatically")

    if auto_s1 is None:
        warnings.append(why_not)
        return _no_levels(n, warnings)
    conf_s1 = float(facts[auto_s1].s1_score)
    if conf_s1 < cfg.s1_uncertain_below:
        warnings.append(f"sacrum identification is uncertain (confidence {conf_s1:.2f}); check the level count")
    levels = _levels_from(auto_s1, Level.S1, n)
    top, reason = _count_reach(facts, auto_s1, cfg)
    if top > 0:
        warnings.append(
            f"the level count from the sacrum stops at body {top + 1} from the top ({reason}): the {top} "
            "bodies above it are left unnamed (give an anchor such as --anchor T12=N to name them)"
        )
        levels = [None if i < top else lv for i, lv in enumerate(levels)]
    confidence = tuple(
        float(conf_s1 * (0.99 ** abs(i - auto_s1))) if lv is not None else 0.0 for i, lv in enumerate(levels)
    )
    return Labelling(tuple(levels), confidence, auto_s1, "sacrum anchor", tuple(warnings))


def _no_levels(n: int, warnings: list[str]) -> Labelling:
    """No level names for the ``n`` bodies (no trustworthy anchor); ``warnings`` say why."""
    return Labelling(tuple([None] * n), tuple([0.0] * n), None, "no anchor", tuple(warnings))


_ANCHOR_HINT = "give an anchor such as --anchor L5=lowest to name them"


def _steps_mm(facts: list[BodyFacts]) -> np.ndarray:
    c = np.array([f.centre_mm for f in facts], dtype=float)
    return np.linalg.norm(np.diff(c, axis=0), axis=1) if len(facts) > 1 else np.zeros(0)


def _find_s1(facts: list[BodyFacts], cfg: SegmentationConfig) -> tuple[int | None, str]:
    """Index of the S1 body, or ``None`` with the reason."""
    scores = np.array([f.s1_score for f in facts])
    j = int(np.argmax(scores))
    if scores[j] < cfg.s1_min_score:
        return None, (
            f"sacrum (S1) not identified in the field of view: vertebral levels are not assigned ({_ANCHOR_HINT})"
        )
    if facts[j].cut_below:
        return None, (
            f"the body that looks like S1 (body {j + 1} from the top) is cut by the lower edge of the image: it may "
            f"be a partly seen L5, so vertebral levels are not assigned ({_ANCHOR_HINT})"
        )
    # the sacral segments below S1 are fused to it (no disc between): an S1-like body joined to the candidate
    # without a disc space is the same sacrum, and S1 is the most cranial body of that fused run
    while j > 0 and scores[j - 1] >= cfg.s1_min_score and _fused(facts[j - 1], cfg):
        j -= 1
    # below S1, whatever is joined to it without a disc space is sacrum, however little it looks like S1
    run_end = j
    while run_end + 1 < len(facts) and _fused(facts[run_end], cfg):
        run_end += 1
    others = [k for k in range(len(facts)) if not j <= k <= run_end and scores[k] >= cfg.s1_min_score]
    if others:
        return None, (
            f"sacrum ambiguous: bodies {j + 1} and {others[0] + 1} from the top both look like S1; vertebral levels "
            f"are not assigned ({_ANCHOR_HINT})"
        )
    # a body above that looks partly like S1 is the usual sign that the network took S2 for S1 (or L5 for S1) on
    # a scan unlike its training data: one level off everywhere, so no names
    # (the segments below S1 are sacral and may look partly like S1: only the body above counts as a rival)
    if j > 0 and scores[j - 1] >= cfg.s1_rival_score:
        return None, (
            f"sacrum ambiguous: body {j} from the top, above the body that looks like S1 (body {j + 1}), also looks "
            f"partly like S1 (score {scores[j - 1]:.2f} against {scores[j]:.2f}); vertebral levels are not "
            f"assigned ({_ANCHOR_HINT})"
        )
    # S1 always has a disc space above it (L5/S1); a body joined to the candidate without one means the candidate
    # is S2 under a poorly recognised S1, or one piece of a body
    if j > 0 and _fused(facts[j - 1], cfg):
        return None, (
            f"sacrum ambiguous: the body above the one that looks like S1 (body {j + 1} from the top) is joined to it "
            f"with no disc space between them: it may be S1 itself, with the candidate S2; vertebral levels are not "
            f"assigned ({_ANCHOR_HINT})"
        )
    steps = _steps_mm(facts)
    above = steps[: max(0, j)]
    med = float(np.median(above)) if above.size else float("nan")
    if run_end < len(facts) - 1 and np.isfinite(med):
        step = float(steps[run_end])
        if step <= cfg.below_s1_max_spacing_ratio * med:
            return None, (
                f"sacrum ambiguous: an ordinary-looking body lies {step:.0f} mm below the body that looks like S1 "
                f"(body {j + 1} from the top); vertebral levels are not assigned ({_ANCHOR_HINT})"
            )
    return j, ""


def _fused(upper: BodyFacts, cfg: SegmentationConfig) -> bool:
    """No disc space between ``upper`` and the next body down (sacral segments are fused)."""
    return upper.gap_below_mm is not None and upper.gap_below_mm <= cfg.fused_gap_mm


def _count_reach(facts: list[BodyFacts], s1: int, cfg: SegmentationConfig) -> tuple[int, str]:
    """Index of the most cranial body the count from S1 reaches, and why it stops there ("" if at the top)."""
    steps = _steps_mm(facts)[:s1]
    if steps.size == 0:
        return 0, ""
    med_step = float(np.median(steps))
    heights = np.array([f.height_mm for f in facts[:s1]])
    med_h = float(np.median(heights)) if heights.size else 0.0
    gaps = np.array([f.gap_below_mm if f.gap_below_mm is not None else np.nan for f in facts[:s1]])
    med_gap = float(np.nanmedian(gaps[:-1])) if np.isfinite(gaps[:-1]).any() else float("nan")
    for i in range(s1 - 1, -1, -1):
        if steps[i] > cfg.count_missing_gap_ratio * med_step:
            return i + 1, f"a {steps[i]:.0f} mm step above it, as long as a missing body"
        if steps[i] < cfg.count_short_step_ratio * med_step:
            return i + 1, (
                f"a {steps[i]:.0f} mm step above it, {steps[i] / med_step:.1f} times the median: a collapsed body "
                "(vertebra plana) or a piece of a body counted as a level"
            )
        # the lumbosacral disc is often the tallest: it is held to a looser limit than the discs above it
        ratio = cfg.count_missing_disc_ratio * (1.25 if i == s1 - 1 else 1.0)
        if np.isfinite(med_gap) and med_gap > 0 and np.isfinite(gaps[i]) and gaps[i] > ratio * med_gap:
            return i + 1, (
                f"a {gaps[i]:.0f} mm disc space above it, {gaps[i] / med_gap:.1f} times the median: a collapsed body "
                "may be missing there"
            )
        if med_h > 0 and facts[i].height_mm >= cfg.count_merged_height_ratio * med_h:
            return i + 1, f"the body above it is {facts[i].height_mm:.0f} mm tall, as two bodies merged"
    return 0, ""


def _anchor_index(anchor: Anchor, facts: list[BodyFacts], auto_s1: int | None) -> tuple[int | None, str]:
    n = len(facts)
    if anchor.position == "lowest":
        # anything below a detected S1 is not a vertebral body (it is dropped by the caller)
        lowest = auto_s1 if auto_s1 is not None else n - 1
        if anchor.level is not Level.S1 and auto_s1 is not None:
            if lowest == 0:
                return None, "the only body found is the sacrum"
            return lowest - 1, ""  # the lowest body that is not the detected S1
        return lowest, ""
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
