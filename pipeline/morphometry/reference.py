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
    predicted_mm: float = 0.0  # posterior height predicted from the normal neighbours (own Hp when ``own``)


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
            f"interpolated between the posterior heights of the nearest normal bodies {body_name(by_index[a])} and "
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
            # Never taller than the nearest normal body: bodies shrink cranially from L3 and L4-L5 are lower
            # than L3, so a growth trend is not extrapolated (it would invent height loss at the column's ends).
            ref = hp[near] * min(1.0, math.exp(slope * (p - pos[near])))
            names = ", ".join(body_name(by_index[j]) for j in used)
            return Reference(
                ref,
                f"extrapolated from the posterior height of the nearest normal body {body_name(by_index[near])} "
                f"with the level trend of {names} ({100.0 * math.expm1(slope):+.1f} % per level)",
                tuple(by_index[j].seg.label for j in used),
                False,
            )
        return Reference(
            hp[near],
            f"posterior height of the only nearby normal body {body_name(by_index[near])} (no level scaling)",
            (by_index[near].seg.label,),
            False,
        )
    return Reference(
        b.heights.posterior_mm,
        f"own posterior height: no normal body within {cfg.max_reference_gap_levels} levels "
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


def references(bodies: list[Body], cfg: MorphometryConfig) -> tuple[dict[int, Reference], set[int]]:
    """Expected height of every body and the final set of normal bodies (indices)."""
    by_index = {b.index: b for b in bodies}
    pos = column_positions(bodies)
    normal = {b.index for b in bodies if own_ratios_normal(b, cfg)}
    mild = 1.0 - cfg.genant_mild_pct / 100.0
    while True:
        worst, worst_ratio = None, math.inf
        for j in normal:
            r = reference_from(by_index[j], normal, by_index, pos, cfg)
            if r.own:
                continue
            h = by_index[j].heights
            ratio = min(min_height(h) / r.height_mm / mild, h.posterior_mm / r.height_mm / cfg.crush_ratio_max)
            if ratio < 1.0 and ratio < worst_ratio:
                worst, worst_ratio = j, ratio
        if worst is None:
            break
        normal.discard(worst)
    refs = {}
    for b in bodies:
        r = reference_from(b, normal, by_index, pos, cfg)
        hp = b.heights.posterior_mm
        if r.own:
            r = replace(r, predicted_mm=hp)
        elif cfg.reference_at_least_own_hp and hp > r.height_mm:
            # An intact posterior wall taller than the neighbours predict: the body was at least that tall.
            r = Reference(
                hp,
                f"own posterior height, taller than the {r.height_mm:.1f} mm {r.method[0].lower()}{r.method[1:]}",
                r.labels,
                False,
                r.height_mm,
            )
        else:
            r = replace(r, predicted_mm=r.height_mm)
        refs[b.index] = r
    return refs, normal


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
