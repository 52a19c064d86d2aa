"""Soft tissue around the column: skin, subcutaneous fat, paraspinal and abdominal wall muscle,
retroperitoneal fat, psoas, diaphragm, thoracic and abdominal organs, vessels, bowel, bladder.

These structures are what a vertebral-body segmenter must *reject*: vessels and bowel loops next to
the bodies, the psoas alongside them, the diaphragm crura in front of them.
Most boundaries are functions of ``z`` sampled on a 2 mm grid (cheap to evaluate for every sub-sample).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.ndimage import gaussian_filter1d

from pipeline.tools.phantom.primitives import Array, BoneGroup, Canvas, Capsule, Ellipsoid, Painter, Tube, fill
from pipeline.tools.phantom.tissues import Tissue


@dataclass
class ColumnProfile:
    """Column landmarks as functions of z (ascending ``z_grid``) plus the patient's habitus."""

    z_grid: np.ndarray
    y_ant: np.ndarray  # anterior vertebral line (most anterior y)
    y_post: np.ndarray  # posterior vertebral line (front of the canal)
    y_tip: np.ndarray  # spinous process tips
    level_centres: dict[str, np.ndarray]
    level_half_width: dict[str, float]
    level_depth: dict[str, float]
    x0: float
    habitus: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def from_points(
        cls,
        ant: np.ndarray,
        post: np.ndarray,
        tips: np.ndarray,
        centres: dict[str, np.ndarray],
        half_width: dict[str, float],
        depth: dict[str, float],
        x0: float,
    ) -> ColumnProfile:
        zmin = min(ant[:, 1].min(), tips[:, 1].min()) - 200.0
        zmax = max(ant[:, 1].max(), tips[:, 1].max()) + 200.0
        zg = np.arange(zmin, zmax, 2.0)

        def envelope(pts: np.ndarray, most: str) -> np.ndarray:
            out = np.full(zg.shape, np.nan)
            for i, z in enumerate(zg):
                near = pts[np.abs(pts[:, 1] - z) < 5.0, 0]
                if near.size:
                    out[i] = near.min() if most == "min" else near.max()
            ok = ~np.isnan(out)
            out = np.interp(zg, zg[ok], out[ok])
            return gaussian_filter1d(out, 2.0, mode="nearest")

        return cls(
            zg,
            envelope(ant, "min"),
            envelope(post, "max"),
            envelope(tips, "max"),
            centres,
            half_width,
            depth,
            x0,
        )

    def at(self, name: str, z: Array) -> Array:
        src = getattr(self, name) if name in ("y_ant", "y_post", "y_tip") else self.habitus[name]
        return np.interp(z, self.z_grid, src).astype(np.float32)

    def skin_ant(self, z: Array) -> Array:
        return self.at("skin_ant", z)

    def skin_post(self, z: Array) -> Array:
        return self.at("skin_post", z)

    def zc(self, level: str) -> float:
        return float(self.level_centres[level][1])

    def yc(self, level: str) -> float:
        return float(self.level_centres[level][0])


class SoftTissuePainter(Painter):
    """Body outline and tissue compartments (one pass over the whole field of view)."""

    def __init__(self, prof: ColumnProfile, diaphragm: dict[str, float]) -> None:
        self.p = prof
        self.d = diaphragm
        self.lo = np.array([-1e4, -1e4, -1e4])
        self.hi = np.array([1e4, 1e4, 1e4])

    def z_diaphragm(self, x: Array, y: Array) -> Array:
        d = self.d
        ya = np.where(
            y < d["y_dome"],
            (y - d["y_dome"]) / (d["y_front"] - d["y_dome"]),
            (y - d["y_dome"]) / (d["y_back"] - d["y_dome"]),
        )
        drop = np.where(y < d["y_dome"], d["z_dome"] - d["z_front"], d["z_dome"] - d["z_back"])
        xr = x - np.float32(self.p.x0)
        return d["z_dome"] - drop * np.clip(ya, 0, 3) ** 2 + 8.0 * np.tanh(-xr / 60.0) - xr * xr / 500.0

    def paint(self, canvas: Canvas, x: Array, y: Array, z: Array) -> None:
        sagittal = x.ndim == 3 and x.shape[1:] == (1, 1) and y.shape[0] == 1 and z.shape[0] == 1
        if sagittal and x.shape[0] > 1:
            # Boundaries here vary slowly with x: draw once at the slab's mean x and copy to every sub-plane;
            # only the thin midline strip (interspinous fat) needs its own x.
            one = Canvas(canvas.tissue[:1], canvas.label[:1])
            self._paint(one, x[:1] * 0 + np.float32(x.mean()), y, z, strip=False)
            canvas.tissue[1:] = canvas.tissue[:1]
            self._strip(canvas, x, y, z)
            return
        self._paint(canvas, x, y, z, strip=True)

    def _strip(self, canvas: Canvas, x: Array, y: Array, z: Array) -> None:
        p = self.p
        X = np.abs(x - np.float32(p.x0))
        _, ihi = self._inner(X, z)
        ytip = p.at("y_tip", z)
        fill(canvas, (X < 2.5) & (y >= ytip - 2.0) & (y <= ihi), Tissue.FAT)  # supraspinous fat

    def _inner(self, X: Array, z: Array) -> tuple[Array, Array]:
        p = self.p
        ya, yp, rx = p.at("skin_ant", z), p.at("skin_post", z), p.at("half_width", z)
        a, b = ya + p.at("fat_ant", z), yp - p.at("fat_post", z)
        yc, ry = 0.5 * (a + b), np.maximum(0.5 * (b - a), 1.0)
        dx2 = (X / np.maximum(rx - p.at("fat_lat", z), 1.0)) ** 2
        outside = dx2 >= 1.0
        dx2 = np.minimum(dx2, 1.0)
        return (
            np.where(outside, np.inf, yc - ry * np.sqrt(1.0 - dx2)),
            np.where(outside, -np.inf, yc + ry * np.sqrt(np.sqrt(1.0 - dx2 * dx2))),
        )

    def _paint(self, canvas: Canvas, x: Array, y: Array, z: Array, strip: bool) -> None:
        p = self.p
        ya, yp, rx = p.at("skin_ant", z), p.at("skin_post", z), p.at("half_width", z)
        fa, fp, fl = p.at("fat_ant", z), p.at("fat_post", z), p.at("fat_lat", z)
        X = np.abs(x - np.float32(p.x0))

        def interval(
            shrink_ant: Array | float, shrink_post: Array | float, shrink_lat: Array | float
        ) -> tuple[Array, Array]:
            """[y_lo, y_hi] of the outline at each (x, z): round in front, squarish (flat back) behind."""
            a, b = ya + shrink_ant, yp - shrink_post
            yc, ry = 0.5 * (a + b), np.maximum(0.5 * (b - a), 1.0)
            dx2 = (X / np.maximum(rx - shrink_lat, 1.0)) ** 2
            outside = dx2 >= 1.0  # beyond the outline at this x: empty interval
            dx2 = np.minimum(dx2, 1.0)
            lo = np.where(outside, np.inf, yc - ry * np.sqrt(1.0 - dx2))
            hi = np.where(outside, -np.inf, yc + ry * np.sqrt(np.sqrt(1.0 - dx2 * dx2)))
            return lo, hi

        def between(lo: Array, hi: Array) -> Array:
            return (y >= lo) & (y <= hi)

        lo0, hi0 = interval(0.0, 0.0, 0.0)
        body = between(lo0, hi0)
        if not np.any(body):
            return
        fill(canvas, body, Tissue.SKIN)
        fill(canvas, between(*interval(1.8, 1.8, 1.8)), Tissue.FAT)
        wall = p.at("wall", z)
        ilo, ihi = interval(fa, fp, fl)
        # muscular wall all around (abdominal wall in front, flank muscles at the sides), cavity inside it
        fill(canvas, between(ilo, ihi), Tissue.MUSCLE)
        clo, chi = interval(fa + wall, fp, fl + wall)
        yac, ypc, ytip = p.at("y_ant", z), p.at("y_post", z), p.at("y_tip", z)
        rp = p.at("retro_depth", z)
        mb = p.at("muscle_bulge", z)
        # cavity: retroperitoneal and posterior pararenal fat (bowel, organs and the paraspinals go on top)
        fill(canvas, between(clo, chi), Tissue.FAT)
        # paraspinal muscle masses either side of the spinous processes (back to the tips + bulge)
        para_w = p.at("para_half_width", z)
        para = (para_w > X) & between(np.maximum(ilo, ypc - 3.0 - 0.25 * X), np.minimum(ihi, ytip + mb))
        fill(canvas, para, Tissue.MUSCLE)
        perit_hi = np.minimum(chi, yac - rp + X * X / 250.0)
        zd = self.z_diaphragm(x, y)
        above = z > zd
        perit = between(clo, perit_hi)
        fill(canvas, perit & ~above, Tissue.MESENTERY)
        fill(canvas, perit & above, Tissue.LUNG)
        fill(canvas, between(clo, np.minimum(chi, ypc - 12.0)) & (np.abs(z - zd) < 2.5), Tissue.MUSCLE)  # diaphragm
        if strip:
            self._strip(canvas, x, y, z)


def _chain(
    points: list[np.ndarray],
    radii: list[float],
    tissue: Tissue,
    r2_scale: float = 1.0,
    hint: np.ndarray | None = None,
) -> list[Painter]:
    hint = np.array([1.0, 0.0, 0.0]) if hint is None else hint
    out: list[Painter] = []
    for (a, b), (ra, rb) in zip(
        zip(points[:-1], points[1:], strict=True), zip(radii[:-1], radii[1:], strict=True), strict=True
    ):
        r = 0.5 * (ra + rb)
        out.append(Capsule(a, b, r, r * r2_scale, hint, tissue))
    return out


def _rot(axis: int, ang: float) -> np.ndarray:
    c, s = math.cos(ang), math.sin(ang)
    m = np.eye(3)
    i, j = [k for k in range(3) if k != axis]
    m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
    return m


def build_soft_tissue(
    rng: np.random.Generator, rng_bowel: np.random.Generator, prof: ColumnProfile, spec
) -> list[Painter]:
    """Set the habitus on ``prof`` and return the soft-tissue painters in paint order."""
    zg = prof.z_grid
    x0 = prof.x0
    names = prof.level_centres
    z_s1 = prof.zc("S1")
    z_l3 = prof.zc("L3")
    z_l1 = prof.zc("L1")
    z_t12 = prof.zc("T12")
    # ---- habitus
    depth = rng.uniform(95.0, 150.0)
    belly = rng.uniform(0.0, 25.0)
    fat_post = rng.uniform(9.0, 22.0)
    fat_ant = rng.uniform(12.0, 38.0)
    bulge = np.interp(zg, [z_s1 - 60, z_s1, z_s1 + 40, z_t12], [2.0, 4.0, 16.0, 14.0]) * rng.uniform(0.8, 1.2)
    fat_p = fat_post + np.interp(zg, [z_s1 - 80, z_s1 - 10, z_s1 + 30], [22.0, 10.0, 0.0])
    y_ant_l3 = float(np.interp(z_l3, zg, prof.y_ant))
    skin_ant = y_ant_l3 - depth - belly * np.exp(-(((zg - (z_l3 - 20)) / 110.0) ** 2))
    skin_ant = skin_ant + np.clip(zg - (z_t12 + 60), 0, None) * 0.15  # chest narrows above the lower ribs
    skin_post = gaussian_filter1d(prof.y_tip + bulge + fat_p + 2.0, 6.0, mode="nearest")
    prof.habitus.update(
        skin_ant=skin_ant,
        skin_post=skin_post,
        half_width=np.interp(zg, [z_s1 - 80, z_s1, z_l3, z_t12 + 60], [175.0, 170.0, 150.0, 145.0])
        * rng.uniform(0.9, 1.1),
        fat_ant=np.full(zg.shape, fat_ant),
        fat_post=fat_p,
        fat_lat=np.full(zg.shape, 0.8 * fat_ant),
        retro_depth=np.interp(zg, [z_s1 - 40, z_s1, z_l1, z_t12 + 40], [12.0, 18.0, 28.0, 26.0])
        * rng.uniform(0.9, 1.2),
        muscle_bulge=bulge,
        wall=np.full(zg.shape, rng.uniform(7.0, 11.0)),
        para_half_width=np.interp(zg, [z_s1 - 60, z_s1, z_l3, z_t12 + 60], [25.0, 45.0, 70.0, 60.0]),
    )
    y_skin_ant_l1 = float(np.interp(z_l1, zg, skin_ant))
    y_ant_t12 = float(np.interp(z_t12, zg, prof.y_ant))
    top_body = max(names, key=lambda n: names[n][1])
    z_top = float(names[top_body][1])
    z_t10 = prof.zc("T10") if "T10" in names else z_t12 + 55.0
    diaphragm = dict(
        y_dome=y_ant_t12 - 60.0,
        z_dome=z_t10 + rng.uniform(5.0, 25.0),
        y_front=y_skin_ant_l1 + fat_ant + 10.0,
        z_front=z_t10 - rng.uniform(0.0, 15.0),
        y_back=y_ant_t12 - 8.0,
        z_back=z_l1 + 5.0,
    )
    painters: list[Painter] = [SoftTissuePainter(prof, diaphragm)]

    def yant(z: float) -> float:
        return float(np.interp(z, zg, prof.y_ant))

    def ypost(z: float) -> float:
        return float(np.interp(z, zg, prof.y_post))

    # ---- thoracic / upper abdominal organs
    z_d = diaphragm["z_dome"]
    heart_c = np.array([x0 + 25.0, y_skin_ant_l1 + fat_ant + 75.0, z_d + 52.0])
    painters.append(Ellipsoid(heart_c, np.eye(3), np.array([62.0, 50.0, 50.0]), Tissue.MYOCARDIUM))
    painters.append(Ellipsoid(heart_c, np.eye(3), np.array([50.0, 38.0, 38.0]), Tissue.BLOOD_POOL))
    painters.append(_Liver(prof, diaphragm, SoftTissuePainter(prof, diaphragm), z_t12 - rng.uniform(0.0, 20.0)))
    st_c = np.array([x0 + 60.0, yant(z_t12) - 60.0, z_t12 + 5.0])
    painters.append(Ellipsoid(st_c, np.eye(3), np.array([42.0, 38.0, 50.0]), Tissue.BOWEL_WALL))
    painters.append(Ellipsoid(st_c, np.eye(3), np.array([39.0, 35.0, 47.0]), Tissue.BOWEL_FLUID))
    painters.append(_Cap(Ellipsoid(st_c, np.eye(3), np.array([39.0, 35.0, 47.0]), Tissue.GAS), st_c[1] - 12.0))
    painters.append(
        Ellipsoid(
            np.array([x0 + 95.0, ypost(z_t12) - 30.0, z_t12 + 10.0]),
            np.eye(3),
            np.array([25.0, 45.0, 55.0]),
            Tissue.SPLEEN,
        )
    )
    for sgn in (-1.0, 1.0):
        kz = 0.5 * (z_t12 + prof.zc("L2")) - (8.0 if sgn > 0 else -4.0)
        painters.append(
            Ellipsoid(
                np.array([x0 + sgn * 78.0, ypost(kz) - 12.0, kz]),
                _rot(1, sgn * 0.25),
                np.array([26.0, 22.0, 55.0]),
                Tissue.KIDNEY,
            )
        )
    # ---- psoas and crura
    lumbar = [n for n in ("T12", "L1", "L2", "L3", "L4", "L5") if n in names]
    r_ps = {"T12": 3.0, "L1": 6.5, "L2": 10.5, "L3": 14.5, "L4": 18.0, "L5": 20.0}
    for sgn in (-1.0, 1.0):
        pts, rr = [], []
        for n in lumbar:
            c = names[n]
            r = r_ps[n] * rng.uniform(0.9, 1.1)
            pts.append(
                np.array([x0 + sgn * (prof.level_half_width[n] + r - 5.0), c[0] - 0.15 * prof.level_depth[n], c[1]])
            )
            rr.append(r)
        c = names["S1"]
        pts.append(np.array([x0 + sgn * (prof.level_half_width["S1"] + 38.0), c[0] - 30.0, c[1] - 10.0]))
        rr.append(20.0)
        painters.extend(_chain(pts, rr, Tissue.MUSCLE))
        crus = [np.array([x0 + sgn * 9.0, yant(z) - 3.5, z]) for z in (prof.zc("T11") + 15, z_l1, prof.zc("L2") - 8)]
        painters.extend(_chain(crus, [4.0, 4.5, 2.5], Tissue.MUSCLE))
    # ---- vessels
    z_bif = prof.zc("L4") + rng.uniform(-10.0, 8.0)
    z_ivc = prof.zc("L5") + rng.uniform(-5.0, 10.0)
    zs = np.arange(z_top + 60.0, z_bif, -15.0)
    ao_pts, ao_r = [], []
    for z in zs:
        thor = np.clip((z - z_t12) / 40.0, 0.0, 1.0)
        r = 10.0 + 2.0 * thor
        ao_pts.append(np.array([x0 + 8.0 + 12.0 * thor, yant(z) - r - 2.0 + 10.0 * thor, z]))
        ao_r.append(r)
    ao_pts.append(np.array([x0 + 5.0, yant(z_bif) - 11.0, z_bif]))
    ao_r.append(9.5)
    painters.extend(_chain(ao_pts, ao_r, Tissue.ARTERY))
    for sgn in (-1.0, 1.0):
        painters.extend(
            _chain(
                [
                    ao_pts[-1],
                    ao_pts[-1] + np.array([sgn * 35.0, -12.0, -60.0]),
                    ao_pts[-1] + np.array([sgn * 60.0, -30.0, -120.0]),
                ],
                [6.5, 6.0, 5.5],
                Tissue.ARTERY,
            )
        )
    iv_pts = [np.array([x0 - 20.0, yant(z) - 13.0, z]) for z in np.arange(z_top + 40.0, z_ivc, -15.0)]
    painters.extend(_chain(iv_pts, [11.0] * len(iv_pts), Tissue.VEIN, r2_scale=0.65))
    for sgn in (-1.0, 1.0):
        painters.extend(
            _chain(
                [
                    iv_pts[-1],
                    iv_pts[-1] + np.array([sgn * 32.0 + 18.0, -2.0, -55.0]),
                    iv_pts[-1] + np.array([sgn * 55.0 + 18.0, -20.0, -115.0]),
                ],
                [8.0, 7.5, 7.0],
                Tissue.VEIN,
            )
        )
    # ---- pelvis: bladder, rectum, iliac wings
    z_s4 = prof.zc("S4")
    bl_full = rng.uniform(0.6, 1.2)
    bl_c = np.array(
        [
            x0,
            float(np.interp(z_s4, zg, skin_ant)) + fat_ant + 12.0 + 42.0 * bl_full,
            z_s4 - 5.0 + 10 * bl_full,
        ]
    )
    painters.append(Ellipsoid(bl_c, np.eye(3), np.array([55.0, 42.0, 38.0]) * bl_full + 3.0, Tissue.BOWEL_WALL))
    painters.append(Ellipsoid(bl_c, np.eye(3), np.array([55.0, 42.0, 38.0]) * bl_full, Tissue.URINE))
    rect = [np.array([x0 + 3.0, yant(prof.zc(n)) - 17.0, prof.zc(n)]) for n in ("S2", "S3", "S4", "S5", "Co1")]
    painters.extend(_chain(rect, [15.0] * 5, Tissue.BOWEL_WALL))
    painters.extend(_chain(rect, [12.5] * 5, Tissue.BOWEL_FECES))
    for sgn in (-1.0, 1.0):  # iliac wings: curved plates from the sacroiliac joints towards the front
        yb = ypost(z_s1)
        p0 = np.array([x0 + sgn * 48.0, yb + 12.0, z_s1 + 2.0])
        p1 = np.array([x0 + sgn * 95.0, yb - 25.0, z_s1 + 30.0])
        p2 = np.array([x0 + sgn * 118.0, yb - 80.0, z_s1 + 20.0])
        painters.append(
            BoneGroup(
                [
                    Capsule(p0, p1, 28.0, 6.0, np.array([0.0, 0.0, 1.0]), Tissue.CORTEX),
                    Capsule(p1, p2, 24.0, 5.0, np.array([0.0, 0.0, 1.0]), Tissue.CORTEX),
                ],
                cortex_mm=1.8,
            )
        )
    # ---- bowel loops in the peritoneal cavity
    painters.extend(_bowel(rng_bowel, prof, z_lo=prof.zc("S3"), z_hi=z_l1 + 10.0, x0=x0))
    return painters


@dataclass(eq=False)
class _Cap(Painter):
    """Paints ``inner`` only anterior to ``y_level`` (gas rises anteriorly in a supine patient)."""

    inner: Ellipsoid
    y_level: float

    def __post_init__(self) -> None:
        self.lo, self.hi = self.inner.lo.copy(), self.inner.hi.copy()
        self.hi[1] = min(self.hi[1], self.y_level)

    def paint(self, canvas: Canvas, x: Array, y: Array, z: Array) -> None:
        fill(canvas, (self.inner.q(x, y, z) <= 1.0) & (y < self.y_level), self.inner.tissue)


class _Liver(Painter):
    def __init__(self, prof: ColumnProfile, diaphragm: dict[str, float], soft: SoftTissuePainter, z_low: float) -> None:
        self.p, self.soft, self.z_low = prof, soft, z_low
        zd = diaphragm["z_dome"]
        self.lo = np.array([prof.x0 - 160.0, -1e4, z_low - 60.0])
        self.dome_y = diaphragm["y_dome"]
        self.hi = np.array([prof.x0 + 70.0, 1e4, zd + 20.0])

    def paint(self, canvas: Canvas, x: Array, y: Array, z: Array) -> None:
        p = self.p
        xr = x - np.float32(p.x0)
        zd = self.soft.z_diaphragm(x, y)
        ya, fa, wall = p.at("skin_ant", z), p.at("fat_ant", z), p.at("wall", z)
        yac, rp = p.at("y_ant", z), p.at("retro_depth", z)
        z_lb = self.z_low - 0.35 * np.clip(-xr, 0, None) + 0.45 * np.clip(xr, 0, None) + 0.15 * (y - yac)
        y0 = ya + fa + wall + 1.0
        y1 = yac - rp - 20.0
        yc, ry = 0.5 * (y0 + y1), np.maximum(0.5 * (y1 - y0), 5.0)
        lateral = ((xr + 35.0) / 105.0) ** 2 + ((y - yc) / (1.15 * ry)) ** 2 <= 1.0  # rounded cross-section
        m = (z < zd - 3.0) & (z > z_lb) & (y > y0) & (y < y1) & lateral
        fill(canvas, m, Tissue.LIVER)


def _bowel(rng: np.random.Generator, prof: ColumnProfile, z_lo: float, z_hi: float, x0: float) -> list[Painter]:
    """Small and large bowel: many short tubular segments with thin walls and varied content."""
    out: list[Painter] = []
    contents = (
        Tissue.BOWEL_FLUID,
        Tissue.BOWEL_FECES,
        Tissue.GAS,
        Tissue.BOWEL_WALL,
        Tissue.BOWEL_FLUID,
        Tissue.MESENTERY,
    )
    for _ in range(170):
        z = rng.uniform(z_lo, z_hi)
        x = x0 + (rng.uniform(-45, 45) if rng.uniform() < 0.5 else rng.uniform(-140, 140))
        r = rng.uniform(5.0, 13.0)
        ya = float(np.interp(z, prof.z_grid, prof.habitus["skin_ant"])) + prof.habitus["fat_ant"][0] + 10.0
        yb = float(np.interp(z, prof.z_grid, prof.y_ant)) - float(
            np.interp(z, prof.z_grid, prof.habitus["retro_depth"])
        )
        if yb - ya < 2 * r + 4:
            continue
        c = np.array([x, rng.uniform(ya + r, yb - r), z])
        d = rng.normal(size=3)
        d /= np.linalg.norm(d)
        half = rng.uniform(8.0, 30.0)
        a, b = c - half * d, c + half * d
        content = contents[int(rng.integers(len(contents)))]
        wall = rng.uniform(1.2, 2.2)
        out.append(Tube(a, b, r, wall, Tissue.BOWEL_WALL, None if content is Tissue.BOWEL_WALL else content))
    return out


def pelvic_anatomy(rng: np.random.Generator, prof: ColumnProfile) -> list[Painter]:
    """Lower pelvis (opt-in, :attr:`PhantomSpec.pelvic_anatomy`): what a wide field of view shows below S1.

    Iliac bones from the sacroiliac joints (lateral to the sacral ala, behind the sacrum's front) down to
    the acetabular roof and the ischium, the pubic bodies at the symphysis (bone in front of the bladder,
    near the midline), gluteus maximus behind the sacrum, piriformis from the front of S2-S4 outwards, and
    a few sigmoid loops in front of the sacrum. Everything is unlabelled; call after
    :func:`build_soft_tissue` (it uses the habitus) and paint before the column.
    """
    x0 = prof.x0
    zg = prof.z_grid

    def at(name: str, z: float) -> float:
        src = getattr(prof, name) if name in ("y_ant", "y_post", "y_tip") else prof.habitus[name]
        return float(np.interp(z, zg, src))

    z1, z2, z3, z4 = (prof.zc(n) for n in ("S1", "S2", "S3", "S4"))
    z_co = prof.zc("Co1")
    wh = prof.level_half_width["S1"]
    k = rng.uniform(0.92, 1.08)
    out: list[Painter] = []
    up = np.array([0.0, 0.0, 1.0])
    for sgn in (-1.0, 1.0):
        xs = x0 + sgn * (wh + 34.0 * k)  # sacroiliac joint, just lateral to the ala
        p_si_top = np.array([xs, at("y_post", z1) + 10.0, z1 + 8.0])
        p_si_low = np.array([xs + sgn * 6.0, at("y_post", z3) + 6.0, z3])
        p_ace = np.array([x0 + sgn * 82.0 * k, at("y_ant", z1) + 8.0, z1 - 78.0 * k])
        p_isch = np.array([x0 + sgn * 62.0 * k, at("y_post", z4) - 6.0, z_co - 45.0 * k])
        out.append(
            BoneGroup(
                [
                    Capsule(p_si_top, p_si_low, 22.0, 9.0, up, Tissue.CORTEX),  # posterior ilium at the joint
                    Capsule(p_si_low, p_ace, 16.0, 9.0, np.array([1.0, 0.0, 0.0]), Tissue.CORTEX),  # iliac body
                    Capsule(p_ace, p_isch, 11.0, 9.0, np.array([1.0, 0.0, 0.0]), Tissue.CORTEX),  # ischium
                ],
                cortex_mm=1.6,
            )
        )
        # pubic body next to the symphysis, behind the lower abdominal wall
        z_pub = z_co - rng.uniform(25.0, 45.0)
        y_pub = at("skin_ant", z_pub) + at("fat_ant", z_pub) + 14.0
        out.append(
            BoneGroup(
                [
                    Capsule(
                        np.array([x0 + sgn * 3.0, y_pub, z_pub]),
                        np.array([x0 + sgn * 45.0, y_pub + 20.0, z_pub + 8.0]),
                        15.0,
                        8.0,
                        up,
                        Tissue.CORTEX,
                    )
                ],
                cortex_mm=1.5,
            )
        )
        # gluteus maximus behind the sacrum and ilium (the natal cleft fat stays at the midline)
        yg = at("skin_post", z3) - at("fat_post", z3) - 22.0
        out.append(
            Ellipsoid(
                np.array([x0 + sgn * 62.0, yg, z3 - 15.0]), np.eye(3), np.array([52.0, 24.0, 70.0]), Tissue.MUSCLE
            )
        )
        out.append(
            Capsule(
                np.array([x0 + sgn * 14.0, at("y_ant", z3) - 4.0, z3]),
                np.array([x0 + sgn * 95.0, at("y_post", z4) + 10.0, z4 - 25.0]),
                8.0,
                11.0,
                up,
                Tissue.MUSCLE,
            )
        )  # piriformis
    contents = (Tissue.BOWEL_FECES, Tissue.GAS, Tissue.BOWEL_FLUID, Tissue.BOWEL_FECES)
    for _ in range(6):  # sigmoid loops in front of the upper sacrum
        z = rng.uniform(z3, z1 + 25.0)
        y = at("y_ant", z) - rng.uniform(30.0, 70.0)
        c = np.array([x0 + rng.uniform(-40.0, 40.0), y, z])
        d = rng.normal(size=3)
        d /= np.linalg.norm(d)
        half, r = rng.uniform(10.0, 25.0), rng.uniform(8.0, 16.0)
        content = contents[int(rng.integers(len(contents)))]
        out.append(Tube(c - half * d, c + half * d, r, rng.uniform(1.5, 2.5), Tissue.BOWEL_WALL, content))
    return out
