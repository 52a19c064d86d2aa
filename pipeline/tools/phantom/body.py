"""One vertebral body in its own frame: shape, fracture deformation and the exact heights.

How bodies are placed along the column and painted is in :mod:`pipeline.tools.phantom.column`.

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
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from pipeline.errors import ConfigError
from pipeline.model import Morphology
from pipeline.tools.phantom.primitives import Array

#: AP fractions of the depth at which Ha, Hm and Hp are defined (see :mod:`pipeline.tools.phantom.truth`).
HEIGHT_FRACTIONS = {"anterior": 0.1, "middle": 0.5, "posterior": 0.9}


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
