"""Spinal canal: bony canal with epidural fat, thecal sac (CSF), cord with conus, cauda equina roots.

Positions are curvilinear: ``s`` is the arc length (mm) along a smooth centreline through the canal,
increasing caudally, ``d`` the signed distance from it in the sagittal plane (positive posterior) and
``w = x - x0`` the lateral offset. A 1 mm lookup grid maps (y, z) to (s, d) by nearest-point projection.
:func:`build_canal` lays the centreline and its profile along the placed column.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.interpolate import CubicSpline
from scipy.ndimage import map_coordinates
from scipy.spatial import cKDTree

from pipeline.tools.phantom.column import PlacedBody
from pipeline.tools.phantom.primitives import Array, Canvas, Painter
from pipeline.tools.phantom.tissues import Tissue

# Bony canal half sizes (AP, LR) in mm at each level.
CANAL_TABLE: dict[str, tuple[float, float]] = {
    **{f"T{i}": (7.4, 8.2) for i in range(1, 10)},
    "T10": (7.5, 8.6),
    "T11": (7.6, 9.2),
    "T12": (7.9, 9.8),
    "L1": (8.3, 10.4),
    "L2": (8.5, 11.0),
    "L3": (8.6, 11.4),
    "L4": (8.8, 12.0),
    "L5": (9.0, 12.8),
    "S1": (7.0, 12.5),
    "S2": (5.5, 10.0),
    "S3": (4.5, 8.0),
    "S4": (3.6, 6.0),
    "S5": (3.0, 5.0),
}


@dataclass
class CanalProfile:
    """Control values along the canal (each array indexed like ``s_mm``)."""

    s_mm: np.ndarray
    bony_ap_half: np.ndarray  # a_c
    bony_lr_half: np.ndarray  # b_c
    sac_ap_half: np.ndarray
    sac_lr_half: np.ndarray
    sac_shift: np.ndarray  # d of the sac centre
    cord_ap_half: np.ndarray
    cord_lr_half: np.ndarray


class CanalPainter(Painter):
    """Paints the canal contents; bodies and discs are painted afterwards and form its front wall."""

    def __init__(
        self,
        points_yz: np.ndarray,
        x0: float,
        profile_at_points: dict[str, np.ndarray],
        conus_index: float,
        sac_end_index: float,
        roots: list[tuple[float, float, float, float]],
    ) -> None:
        """
        Parameters
        ----------
        points_yz : ndarray, shape (n, 2)
            Centreline control points, cranial to caudal.
        profile_at_points : dict of name -> ndarray (n,)
            Half sizes ``bony_ap``, ``bony_lr``, ``sac_ap``, ``sac_lr``, ``sac_shift``, ``cord_ap``,
            ``cord_lr``.
        conus_index, sac_end_index : float
            Fractional control-point indices of the conus tip and the end of the thecal sac.
        roots : list of (d_frac, w_frac, radius_mm, end_index)
            Cauda equina roots as fractions of the sac half-axes, ending at a control-point index.
        """
        self.x0 = x0
        chord = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(points_yz, axis=0), axis=1))]
        spline = CubicSpline(chord, points_yz, bc_type="natural")
        s_dense = np.arange(0.0, chord[-1] + 1e-9, 0.5)
        pts = spline(s_dense)
        tan = spline(s_dense, 1)
        tan /= np.linalg.norm(tan, axis=1, keepdims=True)
        # arc length of the dense curve
        arc = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))]
        self.arc_at_point = np.interp(chord, s_dense, arc)
        self.points, self.tangent, self.arc = pts, tan, arc
        self.normal = np.stack([-tan[:, 1], tan[:, 0]], axis=1)  # posterior
        self.prof = {k: np.asarray(v, float) for k, v in profile_at_points.items()}
        idx = np.arange(len(points_yz), dtype=float)
        self.s_conus = float(np.interp(conus_index, idx, self.arc_at_point))
        self.s_sac_end = float(np.interp(sac_end_index, idx, self.arc_at_point))
        self.roots = [(df, wf, r, float(np.interp(e, idx, self.arc_at_point))) for df, wf, r, e in roots]
        # lookup grid (1 mm) over the curve's box plus margin
        margin = 30.0
        lo = pts.min(axis=0) - margin
        hi = pts.max(axis=0) + margin
        self.g0 = lo
        self.gstep = 1.0
        ny, nz = np.ceil((hi - lo) / self.gstep).astype(int) + 1
        gy, gz = np.meshgrid(lo[0] + np.arange(ny) * self.gstep, lo[1] + np.arange(nz) * self.gstep, indexing="ij")
        q = np.stack([gy.ravel(), gz.ravel()], axis=1)
        _, k = cKDTree(pts).query(q)
        rel = q - pts[k]
        s_grid = arc[k] + np.einsum("ij,ij->i", rel, tan[k])
        d_grid = np.einsum("ij,ij->i", rel, self.normal[k])
        self.s_grid = s_grid.reshape(ny, nz).astype(np.float32)
        self.d_grid = d_grid.reshape(ny, nz).astype(np.float32)
        half_w = float(np.max(self.prof["bony_lr"])) + 2.0
        # optional lateral offset of the centreline per control point (scoliosis); absent = straight midline
        self.x_shift = self.prof.get("x_shift")
        if self.x_shift is not None:
            half_w += float(np.max(np.abs(self.x_shift)))
        self.max_ap = float(np.max(self.prof["bony_ap"])) + 0.5
        self.max_lr = half_w
        self.lo = np.array([x0 - half_w, lo[0] + 5, lo[1] + 5])
        self.hi = np.array([x0 + half_w, hi[0] - 5, hi[1] - 5])

    def sd(self, y: Array, z: Array) -> tuple[Array, Array]:
        """Curvilinear (s, d) of LPS (y, z) points (broadcast); cached for repeated (sagittal) inputs."""
        cache = getattr(self, "_sd_cache", None)
        if cache is not None and cache[0] is y and cache[1] is z:
            return cache[2], cache[3]
        s, d = self._sd(y, z)
        self._sd_cache = (y, z, s, d)
        return s, d

    def _sd(self, y: Array, z: Array) -> tuple[Array, Array]:
        yb, zb = np.broadcast_arrays(y, z)
        gy = (yb - np.float32(self.g0[0])) / np.float32(self.gstep)
        gz = (zb - np.float32(self.g0[1])) / np.float32(self.gstep)
        coords = np.stack([gy.ravel(), gz.ravel()])
        s = map_coordinates(self.s_grid, coords, order=1, mode="nearest").reshape(yb.shape)
        d = map_coordinates(self.d_grid, coords, order=1, mode="nearest").reshape(yb.shape)
        return s, d

    def profile(self, name: str, s: Array) -> Array:
        return np.interp(s, self.arc_at_point, self.prof[name]).astype(np.float32)

    def paint(self, canvas: Canvas, x: Array, y: Array, z: Array) -> None:
        s, d = self.sd(y, z)
        w = x - np.float32(self.x0)
        shape = np.broadcast_shapes(s.shape, w.shape)
        near = (s > 0.5) & (s < self.arc[-1] - 0.5) & (np.abs(d) < self.max_ap)
        near = near & (np.abs(w) < self.max_lr)
        idx = np.nonzero(np.broadcast_to(near, shape))
        if idx[0].size == 0:
            return
        s = np.broadcast_to(s, shape)[idx]
        d = np.broadcast_to(d, shape)[idx]
        w = np.broadcast_to(w, shape)[idx]
        if self.x_shift is not None:
            w = w - self.profile("x_shift", s)
        ac, bc = self.profile("bony_ap", s), self.profile("bony_lr", s)
        t = np.zeros(s.shape, np.uint8)
        bony = (d / ac) ** 2 + (w / bc) ** 2 <= 1.0
        t[bony] = Tissue.EPIDURAL_FAT
        sac_taper = np.clip((self.s_sac_end - s) / 12.0, 0.0, 1.0) ** 0.5
        a_s = self.profile("sac_ap", s) * sac_taper + 1e-3
        b_s = self.profile("sac_lr", s) * sac_taper + 1e-3
        dd = d - self.profile("sac_shift", s)
        sac = bony & ((dd / a_s) ** 2 + (w / b_s) ** 2 <= 1.0)
        t[sac] = Tissue.CSF
        taper = np.clip((self.s_conus - s) / 14.0, 0.0, 1.0) ** 0.6
        a_k = np.maximum(self.profile("cord_ap", s) * taper, 0.55)
        b_k = np.maximum(self.profile("cord_lr", s) * taper, 0.55)
        cord = sac & ((((dd + 0.6) / a_k) ** 2 + (w / b_k) ** 2) <= 1.0)
        # below the conus only the thin filum terminale remains
        cord &= (s < self.s_conus + 0.5) | (((dd + 0.6) ** 2 + w**2) <= 0.5**2)
        t[cord] = Tissue.CORD
        below = sac & (s > self.s_conus - 6.0)
        if np.any(below):
            for df, wf, r, s_end in self.roots:
                t[below & (s < s_end) & (((dd - df * a_s) ** 2 + (w - wf * b_s) ** 2) <= r * r)] = Tissue.NERVE_ROOT
        keep = t > 0
        sel = tuple(i[keep] for i in idx)
        canvas.tissue[sel] = t[keep]


# --------------------------------------------------------------------------- the canal of a placed column
def build_canal(
    bodies: dict[str, PlacedBody],
    order: list[str],
    discs: dict,
    x0: float,
    k_canal: float,
    conus_offset: float,
    rng: np.random.Generator,
) -> tuple[CanalPainter, dict[str, float], str]:
    """The canal behind the placed bodies ``order`` (and S2-S5): its painter, the expected bony canal AP
    diameter per level (mm; ``CANAL_TABLE`` scaled by ``k_canal``) and the level nearest the conus."""
    pts: list[np.ndarray] = []
    prof: dict[str, list[float]] = {
        k: [] for k in ("bony_ap", "bony_lr", "sac_ap", "sac_lr", "sac_shift", "cord_ap", "cord_lr")
    }
    index_of: dict[str, float] = {}
    names = order + ["S2", "S3", "S4", "S5"]
    canal_ap: dict[str, float] = {}

    shifted = any(bodies[n].x0 != x0 for n in names)
    if shifted:
        prof["x_shift"] = []

    def add(point: np.ndarray, ac: float, bc: float, name: str) -> None:
        pts.append(point)
        if shifted:
            prof["x_shift"].append(bodies[name].x0 - x0)
        thoracic = name.startswith("T")
        sacral = name.startswith("S")
        sac_ap = ac - (0.8 if thoracic else 1.8 if not sacral else 2.2)
        sac_lr = bc - 2.5
        prof["bony_ap"].append(ac)
        prof["bony_lr"].append(bc)
        prof["sac_ap"].append(max(sac_ap, 0.5))
        prof["sac_lr"].append(max(sac_lr, 0.5))
        prof["sac_shift"].append(max(sac_ap, 0.5) - ac + 0.3)
        big = name in ("T11", "T12", "L1")
        prof["cord_ap"].append(4.2 if big else 3.8)
        prof["cord_lr"].append(5.2 if big else 4.7)

    def wall_mid(body: PlacedBody) -> tuple[np.ndarray, np.ndarray]:
        s = body.shape
        up = s.u_at(1.0)
        vm = 0.5 * float(s.v_sup(np.array(up), np.array(0.0)) + s.v_inf(np.array(up), np.array(0.0)))
        return body.frame.to_world(np.array([up, vm])), -body.frame.u

    first = bodies[names[0]]
    p, back = wall_mid(first)
    ac, bc = (v * k_canal for v in CANAL_TABLE[names[0]])
    add(p + back * ac + first.frame.v * 30.0, ac, bc, names[0])
    for i, name in enumerate(names):
        body = bodies[name]
        ac, bc = (v * k_canal for v in CANAL_TABLE[name])
        p, back = wall_mid(body)
        index_of[name] = float(len(pts))
        add(p + back * ac, ac, bc, name)
        canal_ap[name] = 2.0 * ac
        if i + 1 < len(names):
            nxt = bodies[names[i + 1]]
            a1 = body.frame.to_world(body.shape.inf_rim()[1])
            a2 = nxt.frame.to_world(nxt.shape.sup_rim()[1])
            ac2, bc2 = (v * k_canal for v in CANAL_TABLE[names[i + 1]])
            back2 = -(body.frame.u + nxt.frame.u) / np.linalg.norm(body.frame.u + nxt.frame.u)
            acm, bcm = 0.5 * (ac + ac2), 0.5 * (bc + bc2)
            add(0.5 * (a1 + a2) + back2 * (acm + 0.4), acm, bcm, name)
    pts_arr = np.array(pts)
    conus_idx = index_of["L1"] + conus_offset
    sac_end = index_of["S2"]
    roots = []
    lumbar_idx = [index_of[n] for n in ("L2", "L3", "L4", "L5", "S1", "S2")]
    for _ in range(10):
        roots.append(
            (
                float(rng.uniform(-0.1, 0.75)),
                float(rng.choice([-1, 1]) * rng.uniform(0.1, 0.75)),
                float(rng.uniform(0.5, 0.8)),
                float(rng.choice(lumbar_idx)) + 0.5,
            )
        )
    canal = CanalPainter(pts_arr, x0, {k: np.array(v) for k, v in prof.items()}, conus_idx, sac_end, roots)
    conus_level = min(index_of, key=lambda n: abs(index_of[n] - conus_idx))
    return canal, canal_ap, conus_level
