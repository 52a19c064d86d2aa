"""Opt-in anomalies of the column: spondylolisthesis, scoliosis, Modic changes and Schmorl nodes.

Each does nothing unless the spec asks for it (the opt-in fields of
:class:`~pipeline.tools.phantom.spec.PhantomSpec`); Modic bands draw from their own random stream, so a classic
phantom is unchanged. :func:`pipeline.tools.phantom.anatomy.build_anatomy` calls them; their truth is described in
:mod:`pipeline.tools.phantom.truth`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.errors import ConfigError
from pipeline.levels import Level
from pipeline.tools.phantom.body import HEIGHT_FRACTIONS, BodyDims, BodyShape, Notch
from pipeline.tools.phantom.column import Frame2D, PlacedBody, rim_world, unit
from pipeline.tools.phantom.primitives import Array, Canvas, Painter, fill
from pipeline.tools.phantom.spec import PhantomSpec
from pipeline.tools.phantom.tissues import Tissue


# --------------------------------------------------------------------------- spondylolisthesis
def apply_slips(
    spec: PhantomSpec, frames: dict[str, Frame2D], shapes: dict[str, BodyShape], chain: list[str], x0: float
) -> list[dict[str, Any]]:
    """Translate each slipping body and everything above it anteriorly along the lower body's superior rim.

    Done after the global orientation, so the rest of the column (and its random placement) is unchanged.
    Caudal slips first; returns the truth records (slip measured back from the placed frames).
    """
    order = chain + ["S1"]
    out: list[dict[str, Any]] = []
    for sl in sorted(spec.slips, key=lambda s: -s.level.ordinal):
        name = sl.level.value
        below = order[order.index(name) + 1]
        a, p = rim_world(frames[below], shapes[below].sup_rim())
        e = unit(a - p)
        for n in order[: order.index(name) + 1]:
            frames[n].centre = frames[n].centre + sl.slip_mm * e
    for sl in sorted(spec.slips, key=lambda s: s.level.ordinal):
        name = sl.level.value
        below = order[order.index(name) + 1]
        a, p = rim_world(frames[below], shapes[below].sup_rim())
        e = unit(a - p)
        _, p_up = rim_world(frames[name], shapes[name].inf_rim())
        slip = float(np.dot(p_up - p, e))
        pct = 100.0 * slip / shapes[below].D
        out.append(
            {
                "level": name,
                "over": below,
                "slip_mm": round(slip, 4),
                "slip_pct_of_depth": round(pct, 3),
                "meyerding_grade": int(min(pct // 25.0, 4.0)) + 1,
                "posterior_inferior_corner_lps_mm": [round(x0, 4), round(float(p_up[0]), 4), round(float(p_up[1]), 4)],
                "posterior_superior_corner_below_lps_mm": [round(x0, 4), round(float(p[0]), 4), round(float(p[1]), 4)],
            }
        )
    return out


# --------------------------------------------------------------------------- scoliosis, Modic, Schmorl
def scoliosis_shift(spec: PhantomSpec, names: list[str]) -> dict[str, float]:
    """Lateral shift (mm, + = patient's left) of each shifted body: cos^2 taper from the apex, 4 levels up
    and down to S1 (which, with the sacrum, stays put). Empty without scoliosis."""
    if spec.scoliosis_mm == 0.0:
        return {}
    ia = spec.scoliosis_apex.ordinal
    below = Level.S1.ordinal - ia
    out = {}
    for name in names:
        if name not in Level.__members__ or name == "S1":
            continue
        i = Level(name).ordinal
        t = (ia - i) / 4.0 if i <= ia else (i - ia) / below
        if t < 1.0:
            out[name] = float(spec.scoliosis_mm * math.cos(0.5 * math.pi * t) ** 2)
    return out


def modic_bands(spec: PhantomSpec, rng: np.random.Generator) -> dict[str, list[tuple[Tissue, bool, float]]]:
    """Per body: (tissue, superior endplate?, band depth) for every Modic change touching it."""
    order = [lv.value for lv in Level]
    out: dict[str, list[tuple[Tissue, bool, float]]] = {}
    for m in spec.modic:
        tissue = Tissue.MODIC_1 if m.modic_type == 1 else Tissue.MODIC_2
        above, below = m.level.value, order[order.index(m.level.value) + 1]
        k = rng.uniform(0.6, 1.15, size=2)
        out.setdefault(above, []).append((tissue, False, float(m.depth_mm * k[0])))
        out.setdefault(below, []).append((tissue, True, float(m.depth_mm * k[1])))
    return out


def schmorl_notches(spec: PhantomSpec, dims: dict[str, BodyDims]) -> dict[str, tuple[Notch, ...]]:
    out: dict[str, tuple[Notch, ...]] = {}
    for n in spec.schmorl_nodes:
        d = dims[n.level.value]
        u = d.depth_mm / 2.0 - n.ap_fraction * d.depth_mm
        where = f"Schmorl node at {n.level.value}"
        for line, f in HEIGHT_FRACTIONS.items():
            u_line = d.depth_mm / 2.0 - f * d.depth_mm
            if abs(u - u_line) < n.radius_mm + 0.3 and abs(n.lateral_mm) < n.radius_mm + 0.3:
                raise ConfigError(
                    f"{where}: the pit (radius {n.radius_mm:g} mm at {n.ap_fraction:g} of the depth) crosses the "
                    f"{line} height line; move ap_fraction or lateral_mm, or make it smaller"
                )
        if abs(n.lateral_mm) + n.radius_mm > 0.7 * d.width_mm / 2.0:
            raise ConfigError(f"{where}: lateral_mm + radius_mm must stay within 70 % of the half-width")
        notch = Notch(u, n.lateral_mm, n.endplate == "superior", n.radius_mm, n.depth_mm)
        out[n.level.value] = out.get(n.level.value, ()) + (notch,)
    return out


@dataclass(eq=False)
class _SchmorlPit(Painter):
    """Disc material filling a Schmorl node's pit (painted before the body, which leaves the pit empty)."""

    body: PlacedBody
    notch: Notch
    tissue: Tissue

    def __post_init__(self) -> None:
        self.lo, self.hi = self.body.lo, self.body.hi

    def paint(self, canvas: Canvas, x: Array, y: Array, z: Array) -> None:
        u, v, w = self.body.local(x, y, z)
        s = self.body.shape
        inside_fp, _ = s.footprint(u, w)
        d = s.v_sup(u, w) - v if self.notch.superior else v - s.v_inf(u, w)
        fill(canvas, inside_fp & (d >= -0.2) & (self.notch.q(u, w, d) <= 1.0), self.tissue)


def schmorl_painters(
    spec: PhantomSpec, bodies: dict[str, PlacedBody], order: list[str], disc_tissue: dict[str, Tissue]
) -> list[Painter]:
    out: list[Painter] = []
    for n in spec.schmorl_nodes:
        name = n.level.value
        i = order.index(name)
        disc = order[i - 1] if n.endplate == "superior" else name  # discs are named by the body above
        tissue = disc_tissue.get(disc, Tissue.NUCLEUS) if i > 0 or n.endplate == "inferior" else Tissue.NUCLEUS
        for notch in bodies[name].shape.notches:
            if notch.superior == (n.endplate == "superior"):
                out.append(_SchmorlPit(bodies[name], notch, tissue))
    return out
