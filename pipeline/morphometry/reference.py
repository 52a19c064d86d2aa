"""Expected (reference) height from normal neighbours, height loss, Genant grade and deformity pattern."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from pipeline.levels import Level
from pipeline.model import Heights, Morphology
from pipeline.morphometry.config import MorphometryConfig
from pipeline.morphometry.section import Body


@dataclass(frozen=True)
class Reference:
    height_mm: float  # expected height of the body before any collapse
    method: str
    labels: tuple[int, ...]  # normal bodies used
    own: bool  # fallback to the body's own Hp (no normal neighbour)
    predicted_mm: float = 0.0  # posterior height predicted from the reference neighbours (own Hp when ``own``)
    one_sided: bool = False  # predicted from reference bodies on one side only (extrapolated)


def column_positions(bodies: list[Body]) -> dict[int, float]:
    """Position along the column: level ordinal when every body has a level, else its order in the result."""
    if bodies and all(b.seg.level is not None for b in bodies):
        return {b.index: float(b.seg.level.ordinal) for b in bodies}  # type: ignore[union-attr]
    return {b.index: float(b.index) for b in bodies}


def body_name(b: Body) -> str:
    return b.seg.level.value if isinstance(b.seg.level, Level) else f"label {b.seg.label}"


def min_height(h: Heights) -> float:
    return min(h.anterior_mm, h.middle_mm, h.posterior_mm)


def reference_from(
    b: Body, normal: set[int], by_index: dict[int, Body], pos: dict[int, float], cfg: MorphometryConfig
) -> Reference:
    p = pos[b.index]
    others = [j for j in normal if j != b.index and abs(pos[j] - p) <= cfg.max_reference_gap_levels]
    above = sorted((j for j in others if pos[j] < p), key=lambda j: p - pos[j])
    below = sorted((j for j in others if pos[j] > p), key=lambda j: pos[j] - p)
    hp = {j: by_index[j].heights.posterior_mm for j in others}
    if above and below:
        a, c = above[0], below[0]
        w = (p - pos[a]) / (pos[c] - pos[a])
        ref = (1.0 - w) * hp[a] + w * hp[c]
        return Reference(
            ref,
            f"interpolated between the posterior heights of the nearest reference bodies {body_name(by_index[a])} and "
            f"{body_name(by_index[c])}",
            (by_index[a].seg.label, by_index[c].seg.label),
            False,
        )
    side = above or below
    if side:
        near = side[0]
        # The level trend may use normal bodies further along the same side than the gap allows.
        upward = bool(above)
        same_side = (j for j in normal if j != b.index and (pos[j] < p if upward else pos[j] > p))
        far = sorted(same_side, key=lambda j: abs(pos[j] - p))
        used = far[: cfg.trend_neighbours]
        hp.update({j: by_index[j].heights.posterior_mm for j in used})
        if len(used) >= 2:
            x = np.array([pos[j] for j in used])
            y = np.log([hp[j] for j in used])
            slope = float(np.polyfit(x, y, 1)[0])
            bound = math.log1p(cfg.max_growth_per_level_pct / 100.0)
            slope = min(bound, max(-bound, slope))
            # Never taller than the nearest reference body: bodies shrink cranially from L3 and L4-L5 are lower
            # than L3, so a growth trend is not extrapolated (it would invent height loss at the column's ends).
            ref = hp[near] * min(1.0, math.exp(slope * (p - pos[near])))
            names = ", ".join(body_name(by_index[j]) for j in used)
            return Reference(
                ref,
                f"extrapolated from the posterior height of the nearest reference body {body_name(by_index[near])} "
                f"with the level trend of {names} ({100.0 * math.expm1(slope):+.1f} % per level)",
                tuple(by_index[j].seg.label for j in used),
                False,
                one_sided=True,
            )
        return Reference(
            hp[near],
            f"posterior height of the only nearby reference body {body_name(by_index[near])} (no level scaling)",
            (by_index[near].seg.label,),
            False,
            one_sided=True,
        )
    return Reference(
        b.heights.posterior_mm,
        f"own posterior height: no reference body within {cfg.max_reference_gap_levels} levels "
        "(uniform collapse cannot be detected)",
        (),
        True,
    )


def own_ratios_normal(b: Body, cfg: MorphometryConfig) -> bool:
    h = b.heights
    return (
        h.anterior_mm / h.posterior_mm >= cfg.wedge_ratio_max
        and h.middle_mm / h.posterior_mm >= cfg.biconcave_ratio_max
    )


def references(
    bodies: list[Body], cfg: MorphometryConfig, exclude: set[int] | None = None
) -> tuple[dict[int, Reference], set[int], set[int]]:
    """Expected height of every body, the bodies whose posterior heights serve as references and the normal ones.

    A body's posterior height is a reference for its neighbours unless it is crushed: a wedge or a biconcave
    body (Ha or Hm low against its own Hp) keeps its posterior wall, so its Hp still shows the height of the
    column there (Eastell 1991: the crush pattern is the one that lowers Hp against the neighbours). Starting
    from all bodies, the most deviant one leaves the set while any has Hp below ``crush_ratio_max`` of its
    prediction or, if its shape is normal, its lowest height below the grade-1 limit. Bodies in ``exclude``
    (implausible masks) are never references.

    Returns
    -------
    refs : dict
        Body index -> :class:`Reference`.
    reference_set : set of int
        Indices of the bodies whose Hp are used for their neighbours' references.
    normal : set of int
        The reference bodies whose own ratios are also normal (used for the expected canal diameter).
    """
    by_index = {b.index: b for b in bodies}
    pos = column_positions(bodies)
    shape_normal = {b.index for b in bodies if own_ratios_normal(b, cfg)}
    ref_set = {b.index for b in bodies} - (exclude or set())
    mild = 1.0 - cfg.genant_mild_pct / 100.0
    while True:
        worst, worst_ratio = None, math.inf
        for j in ref_set:
            r = reference_from(by_index[j], ref_set, by_index, pos, cfg)
            if r.own:
                continue
            h = by_index[j].heights
            ratio = h.posterior_mm / r.height_mm / cfg.crush_ratio_max
            if j in shape_normal:
                ratio = min(ratio, min_height(h) / r.height_mm / mild)
            if ratio < 1.0 and ratio < worst_ratio:
                worst, worst_ratio = j, ratio
        if worst is None:
            break
        ref_set.discard(worst)
    refs = {}
    for b in bodies:
        r = reference_from(b, ref_set, by_index, pos, cfg)
        hp = b.heights.posterior_mm
        if r.own:
            r = replace(r, predicted_mm=hp)
        elif r.one_sided and b.index in shape_normal and hp >= cfg.crush_ratio_max * r.height_mm:
            # An extrapolated prediction is no measure of a body of normal shape unless it shows a crush: the
            # heights of the bodies at the ends of the column do not follow their neighbours' trend (L5 is lower
            # posteriorly than L4), and the prediction would invent height loss there.
            r = Reference(
                hp,
                f"own posterior height (normal shape; Hp is {100.0 * hp / r.height_mm:.0f} % of the "
                f"{r.height_mm:.1f} mm {r.method[0].lower()}{r.method[1:]}, no crush)",
                r.labels,
                False,
                r.height_mm,
                one_sided=True,
            )
        elif cfg.reference_at_least_own_hp and hp > r.height_mm:
            # An intact posterior wall taller than the neighbours predict: the body was at least that tall.
            r = Reference(
                hp,
                f"own posterior height, taller than the {r.height_mm:.1f} mm {r.method[0].lower()}{r.method[1:]}",
                r.labels,
                False,
                r.height_mm,
                one_sided=r.one_sided,
            )
        else:
            r = replace(r, predicted_mm=r.height_mm)
        refs[b.index] = r
    return refs, ref_set, ref_set & shape_normal


def genant_grade(loss_pct: float, cfg: MorphometryConfig) -> int:
    if loss_pct >= cfg.genant_severe_pct:
        return 3
    if loss_pct >= cfg.genant_moderate_pct:
        return 2
    if loss_pct >= cfg.genant_mild_pct:
        return 1
    return 0


def height_loss(h: Heights, ref_mm: float) -> float:
    return max(0.0, 100.0 * (1.0 - min_height(h) / ref_mm))


def classify(
    h: Heights, predicted_mm: float, grade: int, cfg: MorphometryConfig
) -> tuple[Morphology, dict[str, float]]:
    """Deformity pattern and the ratios behind it (``hp_ref``: Hp / the posterior height the neighbours predict)."""
    ratios = {
        "ha_hp": h.anterior_mm / h.posterior_mm,
        "hm_hp": h.middle_mm / h.posterior_mm,
        "hp_ref": h.posterior_mm / predicted_mm,
    }
    patterns = (
        (ratios["ha_hp"] / cfg.wedge_ratio_max, Morphology.WEDGE),
        (ratios["hm_hp"] / cfg.biconcave_ratio_max, Morphology.BICONCAVE),
        (ratios["hp_ref"] / cfg.crush_ratio_max, Morphology.CRUSH),
    )
    score, pattern = min(patterns, key=lambda t: t[0])
    return (pattern if (score < 1.0 or grade >= 1) else Morphology.NORMAL), ratios
