"""Bodies and discs along the column: placement in the sagittal plane, stacking, and painting.

A body's shape in its own frame is :mod:`pipeline.tools.phantom.body`. Stacking: bodies and discs are chained
from the sacrum upwards (and the fused sacral segments downwards); each disc adds its posterior height and wedge
angle, and a fractured body passes its collapsed superior rim on to the disc above, so a wedge fracture produces a
local kyphosis as in patients.

:class:`PlacedBody` paints a placed body (bone, marrow, oedema, its label), :class:`PlacedDisc` the disc between two
placed bodies; :func:`fine_samples` classifies a fine grid over a placed body (the truth is evaluated on it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike

from pipeline.model import EdemaPattern
from pipeline.tools.phantom.body import BodyDims, BodyShape
from pipeline.tools.phantom.primitives import Array, Canvas, Painter, fill
from pipeline.tools.phantom.tissues import Tissue

#: Grid step (mm) of :func:`fine_samples`, on which truth volumes, centroids and oedema fractions are evaluated.
FINE_STEP_MM = 0.5

Vec2 = np.ndarray  # (y, z) in the sagittal plane


# --------------------------------------------------------------------------- 2-D frames in the sagittal plane
def normal_of(e: Vec2) -> Vec2:
    """Cranial normal of an in-plane direction ``e = (y, z)`` that points anteriorly (rotation by 90 deg)."""
    return np.array([e[1], -e[0]])


def unit(a: Vec2) -> Vec2:
    return a / np.linalg.norm(a)


@dataclass
class Frame2D:
    """Placement of a body in the sagittal plane: centre and unit axes, as (y, z) pairs (anterior is -y)."""

    centre: Vec2
    u: Vec2  # anterior
    v: Vec2  # cranial

    def to_world(self, local: np.ndarray) -> Vec2:
        local = np.asarray(local, float)
        return self.centre + local[..., 0:1] * self.u + local[..., 1:2] * self.v

    def rotated(self, pivot: Vec2, angle: float) -> Frame2D:
        c, s = math.cos(angle), math.sin(angle)
        rot = np.array([[c, -s], [s, c]])
        return Frame2D(pivot + rot @ (self.centre - pivot), rot @ self.u, rot @ self.v)


def place_by_inferior_rim(shape: BodyShape, p_world: Vec2, e_world: Vec2) -> Frame2D:
    """Frame putting the body's posterior-inferior rim point at ``p_world``, its rim along ``e_world``."""
    a, p = shape.inf_rim()
    return _place(a, p, p_world, e_world)


def place_by_superior_rim(shape: BodyShape, p_world: Vec2, e_world: Vec2) -> Frame2D:
    a, p = shape.sup_rim()
    return _place(a, p, p_world, e_world)


def _place(a_local: np.ndarray, p_local: np.ndarray, p_world: Vec2, e_world: Vec2) -> Frame2D:
    rim = a_local - p_local
    beta = math.atan2(rim[1], rim[0])
    e = unit(e_world)
    n = normal_of(e)
    u = math.cos(beta) * e - math.sin(beta) * n
    v = math.sin(beta) * e + math.cos(beta) * n
    centre = p_world - (p_local[0] * u + p_local[1] * v)
    return Frame2D(centre, u, v)


def rim_world(frame: Frame2D, rim: tuple[np.ndarray, np.ndarray]) -> tuple[Vec2, Vec2]:
    """World (anterior, posterior) points of a local rim pair."""
    return frame.to_world(rim[0]), frame.to_world(rim[1])


def stack_up(
    shape_below: BodyShape,
    frame_below: Frame2D,
    disc_post_mm: float,
    disc_ant_mm: float,
    shape_above: BodyShape,
) -> Frame2D:
    """Frame of the body above a disc of the given posterior/anterior heights."""
    a, p = rim_world(frame_below, shape_below.sup_rim())
    e_b = unit(a - p)
    n_b = normal_of(e_b)
    p_top = p + disc_post_mm * n_b
    alpha = math.atan2(disc_ant_mm - disc_post_mm, 0.5 * (shape_below.D + shape_above.D))
    e_t = math.cos(alpha) * e_b + math.sin(alpha) * n_b
    return place_by_inferior_rim(shape_above, p_top, e_t)


def stack_down(
    shape_above: BodyShape,
    frame_above: Frame2D,
    gap_post_mm: float,
    gap_ant_mm: float,
    shape_below: BodyShape,
) -> Frame2D:
    """Frame of the body below a (possibly fused) disc, hanging from ``shape_above``'s inferior rim."""
    a, p = rim_world(frame_above, shape_above.inf_rim())
    e_b = unit(a - p)
    n_b = normal_of(e_b)
    p_bot = p - gap_post_mm * n_b
    alpha = math.atan2(gap_ant_mm - gap_post_mm, 0.5 * (shape_above.D + shape_below.D))
    e_s = math.cos(alpha) * e_b - math.sin(alpha) * n_b
    return place_by_superior_rim(shape_below, p_bot, e_s)


# --------------------------------------------------------------------------- painters
@dataclass
class EdemaModel:
    """Which interior points of a body are oedematous: ``metric < threshold``."""

    pattern: EdemaPattern
    threshold: float
    both_endplates: bool = False
    noise: object | None = None  # callable(u, v, w) -> [-1, 1]
    noise_mm: float = 1.2

    def metric(self, shape: BodyShape, u: Array, v: Array, w: Array, ds: Array, di: Array) -> Array:
        if self.pattern is EdemaPattern.BAND:
            m = np.minimum(ds, di) if self.both_endplates else ds
            if self.noise is not None:
                m = m + np.float32(self.noise_mm) * self.noise(u, 0.0 * u, w)  # type: ignore[operator]
            return m
        # DIFFUSE: smooth random field, biased towards the superior endplate (lower metric = more likely)
        assert self.noise is not None
        h = np.maximum(ds + di, 1.0)
        return -self.noise(u, v, w) + 0.6 * (ds / h)  # type: ignore[operator]


@dataclass(eq=False)
class PlacedBody(Painter):
    """A vertebral body (or fused sacral segment) placed in the patient: paints bone, oedema and its label."""

    name: str
    shape: BodyShape
    frame: Frame2D
    x0: float  # LPS x of the mid-sagittal plane (w = 0)
    label: int = 0
    edema: EdemaModel | None = None
    fat_noise: object | None = None
    fat_threshold: float = 0.55
    sclerosis_mm: float = 0.0
    hemangioma: tuple[float, float, float, float] | None = None  # (u, v, w, radius) local
    vein: bool = True
    extra: dict = field(default_factory=dict)
    modic: tuple[tuple[Tissue, bool, float], ...] = ()  # (tissue, superior endplate?, band depth mm)

    def __post_init__(self) -> None:
        s = self.shape
        corners: list[np.ndarray] = []
        for uu in (-s.D / 2 - s.deform.retro_mm - 1, s.D / 2 + 1):
            for vv in (
                -s.dims.ha_rim_mm / 2 - 2,
                -s.dims.hp_rim_mm / 2 - 2,
                s.dims.ha_rim_mm / 2 + 2,
                s.dims.hp_rim_mm / 2 + 2,
            ):
                corners.append(self.frame.to_world(np.array([uu, vv])))
        pts = np.array(corners)
        self.lo = np.array([self.x0 - s.Wh - 1, pts[:, 0].min(), pts[:, 1].min()])
        self.hi = np.array([self.x0 + s.Wh + 1, pts[:, 0].max(), pts[:, 1].max()])

    def local(self, x: Array, y: Array, z: Array) -> tuple[Array, Array, Array]:
        """LPS -> local (u, v, w); the (y, z) part is cached (sagittal slabs pass the same arrays)."""
        key = (id(y), id(z), np.shape(y), np.shape(z))
        cache = self.extra.get("uv")
        if cache is not None and cache[0] == key and cache[1] is y and cache[2] is z:
            u, v = cache[3], cache[4]
        else:
            c = self.frame.centre
            dy, dz = y - np.float32(c[0]), z - np.float32(c[1])
            u = dy * np.float32(self.frame.u[0]) + dz * np.float32(self.frame.u[1])
            v = dy * np.float32(self.frame.v[0]) + dz * np.float32(self.frame.v[1])
            self.extra["uv"] = (key, y, z, u, v)
        return u, v, x - np.float32(self.x0)

    def to_lps(self, local: ArrayLike) -> np.ndarray:
        """Local (u, v, w) points, shape (..., 3) -> LPS mm."""
        local = np.asarray(local, float)
        yz = self.frame.centre + local[..., 0:1] * self.frame.u + local[..., 1:2] * self.frame.v
        return np.concatenate([self.x0 + local[..., 2:3], yz], axis=-1)

    def interior_tissue(
        self,
        u: Array,
        v: Array,
        w: Array,
        inside: Array,
        d_in: Array,
        ds: Array,
        di: Array,
        cosmetic: bool = True,
    ) -> tuple[Array, Array]:
        """Tissue codes inside the body (uint8, 0 outside) and the oedema mask.

        ``cosmetic=False`` skips features that never change the body outline or the oedema (fat islands,
        sclerosis, basivertebral vein, haemangioma), for the truth computation.
        """
        s = self.shape
        tissue = np.where(inside, np.uint8(Tissue.CORTEX), np.uint8(0)).astype(np.uint8)
        interior = inside & (d_in >= s.dims.cortex_mm)
        edema = np.zeros(tissue.shape, dtype=bool)
        idx = np.nonzero(interior)
        if idx[0].size == 0:
            return tissue, edema
        pu, pv, pw, pds, pdi = u[idx], v[idx], w[idx], ds[idx], di[idx]
        t = np.full(pu.shape, Tissue.MARROW, np.uint8)
        if self.fat_noise is not None and cosmetic:
            t[self.fat_noise(pu, pv, pw) > self.fat_threshold] = Tissue.MARROW_FAT  # type: ignore[operator]
        if self.sclerosis_mm > 0 and cosmetic:
            scl = pds < s.dims.cortex_mm + self.sclerosis_mm
            if self.fat_noise is not None:
                scl &= self.fat_noise(pu * 2.0, pv * 2.0, pw * 2.0) > -0.3  # type: ignore[operator]
            t[scl] = Tissue.SCLEROSIS
        if self.vein and cosmetic:
            up0 = s.u_at(1.0)
            vmid = 0.5 * float(s.v_sup(np.array(up0), np.array(0.0)) + s.v_inf(np.array(up0), np.array(0.0)))
            t[(pu - up0 < 5.5) & (np.abs(pv - vmid) < 1.5) & (np.abs(pw) < 2.5)] = Tissue.BASIVERTEBRAL_VEIN
        if self.hemangioma is not None and cosmetic:
            hu, hv, hw, hr = self.hemangioma
            t[(pu - hu) ** 2 + (pv - hv) ** 2 + (pw - hw) ** 2 <= hr * hr] = Tissue.HEMANGIOMA
        if self.modic and cosmetic:
            # Modic change: marrow band along an endplate next to a degenerated disc, irregular in depth,
            # sparing the rim (the outer ~15 % of the footprint)
            central = ((pu / (0.5 * s.D)) ** 2 + (pw / s.Wh) ** 2) < 0.72
            wobble = self.fat_noise(pu * 0.6, pv * 0.0, pw * 0.6) if self.fat_noise is not None else 0.0  # type: ignore[operator]
            for tissue_m, superior, depth in self.modic:
                dist = pds if superior else pdi
                band = central & (dist < s.dims.cortex_mm + depth * (1.0 + 0.35 * wobble))
                t[band] = tissue_m
        if self.edema is not None:
            pe = self.edema.metric(s, pu, pv, pw, pds, pdi) < self.edema.threshold
            t[pe] = Tissue.EDEMA
            edema[idx] = pe
        tissue[idx] = t
        return tissue, edema

    def paint(self, canvas: Canvas, x: Array, y: Array, z: Array) -> None:
        u, v, w = self.local(x, y, z)
        inside, d_in, ds, di = self.shape.classify(u, v, w)
        if not inside.any():
            return
        shape = inside.shape
        u, v, w, d_in, ds, di = (np.broadcast_to(a, shape) for a in (u, v, w, d_in, ds, di))
        tissue, _ = self.interior_tissue(u, v, w, inside, d_in, ds, di)
        np.copyto(canvas.tissue, tissue, where=inside)
        np.copyto(canvas.label, np.uint8(self.label), where=inside)


def fine_samples(body: PlacedBody, step: float = FINE_STEP_MM) -> dict[str, np.ndarray]:
    """Classify a regular local grid (``u``, ``v``, ``w`` cell centres, ``step`` apart) over the body."""
    s = body.shape
    u = np.arange(-s.D / 2 - s.deform.retro_mm - 1.0, s.D / 2 + 1.0, step) + step / 2
    vmax = max(s.dims.ha_rim_mm, s.dims.hp_rim_mm) / 2 + 1.0
    v = np.arange(-vmax, vmax, step) + step / 2
    w = np.arange(-s.Wh - 1.0, s.Wh + 1.0, step) + step / 2
    shape = (u.size, v.size, w.size)
    uu, vv, ww = (np.broadcast_to(a, shape) for a in (u[:, None, None], v[None, :, None], w[None, None, :]))
    inside, d_in, ds, di = s.classify(u[:, None, None], v[None, :, None], w[None, None, :])
    inside, d_in, ds, di = (np.broadcast_to(a, shape) for a in (inside, d_in, ds, di))
    tissue, edema = body.interior_tissue(uu, vv, ww, inside, d_in, ds, di, cosmetic=False)
    return {
        "u": uu,
        "v": vv,
        "w": ww,
        "inside": inside,
        "d_in": d_in,
        "ds": ds,
        "di": di,
        "edema": edema,
        "tissue": tissue,
    }


@dataclass(eq=False)
class PlacedDisc(Painter):
    """Intervertebral disc filling the space between two bodies' actual endplates (incl. concavities).

    ``fused=True`` draws a fused sacral junction instead: bone with a thin vestigial disc remnant.
    """

    below: PlacedBody
    above: PlacedBody
    x0: float
    degenerated: bool = False
    fused: bool = False
    cleft: bool = True
    bulge: float = 0.06
    remnant: float = 0.3  # AP half-size of a fused junction's vestigial disc, as a fraction of the depth
    nucleus: Tissue | None = None  # overrides the nucleus tissue (desiccated disc)
    vacuum: bool = False  # gas (vacuum phenomenon) in a thin horizontal cleft of a desiccated disc

    def __post_init__(self) -> None:
        lo = np.minimum(self.below.lo, self.above.lo)
        hi = np.maximum(self.below.hi, self.above.hi)
        # the disc lies between the two bodies: clip to their rim band
        pts = np.array(
            [
                *rim_world(self.below.frame, self.below.shape.sup_rim()),
                *rim_world(self.above.frame, self.above.shape.inf_rim()),
            ]
        )
        marg = 6.0 + max(self.below.shape.deform.amp_mm, self.above.shape.deform.amp_mm)
        lo[1:] = np.maximum(lo[1:], pts.min(axis=0) - marg)
        hi[1:] = np.minimum(hi[1:], pts.max(axis=0) + marg)
        self.lo, self.hi = lo, hi
        self.depth = 0.5 * (self.below.shape.D + self.above.shape.D)
        self.fp = BodyShape(
            BodyDims(
                self.depth,
                (self.below.shape.Wh + self.above.shape.Wh),
                10.0,
                10.0,
                posterior_concavity_mm=1.0,
            )
        )
        e = unit(unit(pts[0] - pts[1]) + unit(pts[2] - pts[3]))
        self.u_d, self.v_d = e, normal_of(e)
        self.centre = pts.mean(axis=0)

    def paint(self, canvas: Canvas, x: Array, y: Array, z: Array) -> None:
        lb, ub = self.below, self.above
        uL, vL, w = lb.local(x, y, z)
        uU, vU, wU = ub.local(x, y, z)
        if lb.x0 != ub.x0:  # scoliosis: each endplate in its own body's frame, the disc midway
            dl = vL - lb.shape.v_sup(uL, w)
            du = ub.shape.v_inf(uU, wU) - vU
            w = 0.5 * (w + wU)
        else:
            dl = vL - lb.shape.v_sup(uL, w)
            du = ub.shape.v_inf(uU, w) - vU
        r = max(lb.shape.dims.corner_mm, ub.shape.dims.corner_mm) + 0.3
        band = (dl >= -r) & (du >= -r)
        if not np.any(band):
            return
        vn = (dl - du) / np.maximum(dl + du, 0.5)
        dy, dz = y - np.float32(self.centre[0]), z - np.float32(self.centre[1])
        ud = dy * np.float32(self.u_d[0]) + dz * np.float32(self.u_d[1])
        scale = 1.0 + self.bulge * np.clip(1.0 - vn * vn, -0.5, 1.0)
        inside_fp, d_edge = self.fp.footprint(ud / scale, w / scale)
        disc = band & inside_fp
        if self.fused:
            fill(canvas, disc, Tissue.CORTEX)
            fill(canvas, disc & (d_edge > 1.1), Tissue.MARROW)
            rem = (
                disc
                & (np.abs(vn) < 0.5)
                & ((ud / (self.remnant * self.depth)) ** 2 + (w / (0.55 * self.fp.Wh)) ** 2 < 1)
            )
            fill(canvas, rem, Tissue.DISC_REMNANT)
            return
        fill(canvas, disc, Tissue.ANNULUS)
        an = (0.28 if self.degenerated else 0.40) * self.depth
        bn = (0.45 if self.degenerated else 0.62) * self.fp.Wh
        uc = -0.05 * self.depth
        vq = np.clip(np.abs(vn) - (0.35 if self.degenerated else 0.62), 0.0, None) / 0.32
        nuc = disc & (((ud - uc) / an) ** 2 + (w / bn) ** 2 + vq * vq <= 1.0)
        if self.nucleus is not None:
            fill(canvas, nuc, self.nucleus)
            if self.vacuum:
                fill(canvas, nuc & (np.abs(vn) < 0.12) & (np.abs(ud - uc) < 0.6 * an), Tissue.GAS)
            return
        fill(canvas, nuc, Tissue.NUCLEUS_DEGENERATED if self.degenerated else Tissue.NUCLEUS)
        if self.cleft and not self.degenerated:
            fill(canvas, nuc & (np.abs(vn) < 0.07) & (np.abs(ud - uc) < 0.75 * an), Tissue.ANNULUS)
