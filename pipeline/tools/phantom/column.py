"""Vertebral bodies and discs: local shape, fracture deformation, and stacking along the column.

Local frame of a vertebral body (mm): ``u`` anterior, ``v`` cranial (perpendicular to the mid-plane of the
*unfractured* body), ``w`` towards the patient's left. Origin: the middle of the footprint in the mid-sagittal
plane (``w = 0``) at mid-height of the unfractured body.

Shape: a rounded box. The axial footprint (``u``, ``w``) has a convex anterior outline (super-ellipse), a
flat, slightly concave posterior wall, rounded posterolateral corners. The body fills
``v_inf(u, w) <= v <= v_sup(u, w)`` over the footprint; the rim of each endplate is a plane (physiological
wedging ``Ha/Hp``), each endplate has a shallow central concavity, and the edges are rounded (radius
``corner_mm``). A cortical shell ``cortex_mm`` thick surrounds the marrow.

AP position as a fraction ``f`` of the depth ``D``: ``f = (D/2 - u) / D`` (0 anterior outer cortex, 1
posterior outer cortex, measured in the mid-sagittal plane on the unfractured footprint).

Fractures lower the superior endplate by ``Δs(u, w)`` (and, for biconcave, raise the inferior one by
``Δi``): wedge ``Δs = A * max(0, 0.9 - f) / 0.8`` (posterior height kept), biconcave ``Δs = A * bump``,
``Δi = r * A * bump`` with a bump that vanishes at ``f <= 0.1`` and ``f >= 0.9``, crush ``Δs = A``
(uniform). ``A`` is solved so that the height loss equals the request exactly. Retropulsion bulges the
posterior wall into the canal by up to ``B`` mm (Gaussian in ``v``, fading over ~16 mm laterally).

Stacking: bodies and discs are chained from the sacrum upwards (and the fused sacral segments downwards);
each disc adds its posterior height and wedge angle, and a fractured body passes its collapsed superior
rim on to the disc above, so a wedge fracture produces a local kyphosis as in patients.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
from numpy.typing import ArrayLike

from pipeline.errors import ConfigError
from pipeline.model import EdemaPattern, Morphology
from pipeline.tools.phantom.primitives import Array, Canvas, Painter, fill
from pipeline.tools.phantom.tissues import Tissue

#: AP fractions of the depth at which Ha, Hm and Hp are defined (see :mod:`pipeline.tools.phantom.truth`).
HEIGHT_FRACTIONS = {"anterior": 0.1, "middle": 0.5, "posterior": 0.9}
#: Grid step (mm) of :func:`fine_samples`, on which truth volumes, centroids and oedema fractions are evaluated.
FINE_STEP_MM = 0.5

Vec2 = np.ndarray  # (y, z) in the sagittal plane


# --------------------------------------------------------------------------- local body shape
@dataclass(frozen=True)
class BodyDims:
    """Unfractured size of a body (mm)."""

    depth_mm: float
    width_mm: float
    hp_rim_mm: float  # rim height at the posterior edge
    ha_rim_mm: float  # rim height at the anterior edge
    concavity_sup_mm: float = 0.8
    concavity_inf_mm: float = 0.8
    posterior_concavity_mm: float = 1.2
    cortex_mm: float = 1.2
    corner_mm: float = 1.5
    lateral_cortex: bool = True  # False for S1 (merges with the sacral ala)
    sup_cortex: bool = True  # False where the endplate is fused (sacral segments)
    inf_cortex: bool = True


@dataclass(frozen=True)
class Notch:
    """Schmorl node: disc material herniated into a body through one endplate (a pit under its surface).

    Local body coordinates: centred at ``(u, w)`` on the ``superior`` (else inferior) endplate, ``radius_mm``
    across, ``depth_mm`` deep measured from the endplate surface into the body.
    """

    u: float
    w: float
    superior: bool
    radius_mm: float
    depth_mm: float

    def q(self, u: Array, w: Array, d_from_endplate: Array) -> Array:
        """Normalised radius (< 1 inside the pit); ``d_from_endplate`` is ``ds`` or ``di`` of the body."""
        r, h = np.float32(self.radius_mm), np.float32(self.depth_mm)
        dd = np.maximum(d_from_endplate, 0.0)
        return ((u - np.float32(self.u)) / r) ** 2 + ((w - np.float32(self.w)) / r) ** 2 + (dd / h) ** 2


@dataclass(frozen=True)
class Deformation:
    kind: Morphology = Morphology.NORMAL
    amp_mm: float = 0.0  # superior endplate collapse amplitude A
    inf_ratio: float = 0.0  # biconcave: inferior amplitude / superior amplitude
    retro_mm: float = 0.0  # posterior wall bulge B


class BodyShape:
    """Implicit local geometry of one vertebral body (vectorised over broadcast arrays)."""

    _PA = 2.2  # anterior outline exponent
    _PP = 5.0  # posterior outline exponent (flat back)

    def __init__(self, dims: BodyDims, deform: Deformation = Deformation(), notches: tuple[Notch, ...] = ()) -> None:
        self.dims = dims
        self.deform = deform
        self.notches = notches
        d = dims.depth_mm
        self.D = d
        self.Wh = dims.width_mm / 2.0
        self.Da = 0.6 * d
        self.u_mid = d / 2.0 - self.Da
        self.kp = dims.posterior_concavity_mm
        self.Dp = d - self.Da + self.kp
        # Retropulsion bulge centre/width along v, from the deformed posterior wall.
        if deform.retro_mm > 0:
            top = float(self.v_sup(np.array(-d / 2 + 0.05 * d), np.array(0.0)))
            bot = float(self.v_inf(np.array(-d / 2 + 0.05 * d), np.array(0.0)))
            h = max(top - bot, 2.0)
            self._vb = bot + 0.55 * h
            self._sb = 0.3 * h
        else:
            self._vb, self._sb = 0.0, 1.0

    # ---- footprint
    def _outline(self, t: Array) -> tuple[Array, Array]:
        """Anterior and posterior boundaries ``U_a(t)``, ``U_p(t)`` at lateral fraction ``t = |w| / Wh``."""
        tc = np.clip(t, 0.0, 1.0)
        ua = self.u_mid + self.Da * (1.0 - tc**self._PA) ** (1.0 / self._PA)
        up = self.u_mid - self.Dp * (1.0 - tc**self._PP) ** (1.0 / self._PP) + self.kp * (1.0 - tc * tc)
        return ua, up

    def bulge(self, v: Array, w: Array) -> Array | float:
        """Posterior displacement (mm) of the posterior wall by retropulsion."""
        if self.deform.retro_mm <= 0:
            return 0.0
        wb = 0.35 * self.dims.width_mm
        q = np.clip(1.0 - (w / wb) ** 2, 0.0, None) ** 2
        return self.deform.retro_mm * np.exp(-(((v - self._vb) / self._sb) ** 2)) * q

    def footprint(self, u: Array, w: Array, v: Array | None = None) -> tuple[Array, Array]:
        """Inside-footprint mask and approximate inward distance (mm) to the footprint outline."""
        aw = np.abs(w)
        t = aw / self.Wh
        ua, up_nominal = self._outline(t)
        up = up_nominal
        if v is not None and self.deform.retro_mm > 0:
            up = up_nominal - self.bulge(v, w)
        du = np.minimum(ua - u, u - up)
        # lateral distance: half-width of the outline at this u
        ra = np.clip((u - self.u_mid) / self.Da, 0.0, 1.0)
        rp = np.clip((self.u_mid - u) / self.Dp, 0.0, 1.0)
        tmax = np.where(
            u >= self.u_mid,
            (1.0 - ra**self._PA) ** (1.0 / self._PA),
            (1.0 - rp**self._PP) ** (1.0 / self._PP),
        )
        dw = self.Wh * tmax - aw
        if v is not None and self.deform.retro_mm > 0:
            # behind the nominal posterior wall only the bulge (already in ``du``) decides
            dw = np.where(u < up_nominal, 10.0, dw)
        inside = (t < 1.0) & (du >= 0) & (dw >= 0)
        if self.dims.lateral_cortex:
            dpos_u, dpos_w = np.maximum(du, 1e-3), np.maximum(dw, 1e-3)
            d_edge = dpos_u * dpos_w / np.sqrt(dpos_u * dpos_u + dpos_w * dpos_w)
        else:
            d_edge = np.maximum(du, 0.0) + 0.0 * dw
        return inside, d_edge

    # ---- endplates
    def f_of_u(self, u: Array) -> Array:
        return (self.D / 2.0 - u) / self.D

    def _rim(self, f: Array) -> Array:
        d = self.dims
        return d.hp_rim_mm + (d.ha_rim_mm - d.hp_rim_mm) * (1.0 - f)

    def _bowl(self, u: Array, w: Array) -> Array:
        return np.clip(1.0 - (u / (self.D / 2.0)) ** 2 - (w / self.Wh) ** 2, 0.0, None)

    def _bump(self, u: Array, w: Array) -> Array:
        r2 = (u / (0.4 * self.D)) ** 2 + (w / (0.8 * self.Wh)) ** 2
        return np.clip(1.0 - r2, 0.0, None) ** 2

    def delta_sup(self, u: Array, w: Array) -> Array | float:
        k, a = self.deform.kind, self.deform.amp_mm
        if a <= 0 or k is Morphology.NORMAL:
            return 0.0
        if k is Morphology.WEDGE:
            return a * np.clip((0.9 - self.f_of_u(u)) / 0.8, 0.0, None)
        if k is Morphology.CRUSH:
            return a + 0.0 * u
        return a * self._bump(u, w)  # BICONCAVE

    def delta_inf(self, u: Array, w: Array) -> Array | float:
        if self.deform.kind is Morphology.BICONCAVE and self.deform.amp_mm > 0:
            return self.deform.amp_mm * self.deform.inf_ratio * self._bump(u, w)
        return 0.0

    def v_sup(self, u: Array, w: Array) -> Array:
        return self._rim(self.f_of_u(u)) / 2.0 - self.dims.concavity_sup_mm * self._bowl(u, w) - self.delta_sup(u, w)

    def v_inf(self, u: Array, w: Array) -> Array:
        return -self._rim(self.f_of_u(u)) / 2.0 + self.dims.concavity_inf_mm * self._bowl(u, w) + self.delta_inf(u, w)

    def v_sup_unfractured(self, u: Array, w: Array) -> Array:
        return self._rim(self.f_of_u(u)) / 2.0 - self.dims.concavity_sup_mm * self._bowl(u, w)

    # ---- classification
    def classify(self, u: Array, v: Array, w: Array) -> tuple[Array, Array, Array, Array]:
        """Return ``inside``, inward distance to the surface ``d_in`` (mm), ``dist_sup``, ``dist_inf``."""
        inside_fp, d_edge = self.footprint(u, w, v)
        vs, vi = self.v_sup(u, w), self.v_inf(u, w)
        ds, di = vs - v, v - vi
        d_ep = np.minimum(ds, di)
        # fused endplates (sacrum) have no cortex and no rounded rim
        d_cx = np.minimum(ds if self.dims.sup_cortex else ds + 50.0, di if self.dims.inf_cortex else di + 50.0)
        r = self.dims.corner_mm
        corner = (d_edge < r) & (d_cx < r)
        rc = r - np.sqrt((r - np.minimum(d_edge, r)) ** 2 + (r - np.minimum(d_cx, r)) ** 2)
        d_in = np.where(corner, rc, np.minimum(d_edge, d_cx))
        inside = inside_fp & (d_ep >= 0) & (d_in >= 0)
        for notch in self.notches:
            # Schmorl node: a half-ellipsoid pit under the endplate surface; bone around it keeps a cortical rim
            q = notch.q(u, w, ds if notch.superior else di)
            d_notch = (np.sqrt(q) - 1.0) * min(notch.radius_mm, notch.depth_mm)
            inside = inside & (q > 1.0)
            d_in = np.minimum(d_in, d_notch)
        return inside, d_in, ds, di

    # ---- measurements (mid-sagittal plane, w = 0)
    def u_at(self, f: float) -> float:
        return self.D / 2.0 - f * self.D

    def height_at(self, f: float) -> float:
        u = np.array(self.u_at(f))
        w = np.array(0.0)
        return float(self.v_sup(u, w) - self.v_inf(u, w))

    def heights(self) -> dict[str, float]:
        return {k: self.height_at(f) for k, f in HEIGHT_FRACTIONS.items()}

    def reference_height(self) -> float:
        """Posterior height Hp of the same body unfractured."""
        return BodyShape(self.dims).height_at(HEIGHT_FRACTIONS["posterior"])

    def height_loss_pct(self) -> float:
        return 100.0 * (1.0 - min(self.heights().values()) / self.reference_height())

    # ---- rim points (local (u, v)), used for stacking
    def sup_rim(self) -> tuple[np.ndarray, np.ndarray]:
        """Anterior and posterior points of the superior rim (fracture collapse included, no bumps)."""
        d = self.D
        k, a = self.deform.kind, self.deform.amp_mm
        da = dp = 0.0
        if k is Morphology.WEDGE:
            da = a * 0.9 / 0.8
        elif k is Morphology.CRUSH:
            da = dp = a
        return (
            np.array([d / 2, self.dims.ha_rim_mm / 2 - da]),
            np.array([-d / 2, self.dims.hp_rim_mm / 2 - dp]),
        )

    def inf_rim(self) -> tuple[np.ndarray, np.ndarray]:
        d = self.D
        return (np.array([d / 2, -self.dims.ha_rim_mm / 2]), np.array([-d / 2, -self.dims.hp_rim_mm / 2]))


def solve_deformation(
    dims: BodyDims,
    kind: Morphology,
    loss_pct: float,
    retro_mm: float,
    inf_ratio: float = 0.8,
    where: str = "",
) -> Deformation:
    """Collapse amplitude giving exactly ``loss_pct`` height loss (bisection on a monotone function)."""
    base = Deformation(kind=kind, amp_mm=0.0, inf_ratio=inf_ratio, retro_mm=retro_mm)
    if kind is Morphology.NORMAL or loss_pct <= 0:
        return replace(base, kind=Morphology.NORMAL)
    physiological = BodyShape(dims, base).height_loss_pct()
    if loss_pct <= physiological + 0.5:
        raise ConfigError(
            f"{where}: height_loss_pct={loss_pct:g} is within this body's physiological shape variation "
            f"({physiological:.1f} %); request a larger loss or kind 'normal'"
        )
    lo, hi = 0.0, dims.hp_rim_mm * 2.0
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        if BodyShape(dims, replace(base, amp_mm=mid)).height_loss_pct() < loss_pct:
            lo = mid
        else:
            hi = mid
    return replace(base, amp_mm=0.5 * (lo + hi))


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
