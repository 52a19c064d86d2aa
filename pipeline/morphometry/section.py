"""One sagittal section of a vertebral body: contour, body frame, six-point chords, posterior wall.

2-D points are ``(row_mm, col_mm)`` in the image plane (row/col index times the pixel spacing). Body
coordinates ``(u, v)`` are relative to the section's centre, ``u`` anterior along the endplates' mean direction,
``v`` superior and perpendicular to it.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError
from skimage import measure

from pipeline.model import Heights, VertebraSeg
from pipeline.morphometry.config import MorphometryConfig
from pipeline.volume import Volume

logger = logging.getLogger(__name__)

# LPS unit vectors: superior is +z, anterior is -y.
SUPERIOR_LPS = np.array([0.0, 0.0, 1.0])
ANTERIOR_LPS = np.array([0.0, -1.0, 0.0])
LEFT_LPS = np.array([1.0, 0.0, 0.0])


# --------------------------------------------------------------------------- internal results
@dataclass(frozen=True)
class Plane:
    """In-plane geometry of a sagittal volume: 2-D points are ``(row_mm, col_mm)``."""

    spacing_rc: np.ndarray  # (2,) mm
    slice_mm: float  # slice pitch
    superior: np.ndarray  # (2,) unit, superior direction in the (row_mm, col_mm) plane
    anterior: np.ndarray  # (2,) unit


@dataclass(frozen=True)
class Section:
    """Measurements of one sagittal section of a body, in the plane's 2-D mm coordinates.

    Body coordinates ``(u, v)`` are relative to ``centre``: ``u`` anterior along the endplates' mean direction,
    ``v`` superior and perpendicular to it. The walls may lean (``shear``): wall-parallel lines are
    ``u = u' + shear * v``; chords are such lines, given by their ``u'``.
    """

    slice_index: int
    area_mm2: float
    n_components: int
    contour: np.ndarray  # (N, 2) mm, closed (smoothed by ``contour_smoothing_mm``)
    raw_contour: np.ndarray  # (M, 2) mm, closed, as drawn (posterior wall)
    centre: np.ndarray  # (2,)
    u: np.ndarray  # (2,) unit, anterior along the endplates
    v: np.ndarray  # (2,) unit, superior, perpendicular to u
    shear: float  # du/dv of the walls
    u_post: float  # posterior wall line u' (relative to centre)
    u_ant: float  # anterior wall line u'
    chords: dict[str, tuple[float, float, float]]  # name -> (u', v_inferior, v_superior)
    wedge_angle_deg: float

    @property
    def depth_mm(self) -> float:
        return self.u_ant - self.u_post

    @property
    def heights(self) -> Heights:
        """Chord lengths (mm): along the walls' direction, so a sheared section is not shortened."""
        stretch = math.sqrt(1.0 + self.shear**2)
        h = {k: (c[2] - c[1]) * stretch for k, c in self.chords.items()}
        return Heights(anterior_mm=h["anterior"], middle_mm=h["middle"], posterior_mm=h["posterior"])

    def to_plane(self, uu: float, vv: float) -> np.ndarray:
        """Body coordinates (true ``u``, ``v``) -> plane mm."""
        return self.centre + uu * self.u + vv * self.v

    def chord_point(self, uu_sheared: float, vv: float) -> np.ndarray:
        """Sheared body coordinates (``u'``, ``v``) -> plane mm."""
        return self.to_plane(uu_sheared + self.shear * vv, vv)


@dataclass(frozen=True)
class Body:
    """A body measured on its mid-sagittal section (and neighbours), before references are known."""

    index: int  # position in segmentation.vertebrae
    seg: VertebraSeg
    mid: Section
    neighbours: tuple[Section, ...]
    heights: Heights  # reported heights: the mid section's, or the mean over the slab (height_slab_mm)
    slab: tuple[int, ...]  # slices averaged into ``heights``


@dataclass(frozen=True)
class Wall:
    bulge_mm: float
    apex: np.ndarray  # (2,) plane mm
    wall_mid: np.ndarray  # (2,) plane mm, posterior edge at mid-height (start of the canal ray)


# --------------------------------------------------------------------------- geometry of the plane
def sagittal_plane(image: Volume, cfg: MorphometryConfig) -> tuple[Plane | None, str]:
    axes = image.axes_lps
    obliquity = math.degrees(math.acos(min(1.0, abs(float(axes[0] @ LEFT_LPS)))))
    if obliquity > cfg.max_slice_obliquity_deg:
        return None, (
            f"the image is not sagittal (slice normal {obliquity:.0f} deg from left-right, limit "
            f"{cfg.max_slice_obliquity_deg:.0f} deg); morphometry needs a sagittal series"
        )
    sup = np.array([axes[1] @ SUPERIOR_LPS, axes[2] @ SUPERIOR_LPS])
    ant = np.array([axes[1] @ ANTERIOR_LPS, axes[2] @ ANTERIOR_LPS])
    if np.linalg.norm(sup) < 0.5 or np.linalg.norm(ant) < 0.5:
        return None, "the image plane does not contain the head-feet and front-back directions"
    sup = sup / np.linalg.norm(sup)
    ant = ant - (ant @ sup) * sup
    ant = ant / np.linalg.norm(ant)
    return Plane(np.array(image.spacing_mm[1:], dtype=float), float(image.spacing_mm[0]), sup, ant), ""


def _outer_crossings(poly: np.ndarray, values: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where the closed polygon ``poly`` (N, 2) crosses each line ``coord[axis] == values[k]`` (K lines).

    Returns ``(low, high, count)``, each (K,): the smallest and largest value of the other coordinate among the
    line's crossings (``+inf`` / ``-inf`` where it has none) and how many there are. All lines in one array
    operation (a Python loop over lines was most of the morphometry's time, issue 18), the arithmetic only on the
    edges that cross; per crossing it is the loop's arithmetic, so the results are the same to the bit. (Bisecting
    for each edge's lines computes fewer crossings but was slower on body contours: they are short.)
    """
    a = poly[None, :, axis] - np.asarray(values, dtype=float)[:, None]
    a[a == 0.0] = 1e-12  # a vertex exactly on the line counts as just above it
    b = poly[:, 1 - axis]
    lines, edges = np.nonzero(a[:, :-1] * a[:, 1:] < 0)  # the few (line, edge) pairs that cross
    a0, a1 = a[lines, edges], a[lines, edges + 1]
    x = b[edges] + (a0 / (a0 - a1)) * (b[edges + 1] - b[edges])
    low, high = np.full(len(a), np.inf), np.full(len(a), -np.inf)
    np.minimum.at(low, lines, x)
    np.maximum.at(high, lines, x)
    return low, high, np.bincount(lines, minlength=len(a))


def _extent(poly_uv: np.ndarray, u0: float, half_band: float, n: int = 5) -> tuple[float, float] | None:
    """Mean (inferior, superior) outer edges along v of the body at ``u = u0`` over ``u0 +- half_band``."""
    offsets = np.linspace(-half_band, half_band, n) if half_band > 0 else np.zeros(1)
    low, high, count = _outer_crossings(poly_uv, u0 + offsets, axis=0)
    ok = count >= 2
    if not ok.any():
        return None
    return float(np.mean(low[ok])), float(np.mean(high[ok]))


def _min_area_rectangle_axes(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit side directions of the minimum-area bounding rectangle of ``points`` (N, 2)."""
    try:
        hull = points[ConvexHull(points).vertices]
    except QhullError:
        hull = points
    edges = np.diff(np.vstack([hull, hull[:1]]), axis=0)
    lengths = np.linalg.norm(edges, axis=1)
    edges = edges[lengths > 1e-9] / lengths[lengths > 1e-9, None]
    # the hull projected on every edge and its normal at once; the first edge whose area is smaller by more than
    # 1e-9 than every earlier one wins, as in a loop over the edges (the result is one of ``edges``)
    pe, pn = hull @ edges.T, hull @ np.stack([-edges[:, 1], edges[:, 0]], axis=1).T
    areas = (pe.max(axis=0) - pe.min(axis=0)) * (pn.max(axis=0) - pn.min(axis=0))
    best, best_area = 0, np.inf
    for k, area in enumerate(areas.tolist()):
        if area < best_area - 1e-9:
            best, best_area = k, area
    e = edges[best]
    return e, np.array([-e[1], e[0]])


def _section_contour(
    mask: np.ndarray, spacing_rc: np.ndarray, smoothing_mm: float
) -> tuple[np.ndarray, np.ndarray, int]:
    """Outer 0.5 iso-contours (N, 2) in mm of the largest component of ``mask``: after a Gaussian of
    ``smoothing_mm`` (for the heights) and as drawn (for the posterior wall, where smoothing would blunt a
    fragment's apex); and the number of large components."""
    lab, n = ndimage.label(mask)
    if n > 1:
        sizes = ndimage.sum_labels(mask, lab, index=np.arange(1, n + 1))
        keep = lab == (int(np.argmax(sizes)) + 1)
        n_big = int(np.sum(sizes >= 0.2 * sizes.max()))
    else:
        keep = lab == 1
        n_big = n
    keep = ndimage.binary_fill_holes(keep)
    sigma = smoothing_mm / spacing_rc
    pad = 2 + int(np.ceil(4 * sigma.max()))
    raw = np.pad(keep, pad).astype(float)
    out = []
    for field_ in (ndimage.gaussian_filter(raw, sigma=sigma, mode="constant") if smoothing_mm > 0 else raw, raw):
        contours = measure.find_contours(field_, 0.5)
        if not contours:
            return np.empty((0, 2)), np.empty((0, 2)), n_big
        c = max(contours, key=lambda p: abs(_polygon_area(p)))
        if not np.allclose(c[0], c[-1]):
            c = np.vstack([c, c[:1]])
        out.append((c - pad) * spacing_rc)
    return out[0], out[1], n_big


def _polygon_area(p: np.ndarray) -> float:
    x, y = p[:, 0], p[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


_EPS = float(np.finfo(float).eps)


def _fit_line(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """``np.polyfit(x, y, 1)`` as (slope, intercept): the same scaled least-squares solve, so the same result to
    the bit, without polyfit's argument checks and rank warning (a sixth of the morphometry's time, issue 18)."""
    lhs = np.empty((x.size, 2))
    lhs[:, 0] = x + 0.0
    lhs[:, 1] = 1.0
    scale = np.sqrt((lhs * lhs).sum(axis=0))
    lhs /= scale
    c = np.linalg.lstsq(lhs, y + 0.0, rcond=x.size * _EPS)[0] / scale
    return float(c[0]), float(c[1])


def _median(x: np.ndarray) -> float:
    """``np.median`` of a 1-D array without NaN: the middle value, or the mean of the two middle values."""
    s = np.sort(x)
    m = s.size // 2
    return float(s[m]) if s.size % 2 else float((s[m - 1] + s[m]) / 2.0)


def _edge_profiles(puv: np.ndarray, lo: float, hi: float, axis: int, n: int = 25) -> tuple[np.ndarray, ...]:
    """Outer edges of the contour crossed by lines ``coord[axis] = c`` for ``c`` in ``[lo, hi]``.

    Returns ``(c, low, high)`` arrays for the lines that cross the contour at least twice.
    """
    cs = np.linspace(lo, hi, n)
    low, high, count = _outer_crossings(puv, cs, axis=axis)
    ok = count >= 2
    return cs[ok], low[ok], high[ok]


def _inner_line(v: np.ndarray, x: np.ndarray, outward: float, tol: float) -> tuple[float, float, np.ndarray]:
    """Line ``x = slope * v + intercept`` through the inner envelope of a wall profile.

    Points more than ``tol`` outward of the line (``outward`` = +1: larger ``x`` is outward) are bulges
    (retropulsion, osteophytes) and are dropped, iteratively; at least 40 % of the points are kept.
    Returns ``(slope, intercept, kept mask)``.
    """
    keep = np.ones(v.size, dtype=bool)
    n_min = max(5, int(np.ceil(0.4 * v.size)))
    slope, intercept = _fit_line(v, x)
    for _ in range(10):
        resid = outward * (x - (slope * v + intercept))
        new = resid <= tol
        if new.sum() < n_min:
            new = np.zeros(v.size, dtype=bool)
            new[np.argsort(resid)[:n_min]] = True
        if np.array_equal(new, keep):
            break
        keep = new
        slope, intercept = _fit_line(v[keep], x[keep])
    return slope, intercept, keep


def measure_section(
    mask: np.ndarray, slice_index: int, plane: Plane, up: np.ndarray, cfg: MorphometryConfig
) -> Section | str:
    """Six-point morphometry of one sagittal section; a string is the reason it could not be measured.

    ``up`` is a unit (row_mm, col_mm) vector roughly along the local column towards the head; it only picks
    which side of the bounding rectangle is the height axis.
    """
    contour, raw_contour, n_comp = _section_contour(mask, plane.spacing_rc, cfg.contour_smoothing_mm)
    if len(contour) < 8:
        return "no body contour on the section"
    area = abs(_polygon_area(contour))
    if area < cfg.min_section_area_mm2:
        return f"body section too small ({area:.0f} mm2 < {cfg.min_section_area_mm2:.0f} mm2)"
    centre = contour[:-1].mean(axis=0)
    pts = contour - centre
    e1, e2 = _min_area_rectangle_axes(pts)
    v = e1 if abs(e1 @ up) >= abs(e2 @ up) else e2
    v = v if v @ up > 0 else -v
    u = np.array([v[1], -v[0]])
    u = u if u @ plane.anterior > 0 else -u

    margin = cfg.endplate_fit_margin_fraction
    wall_probe = 0.5 * cfg.height_inset_fraction + 0.05  # where the anterior wall's height range is probed
    trim_tol = 0.6 * float(plane.spacing_rc.max())  # wall points further outward than this are bulges
    max_shear = math.tan(math.radians(cfg.max_wall_lean_deg))
    max_disagree = math.radians(cfg.max_wall_disagreement_deg)
    shear, theta, prev_theta, step = 0.0, 0.0, 0.0, 1.0
    for _ in range(40):
        puv = np.column_stack([pts @ u, pts @ v])
        # Walls: anterior / posterior edges on the central part of each wall's own height (a wedge's anterior
        # wall is shorter than its posterior wall).
        u_lo, u_hi = float(puv[:, 0].min()), float(puv[:, 0].max())
        # The anterior wall's height range is probed near the anterior edge (a wedge's anterior wall is short);
        # the posterior wall's on the middle chord, which a wall bulging into the canal does not distort.
        vm_lo, vm_hi, n_vm = _outer_crossings(puv, np.array([0.5 * (u_lo + u_hi)]), axis=0)
        if n_vm[0] < 2:
            return "body contour too irregular to find its walls"
        vm_min, vm_max = float(vm_lo[0]), float(vm_hi[0])
        # Probe just inside the typical anterior edge (not the extreme, which an osteophyte may set).
        _, _, ant_all = _edge_profiles(puv, vm_min, vm_max, axis=1)
        u_front = _median(ant_all) if ant_all.size else u_hi
        va_lo, va_hi, n_va = _outer_crossings(puv, np.array([u_front - wall_probe * (u_hi - u_lo)]), axis=0)
        if n_va[0] < 2:
            return "body contour too irregular to find its walls"
        va_min, va_max = float(va_lo[0]), float(va_hi[0])
        # Both ranges are kept within the middle chord's, so concave endplates do not pass for walls.
        ranges = ((max(va_min, vm_min), min(va_max, vm_max)), (vm_min, vm_max))
        walls = []
        for (r_lo, r_hi), outward in zip(ranges, (1.0, -1.0), strict=True):
            h_w = r_hi - r_lo
            if h_w <= 0:
                return "body contour too irregular to find its walls"
            vv_w, lo_w, hi_w = _edge_profiles(puv, r_lo + margin * h_w, r_hi - margin * h_w, axis=1)
            if vv_w.size < 5:
                return "body contour too irregular to find its walls"
            edge = hi_w if outward > 0 else lo_w
            walls.append((vv_w, edge, _inner_line(vv_w, edge, outward, trim_tol)))
        (vv_a, ant, line_a), (vv_p, post, line_p) = walls
        # A wall traced over less than a third of the body's height (a collapsed anterior wall, the waist of a
        # deeply biconcave body) does not show its lean reliably.
        tall = max(va_max - va_min, vm_max - vm_min)
        leans = [
            math.atan(line[0])
            for (lo_r, hi_r), line in zip(ranges, (line_a, line_p), strict=True)
            if (1 - 2 * margin) * (hi_r - lo_r) >= tall / 3
        ]
        if not leans or max(leans) - min(leans) > max_disagree:
            shear = 0.0  # walls unreliable or not parallel: chords perpendicular to the endplates' direction
        else:
            shear = float(np.clip(math.tan(float(np.mean(leans))), -max_shear, max_shear))
        u_ant = _median((ant - shear * vv_a)[line_a[2]])
        u_post = _median((post - shear * vv_p)[line_p[2]])
        depth = u_ant - u_post
        if depth <= 0:
            return "body contour too irregular to find its walls"
        # Endplates: outer superior / inferior edges on the central part of the depth.
        v_c = 0.5 * (vm_min + vm_max)
        uu, bot, top = _edge_profiles(
            puv, u_post + margin * depth + shear * v_c, u_ant - margin * depth + shear * v_c, axis=0
        )
        if uu.size < 5:
            return "body contour too irregular to find its endplates"
        theta = 0.5 * (math.atan(_fit_line(uu, top)[0]) + math.atan(_fit_line(uu, bot)[0]))
        if abs(theta) < 1e-5:
            break
        if theta * prev_theta < 0:
            step *= 0.5  # overshoot (steep concave endplates respond non-linearly): damp the rotation
        prev_theta = theta
        theta *= step
        u, v = math.cos(theta) * u + math.sin(theta) * v, -math.sin(theta) * u + math.cos(theta) * v
        u, v = u / np.linalg.norm(u), v / np.linalg.norm(v)
    else:
        logger.debug("slice %d: body frame did not converge (last step %.2g rad)", slice_index, theta)

    puv = np.column_stack([pts @ u, pts @ v])
    sheared = np.column_stack([puv[:, 0] - shear * puv[:, 1], puv[:, 1]])
    inset = cfg.height_inset_fraction * depth
    band = cfg.height_band_fraction * depth
    positions = {"anterior": u_ant - inset, "middle": 0.5 * (u_post + u_ant), "posterior": u_post + inset}
    chords: dict[str, tuple[float, float, float]] = {}
    for name, u0 in positions.items():
        ext = _extent(sheared, u0, band)
        if ext is None:
            return f"no {name} height chord across the body contour"
        chords[name] = (u0, ext[0], ext[1])

    def true_uv(name: str, k: int) -> tuple[float, float]:
        c = chords[name]
        return c[0] + shear * c[k], c[k]

    (ua_s, ta), (up_s, tp) = true_uv("anterior", 2), true_uv("posterior", 2)
    (ua_i, ba), (up_i, bp) = true_uv("anterior", 1), true_uv("posterior", 1)
    wedge = math.degrees(math.atan2(ba - bp, ua_i - up_i) - math.atan2(ta - tp, ua_s - up_s))
    return Section(
        slice_index=slice_index,
        area_mm2=area,
        n_components=n_comp,
        contour=contour,
        raw_contour=raw_contour,
        centre=centre,
        u=u,
        v=v,
        shear=shear,
        u_post=u_post,
        u_ant=u_ant,
        chords=chords,
        wedge_angle_deg=wedge,
    )


# --------------------------------------------------------------------------- posterior wall and canal
def measure_posterior_wall(sec: Section, cfg: MorphometryConfig) -> Wall | str:
    """Bulge of the posterior edge into the canal (mm, >= 0) beyond the unbroken posterior wall.

    The posterior edge is traced between the endplates (``wall_corner_inset_fraction`` of Hp inside each); the
    unbroken wall is the line along the walls' direction through the more anterior of its two ends.
    """
    pts = sec.raw_contour - sec.centre
    puv = np.column_stack([pts @ sec.u, pts @ sec.v])
    _, v_bot, v_top = sec.chords["posterior"]
    hp = v_top - v_bot
    lo, hi = v_bot + cfg.wall_corner_inset_fraction * hp, v_top - cfg.wall_corner_inset_fraction * hp
    vs = np.linspace(lo, hi, 41)
    edge, _, count = _outer_crossings(puv, vs, axis=1)
    if np.any(count < 2):
        return "posterior wall not traceable on the body contour"
    edge = np.convolve(np.pad(edge, 2, mode="edge"), np.ones(5) / 5.0, mode="valid")  # tame the pixel staircase
    # The unbroken wall: along the walls' direction through the more anterior of the two corner points (a
    # retropulsed fragment displaces one corner, usually the superior one; a scalloped wall neither).
    sheared = edge - sec.shear * vs
    anchor = max(float(np.mean(sheared[:3])), float(np.mean(sheared[-3:])))
    line = anchor + sec.shear * vs
    # u points anterior: a wall point posterior of the wall line (smaller u) bulges into the canal.
    dist = (line - edge) * math.cos(math.atan(sec.shear))
    k = int(np.argmax(dist))
    return Wall(
        bulge_mm=max(0.0, float(dist[k])),
        apex=sec.to_plane(float(edge[k]), float(vs[k])),
        wall_mid=sec.to_plane(float(edge[len(vs) // 2]), float(vs[len(vs) // 2])),
    )
