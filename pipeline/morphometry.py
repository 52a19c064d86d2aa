"""Height-loss morphometry of vertebral bodies on sagittal MRI.

For each labelled vertebral body: anterior / middle / posterior heights (Ha, Hm, Hp) on its mid-sagittal
section, the expected height from normal neighbours, height loss %, Genant semi-quantitative grade,
morphology (wedge / biconcave / crush), wedge angle, posterior-wall bulge and canal compromise, and the
six landmarks in LPS mm for overlays.

Method (per body)
-----------------
1. **Section.** On the slices within ``slice_search_mm`` of the body's ``mid_slice`` the one with the largest
   body area is the mid-sagittal section; slices within ``neighbour_slice_mm`` of it are measured too, as a
   robustness check (their spread of height loss is reported).
2. **Contour.** The largest connected part of the body (holes filled) is traced at the 0.5 iso-level of the
   mask (sub-pixel, in mm with the anisotropic in-plane spacing).
3. **Body frame.** The AP axis ``u`` (pointing anterior) and height axis ``v`` (pointing superior) start from
   the minimum-area bounding rectangle of the contour (the side nearest the patient's superior direction is
   the height axis) and are refined until ``u`` runs along the mean direction of the superior and inferior
   endplates (least-squares lines through the outer endplate profiles on the central part of the body).
   Tilted bodies in a curved spine are therefore measured in their own frame.
4. **Heights.** With ``D`` the AP depth (outer edge to outer edge along ``u``), Ha is the extent of the
   body along ``v`` at ``height_inset_fraction * D`` inside the anterior edge, Hp the same inside the
   posterior edge, Hm at mid-depth; each is averaged over a narrow band (``height_band_fraction * D``) to
   average out the pixel staircase. The six landmarks are the endpoints of these three chords.
   Wedge angle: the angle between the superior line (through the anterior and posterior superior landmarks)
   and the inferior line; positive when the body is lower anteriorly.
5. **Reference height.** Bodies whose own ratios are normal start as "normal"; each body's expected
   posterior height is interpolated between the posterior heights of the nearest normal bodies above and
   below (or extrapolated from the nearest normal bodies on one side with their own level-to-level trend,
   bounded by ``max_growth_per_level_pct``); the most deviant body is removed from the normal set while any
   normal body falls below ``crush_ratio_max`` of its expected height. Without any normal neighbour within
   ``max_reference_gap_levels`` the body's own Hp is the reference (and uniform collapse cannot be seen).
6. **Grade and shape.** Height loss % = ``100 * (1 - min(Ha, Hm, Hp) / reference)`` (0 when the body is not
   smaller than expected); Genant grade from the configured cut-offs; morphology is the pattern whose ratio
   (Ha/Hp wedge, Hm/Hp biconcave, Hp/reference crush) is lowest, when that ratio is below its threshold or
   the body is graded; otherwise normal.
7. **Posterior wall.** The posterior edge between the posterior corners (inset ``wall_corner_inset_fraction``
   of Hp from each endplate) is compared with the straight line joining the corners: the largest
   displacement towards the canal is the bulge (mm). The expected sagittal canal diameter is the CSF column's
   AP extent on the fluid-sensitive ``canal_image`` behind the normal neighbours, and canal compromise is
   ``100 * bulge / expected``.

Everything that cannot be measured is reported as not assessable with the reason, never as grade 0.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError
from skimage import measure

from pipeline.config import default_config_dir, load_yaml, parse_section
from pipeline.errors import InputError
from pipeline.levels import Level
from pipeline.model import (
    Heights,
    Morphology,
    PosteriorWall,
    SegmentationResult,
    Vec3,
    VertebraMorphometry,
    VertebraSeg,
)
from pipeline.volume import Volume

logger = logging.getLogger(__name__)

SECTION = "morphometry"
CONFIG_FILE = "morphometry.yaml"

# LPS unit vectors: superior is +z, anterior is -y.
_SUPERIOR_LPS = np.array([0.0, 0.0, 1.0])
_ANTERIOR_LPS = np.array([0.0, -1.0, 0.0])
_LEFT_LPS = np.array([1.0, 0.0, 0.0])


def _clinical(default: float, lo: float, hi: float) -> Any:
    return field(default=default, metadata={"clinical": True, "range": (lo, hi)})


def _method(default: Any, lo: float | None, hi: float | None) -> Any:
    return field(default=default, metadata={"range": (lo, hi)})


# --------------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class MorphometryConfig:
    """Settings of the morphometry stage (``configs/morphometry.yaml``, section ``morphometry``).

    Clinical thresholds (``clinical=True``) must cite their source in the file's ``sources:`` mapping.
    Percentages are 0-100, ratios unitless, lengths in mm.
    """

    # Genant semi-quantitative grade cut-offs on height loss %: grade 1 from mild, 2 from moderate, 3 from severe.
    genant_mild_pct: float = _clinical(20.0, 0.0, 100.0)
    genant_moderate_pct: float = _clinical(25.0, 0.0, 100.0)
    genant_severe_pct: float = _clinical(40.0, 0.0, 100.0)
    # Shape criteria: a ratio below its threshold is that deformity pattern.
    wedge_ratio_max: float = _clinical(0.80, 0.0, 1.0)  # Ha / Hp
    biconcave_ratio_max: float = _clinical(0.80, 0.0, 1.0)  # Hm / Hp
    crush_ratio_max: float = _clinical(0.80, 0.0, 1.0)  # Hp / reference

    # Measurement method.
    height_inset_fraction: float = _method(0.10, 0.0, 0.3)  # Ha/Hp chords, fraction of AP depth inside the edge
    height_band_fraction: float = _method(0.03, 0.0, 0.1)  # half-width of the averaging band, fraction of depth
    endplate_fit_margin_fraction: float = _method(0.20, 0.05, 0.45)  # endplate / wall lines fitted inside this margin
    max_wall_lean_deg: float = _method(30.0, 0.0, 60.0)  # walls leaning more than this are clipped to it
    max_wall_disagreement_deg: float = _method(15.0, 0.0, 90.0)  # walls less parallel: chords not sheared
    contour_smoothing_mm: float = _method(0.0, 0.0, 3.0)  # Gaussian sigma applied to the mask before tracing
    slice_search_mm: float = _method(6.0, 0.0, 50.0)  # look for the largest section within this of mid_slice
    neighbour_slice_mm: float = _method(3.0, 0.0, 20.0)  # robustness check on slices within this (>= 1 slice)
    neighbour_min_area_fraction: float = _method(0.6, 0.0, 1.0)  # neighbour sections smaller than this are skipped
    height_slab_mm: float = _method(0.0, 0.0, 20.0)  # heights averaged over measured slices within this (0: mid only)
    min_section_area_mm2: float = _method(100.0, 0.0, None)
    spread_low_confidence_pct: float = _method(10.0, 0.0, 100.0)  # slice spread of height loss -> lower confidence
    spread_not_assessable_pct: float = _method(25.0, 0.0, 100.0)  # slice spread -> not assessable
    max_slice_obliquity_deg: float = _method(35.0, 0.0, 90.0)  # slice normal vs left-right axis

    # Reference height.
    max_reference_gap_levels: int = _method(3, 1, 24)
    trend_neighbours: int = _method(3, 1, 10)  # normal bodies used for a one-sided trend
    max_growth_per_level_pct: float = _method(3.0, 0.0, 50.0)  # bound of the one-sided level-to-level trend

    # Posterior wall and canal.
    wall_corner_inset_fraction: float = _method(0.10, 0.0, 0.4)
    canal_search_mm: float = _method(30.0, 5.0, 100.0)
    canal_start_tolerance_mm: float = _method(4.0, 0.0, 20.0)  # CSF must start this close behind the wall
    canal_max_gap_mm: float = _method(10.0, 0.0, 30.0)  # darker gap (cord, roots) tolerated inside the canal
    canal_min_mm: float = _method(4.0, 0.0, 50.0)  # shorter CSF columns are not trusted
    csf_min_contrast_ratio: float = _method(1.3, 1.0, 100.0)  # CSF peak / body marrow on the canal image

    def __post_init__(self) -> None:
        if not self.genant_mild_pct < self.genant_moderate_pct < self.genant_severe_pct:
            raise ValueError(
                "Genant cut-offs must increase: genant_mild_pct < genant_moderate_pct < genant_severe_pct, got "
                f"{self.genant_mild_pct}, {self.genant_moderate_pct}, {self.genant_severe_pct}"
            )
        if self.spread_low_confidence_pct > self.spread_not_assessable_pct:
            raise ValueError(
                "spread_low_confidence_pct must not exceed spread_not_assessable_pct, got "
                f"{self.spread_low_confidence_pct} > {self.spread_not_assessable_pct}"
            )
        if 2 * self.height_inset_fraction + 2 * self.height_band_fraction >= 1.0:
            raise ValueError("height_inset_fraction + height_band_fraction must leave the chords inside the body")


def load_morphometry_config(path: Path | None = None) -> MorphometryConfig:
    """Load and validate the ``morphometry`` section of ``configs/morphometry.yaml``.

    Parameters
    ----------
    path : Path, optional
        YAML file; default ``<config dir>/morphometry.yaml`` (see :func:`pipeline.config.default_config_dir`).

    Raises
    ------
    ConfigError
        File missing or invalid, unknown field, value out of range, clinical threshold without a source.
    """
    path = Path(path) if path is not None else default_config_dir() / CONFIG_FILE
    data = load_yaml(path)
    return parse_section(MorphometryConfig, data.get(SECTION), where=f"{path}: {SECTION}")


# --------------------------------------------------------------------------- internal results
@dataclass(frozen=True)
class _Plane:
    """In-plane geometry of a sagittal volume: 2-D points are ``(row_mm, col_mm)``."""

    spacing_rc: np.ndarray  # (2,) mm
    slice_mm: float  # slice pitch
    superior: np.ndarray  # (2,) unit, superior direction in the (row_mm, col_mm) plane
    anterior: np.ndarray  # (2,) unit


@dataclass(frozen=True)
class _Section:
    """Measurements of one sagittal section of a body, in the plane's 2-D mm coordinates.

    Body coordinates ``(u, v)`` are relative to ``centre``: ``u`` anterior along the endplates' mean direction,
    ``v`` superior and perpendicular to it. The walls may lean (``shear``): wall-parallel lines are
    ``u = u' + shear * v``; chords are such lines, given by their ``u'``.
    """

    slice_index: int
    area_mm2: float
    n_components: int
    contour: np.ndarray  # (N, 2) mm, closed
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
        h = {k: c[2] - c[1] for k, c in self.chords.items()}
        return Heights(anterior_mm=h["anterior"], middle_mm=h["middle"], posterior_mm=h["posterior"])

    def to_plane(self, uu: float, vv: float) -> np.ndarray:
        """Body coordinates (true ``u``, ``v``) -> plane mm."""
        return self.centre + uu * self.u + vv * self.v

    def chord_point(self, uu_sheared: float, vv: float) -> np.ndarray:
        """Sheared body coordinates (``u'``, ``v``) -> plane mm."""
        return self.to_plane(uu_sheared + self.shear * vv, vv)


@dataclass(frozen=True)
class _Body:
    """A body measured on its mid-sagittal section (and neighbours), before references are known."""

    index: int  # position in segmentation.vertebrae
    seg: VertebraSeg
    mid: _Section
    neighbours: tuple[_Section, ...]
    heights: Heights  # reported heights: the mid section's, or the mean over the slab (height_slab_mm)
    slab: tuple[int, ...]  # slices averaged into ``heights``


@dataclass(frozen=True)
class _Reference:
    height_mm: float
    method: str
    labels: tuple[int, ...]
    own: bool  # fallback to the body's own Hp


@dataclass(frozen=True)
class _Wall:
    bulge_mm: float
    apex: np.ndarray  # (2,) plane mm
    wall_mid: np.ndarray  # (2,) plane mm, posterior edge at mid-height (start of the canal ray)


# --------------------------------------------------------------------------- public entry point
def measure_vertebrae(
    image: Volume,
    segmentation: SegmentationResult,
    *,
    cfg: MorphometryConfig,
    canal_image: Volume | None = None,
) -> tuple[VertebraMorphometry, ...]:
    """Measure every labelled vertebral body.

    Parameters
    ----------
    image : Volume
        The anatomy series (sagittal T2 or T1), shape ``(n_slices, n_rows, n_cols)``; defines the grid.
    segmentation : SegmentationResult
        ``labels`` (uint16, same grid as ``image``; 1..N cranial -> caudal) and per-body ``vertebrae``.
    cfg : MorphometryConfig
        From :func:`load_morphometry_config`.
    canal_image : Volume, optional
        A fluid-sensitive image (T2, STIR) for the CSF column, on the same grid as ``image`` (resampled onto it
        with the DICOM geometry otherwise). Without it, canal compromise is not assessable.

    Returns
    -------
    tuple of VertebraMorphometry
        One per entry of ``segmentation.vertebrae``, same order. Heights in mm, percentages 0-100, landmarks in
        LPS mm (``anterior_superior``, ``anterior_inferior``, ``middle_superior``, ``middle_inferior``,
        ``posterior_superior``, ``posterior_inferior`` and, when the wall bulges, ``posterior_wall_apex``).

    Raises
    ------
    InputError
        The label map is not on the image grid.
    """
    labels = segmentation.labels
    if not labels.same_grid(image):
        raise InputError(
            f"series {segmentation.series_uid}: label map grid {labels.shape} does not match the image grid "
            f"{image.shape}; segment the anatomy series that is measured"
        )
    if canal_image is not None and not canal_image.same_grid(image):
        logger.info("series %s: resampling the canal image onto the anatomy grid", segmentation.series_uid)
        canal_image = canal_image.resample_like(image, linear=True)

    plane, plane_problem = _sagittal_plane(image, cfg)
    results: dict[int, VertebraMorphometry] = {}
    bodies: list[_Body] = []
    lab_arr = np.asarray(labels.array)
    up_dirs = _column_directions(segmentation, lab_arr, plane) if plane is not None else []
    objects = ndimage.find_objects(lab_arr.astype(np.int64, copy=False)) if lab_arr.size else []
    for i, vs in enumerate(segmentation.vertebrae):
        if vs.is_sacrum:
            results[i] = _not_assessable(vs, "sacrum: not a morphometry target")
            continue
        if plane is None:
            results[i] = _not_assessable(vs, plane_problem)
            continue
        sl = objects[vs.label - 1] if 0 < vs.label <= len(objects) else None
        if sl is None:
            results[i] = _not_assessable(vs, f"label {vs.label} is not present in the label map")
            continue
        body = _measure_body(i, vs, lab_arr, sl, plane, up_dirs[i], cfg)
        if isinstance(body, str):
            results[i] = _not_assessable(vs, body)
        else:
            bodies.append(body)

    refs, normal = _references(bodies, cfg)
    canal = _canal_diameters(bodies, normal, lab_arr, canal_image, plane, cfg) if plane is not None else {}
    for b in bodies:
        assert plane is not None
        results[b.index] = _assemble(b, refs[b.index], normal, bodies, canal, image, plane, cfg, canal_image)
    return tuple(results[i] for i in range(len(segmentation.vertebrae)))


# --------------------------------------------------------------------------- geometry of the plane
def _sagittal_plane(image: Volume, cfg: MorphometryConfig) -> tuple[_Plane | None, str]:
    axes = image.axes_lps
    obliquity = math.degrees(math.acos(min(1.0, abs(float(axes[0] @ _LEFT_LPS)))))
    if obliquity > cfg.max_slice_obliquity_deg:
        return None, (
            f"the image is not sagittal (slice normal {obliquity:.0f} deg from left-right, limit "
            f"{cfg.max_slice_obliquity_deg:.0f} deg); morphometry needs a sagittal series"
        )
    sup = np.array([axes[1] @ _SUPERIOR_LPS, axes[2] @ _SUPERIOR_LPS])
    ant = np.array([axes[1] @ _ANTERIOR_LPS, axes[2] @ _ANTERIOR_LPS])
    if np.linalg.norm(sup) < 0.5 or np.linalg.norm(ant) < 0.5:
        return None, "the image plane does not contain the head-feet and front-back directions"
    sup = sup / np.linalg.norm(sup)
    ant = ant - (ant @ sup) * sup
    ant = ant / np.linalg.norm(ant)
    return _Plane(np.array(image.spacing_mm[1:], dtype=float), float(image.spacing_mm[0]), sup, ant), ""


def _column_directions(segmentation: SegmentationResult, lab_arr: np.ndarray, plane: _Plane) -> list[np.ndarray]:
    """Per vertebra, the local direction of the column towards the head in (row_mm, col_mm).

    From the in-plane centroids of the bodies listed before and after it (the sacrum included), so that bodies
    tilted by the curve of the spine (even 45 degrees at L5) get the right height axis; the patient's superior
    direction where a body has no neighbour.
    """
    labels = [v.label for v in segmentation.vertebrae]
    present = [lab for lab in labels if 0 < lab <= lab_arr.max()]
    coms = ndimage.center_of_mass(np.ones_like(lab_arr, dtype=np.uint8), lab_arr, present) if present else []
    centre: dict[int, np.ndarray] = {}
    for lab, com in zip(present, coms, strict=True):
        if np.all(np.isfinite(com)):
            centre[lab] = np.asarray(com[1:], dtype=float) * plane.spacing_rc
    out = []
    for i, lab in enumerate(labels):
        prev = centre.get(labels[i - 1]) if i > 0 else None
        nxt = centre.get(labels[i + 1]) if i + 1 < len(labels) else None
        own = centre.get(lab)
        d = None
        if prev is not None and nxt is not None:
            d = prev - nxt
        elif own is not None and prev is not None:
            d = prev - own
        elif own is not None and nxt is not None:
            d = own - nxt
        if d is None or np.linalg.norm(d) < 1e-6 or d @ plane.superior <= 0:
            out.append(plane.superior)
        else:
            out.append(d / np.linalg.norm(d))
    return out


def _crossings(poly: np.ndarray, a0: float, axis: int) -> np.ndarray:
    """Values of the other coordinate where the closed polygon ``poly`` (N, 2) crosses ``coord[axis] == a0``."""
    a = poly[:, axis] - a0
    b = poly[:, 1 - axis]
    a = np.where(a == 0.0, 1e-12, a)
    a0_, a1_ = a[:-1], a[1:]
    hit = (a0_ * a1_) < 0
    if not np.any(hit):
        return np.empty(0)
    t = a0_[hit] / (a0_[hit] - a1_[hit])
    return b[:-1][hit] + t * (b[1:][hit] - b[:-1][hit])


def _extent(poly_uv: np.ndarray, u0: float, half_band: float, n: int = 5) -> tuple[float, float] | None:
    """Mean (inferior, superior) outer edges along v of the body at ``u = u0`` over ``u0 +- half_band``."""
    lows, highs = [], []
    offsets = np.linspace(-half_band, half_band, n) if half_band > 0 else np.zeros(1)
    for du in offsets:
        c = _crossings(poly_uv, u0 + du, axis=0)
        if c.size >= 2:
            lows.append(c.min())
            highs.append(c.max())
    if not lows:
        return None
    return float(np.mean(lows)), float(np.mean(highs))


def _min_area_rectangle_axes(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit side directions of the minimum-area bounding rectangle of ``points`` (N, 2)."""
    try:
        hull = points[ConvexHull(points).vertices]
    except QhullError:
        hull = points
    edges = np.diff(np.vstack([hull, hull[:1]]), axis=0)
    lengths = np.linalg.norm(edges, axis=1)
    edges = edges[lengths > 1e-9] / lengths[lengths > 1e-9, None]
    best, best_area = edges[0], np.inf
    for e in edges:
        n = np.array([-e[1], e[0]])
        pe, pn = hull @ e, hull @ n
        area = (pe.max() - pe.min()) * (pn.max() - pn.min())
        if area < best_area - 1e-9:
            best, best_area = e, area
    return best, np.array([-best[1], best[0]])


def _section_contour(mask: np.ndarray, spacing_rc: np.ndarray, smoothing_mm: float) -> tuple[np.ndarray, int]:
    """Outer 0.5 iso-contour (N, 2) in mm of the largest component of ``mask`` and the number of components."""
    lab, n = ndimage.label(mask)
    if n > 1:
        sizes = ndimage.sum_labels(mask, lab, index=np.arange(1, n + 1))
        keep = lab == (int(np.argmax(sizes)) + 1)
        n_big = int(np.sum(sizes >= 0.2 * sizes.max()))
    else:
        keep = lab == 1
        n_big = n
    keep = ndimage.binary_fill_holes(keep)
    field_ = np.pad(keep, 2).astype(float)
    if smoothing_mm > 0:
        field_ = ndimage.gaussian_filter(field_, sigma=smoothing_mm / spacing_rc)
    contours = measure.find_contours(field_, 0.5)
    if not contours:
        return np.empty((0, 2)), n_big
    c = max(contours, key=lambda p: abs(_polygon_area(p)))
    if not np.allclose(c[0], c[-1]):
        c = np.vstack([c, c[:1]])
    return (c - 2.0) * spacing_rc, n_big


def _polygon_area(p: np.ndarray) -> float:
    x, y = p[:, 0], p[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def _edge_profiles(puv: np.ndarray, lo: float, hi: float, axis: int, n: int = 25) -> tuple[np.ndarray, ...]:
    """Outer edges of the contour crossed by lines ``coord[axis] = c`` for ``c`` in ``[lo, hi]``.

    Returns ``(c, low, high)`` arrays for the lines that cross the contour at least twice.
    """
    cs, lows, highs = [], [], []
    for c0 in np.linspace(lo, hi, n):
        x = _crossings(puv, float(c0), axis=axis)
        if x.size >= 2:
            cs.append(c0)
            lows.append(x.min())
            highs.append(x.max())
    return np.asarray(cs), np.asarray(lows), np.asarray(highs)


def _measure_section(
    mask: np.ndarray, slice_index: int, plane: _Plane, up: np.ndarray, cfg: MorphometryConfig
) -> _Section | str:
    """Six-point morphometry of one sagittal section; a string is the reason it could not be measured.

    ``up`` is a unit (row_mm, col_mm) vector roughly along the local column towards the head; it only picks
    which side of the bounding rectangle is the height axis.
    """
    contour, n_comp = _section_contour(mask, plane.spacing_rc, cfg.contour_smoothing_mm)
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
    max_shear = math.tan(math.radians(cfg.max_wall_lean_deg))
    max_disagree = math.radians(cfg.max_wall_disagreement_deg)
    shear, theta = 0.0, 0.0
    for _ in range(30):
        puv = np.column_stack([pts @ u, pts @ v])
        # Walls: anterior / posterior edges on the central part of the height (at the middle of the depth).
        mid_u = 0.5 * (puv[:, 0].min() + puv[:, 0].max())
        vm = _crossings(puv, mid_u, axis=0)
        if vm.size < 2:
            return "body contour too irregular to find its walls"
        h_mid = vm.max() - vm.min()
        vv, post, ant = _edge_profiles(puv, vm.min() + margin * h_mid, vm.max() - margin * h_mid, axis=1)
        if vv.size < 5:
            return "body contour too irregular to find its walls"
        lean_ant, lean_post = math.atan(np.polyfit(vv, ant, 1)[0]), math.atan(np.polyfit(vv, post, 1)[0])
        if abs(lean_ant - lean_post) > max_disagree:
            shear = 0.0  # walls not parallel (irregular or trapezoid section): chords perpendicular to endplates
        else:
            shear = float(np.clip(math.tan(0.5 * (lean_ant + lean_post)), -max_shear, max_shear))
        u_ant = float(np.median(ant - shear * vv))
        u_post = float(np.median(post - shear * vv))
        depth = u_ant - u_post
        if depth <= 0:
            return "body contour too irregular to find its walls"
        # Endplates: outer superior / inferior edges on the central part of the depth.
        v_c = 0.5 * (vm.min() + vm.max())
        uu, bot, top = _edge_profiles(
            puv, u_post + margin * depth + shear * v_c, u_ant - margin * depth + shear * v_c, axis=0
        )
        if uu.size < 5:
            return "body contour too irregular to find its endplates"
        theta = 0.5 * (math.atan(np.polyfit(uu, top, 1)[0]) + math.atan(np.polyfit(uu, bot, 1)[0]))
        if abs(theta) < 1e-5:
            break
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
    return _Section(
        slice_index=slice_index,
        area_mm2=area,
        n_components=n_comp,
        contour=contour,
        centre=centre,
        u=u,
        v=v,
        shear=shear,
        u_post=u_post,
        u_ant=u_ant,
        chords=chords,
        wedge_angle_deg=wedge,
    )


def _measure_section_at(
    lab_arr: np.ndarray, label: int, s: int, plane: _Plane, up: np.ndarray, cfg: MorphometryConfig
) -> _Section | str:
    """Measure section ``s`` of body ``label``; reasons name the slice."""
    mask = lab_arr[s] == label
    if not mask.any():
        return f"no voxels of the body on slice {s}"
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    edges = []
    if rows[0] == 0:
        edges.append("first row")
    if rows[-1] == mask.shape[0] - 1:
        edges.append("last row")
    if cols[0] == 0:
        edges.append("first column")
    if cols[-1] == mask.shape[1] - 1:
        edges.append("last column")
    if edges:
        return f"cut by the field of view: the body touches the image edge ({', '.join(edges)}) on slice {s}"
    r0, r1 = max(0, rows[0] - 1), min(mask.shape[0], rows[-1] + 2)
    c0, c1 = max(0, cols[0] - 1), min(mask.shape[1], cols[-1] + 2)
    sec = _measure_section(mask[r0:r1, c0:c1], s, plane, up, cfg)
    if isinstance(sec, str):
        return f"{sec} (slice {s})"
    offset = np.array([r0, c0], dtype=float) * plane.spacing_rc
    return replace(sec, contour=sec.contour + offset, centre=sec.centre + offset)


def _measure_body(
    index: int,
    vs: VertebraSeg,
    lab_arr: np.ndarray,
    sl: tuple[slice, slice, slice],
    plane: _Plane,
    up: np.ndarray,
    cfg: MorphometryConfig,
) -> _Body | str:
    """Choose the mid-sagittal section of one body (largest area near ``mid_slice``) and measure it and its
    neighbouring slices. A string is the reason the body is not assessable."""
    n_slices = lab_arr.shape[0]
    s_lo, s_hi = int(sl[0].start), int(sl[0].stop)
    mid = min(max(int(vs.mid_slice), s_lo), s_hi - 1)
    k = round(cfg.slice_search_mm / plane.slice_mm)
    block = lab_arr[s_lo:s_hi, sl[1], sl[2]] == vs.label
    areas_all = block.reshape(block.shape[0], -1).sum(axis=1)
    cand = [s for s in range(max(s_lo, mid - k), min(s_hi, mid + k + 1))]
    best = max(cand, key=lambda s: (areas_all[s - s_lo], -abs(s - mid)))
    best_area = int(areas_all[best - s_lo])
    if best_area == 0:
        return f"no voxels of the body within {cfg.slice_search_mm:g} mm of its mid-sagittal slice {vs.mid_slice}"
    if best in (0, n_slices - 1):
        return (
            f"cut by the field of view: the largest section is on the {'first' if best == 0 else 'last'} slice, "
            "so the body's mid-sagittal plane may lie outside the scan"
        )
    sec = _measure_section_at(lab_arr, vs.label, best, plane, up, cfg)
    if isinstance(sec, str):
        return sec
    kn = max(1, round(cfg.neighbour_slice_mm / plane.slice_mm))
    neigh: list[_Section] = []
    for s in range(best - kn, best + kn + 1):
        if s == best or not (s_lo <= s < s_hi):
            continue
        if areas_all[s - s_lo] < cfg.neighbour_min_area_fraction * best_area:
            continue
        ns = _measure_section_at(lab_arr, vs.label, s, plane, up, cfg)
        if isinstance(ns, str):
            logger.debug("label %d: neighbour slice skipped: %s", vs.label, ns)
            continue
        neigh.append(ns)
    slab = [sec] + [n for n in neigh if abs(n.slice_index - best) * plane.slice_mm <= cfg.height_slab_mm + 1e-6]
    heights = Heights(
        anterior_mm=float(np.mean([x.heights.anterior_mm for x in slab])),
        middle_mm=float(np.mean([x.heights.middle_mm for x in slab])),
        posterior_mm=float(np.mean([x.heights.posterior_mm for x in slab])),
    )
    return _Body(
        index=index, seg=vs, mid=sec, neighbours=tuple(neigh), heights=heights,
        slab=tuple(sorted(x.slice_index for x in slab)),
    )


# --------------------------------------------------------------------------- reference height
def _positions(bodies: list[_Body]) -> dict[int, float]:
    """Position along the column: level ordinal when every body has a level, else its order in the result."""
    if bodies and all(b.seg.level is not None for b in bodies):
        return {b.index: float(b.seg.level.ordinal) for b in bodies}  # type: ignore[union-attr]
    return {b.index: float(b.index) for b in bodies}


def _name(b: _Body) -> str:
    return b.seg.level.value if isinstance(b.seg.level, Level) else f"label {b.seg.label}"


def _min_height(h: Heights) -> float:
    return min(h.anterior_mm, h.middle_mm, h.posterior_mm)


def _reference_from(
    b: _Body, normal: set[int], by_index: dict[int, _Body], pos: dict[int, float], cfg: MorphometryConfig
) -> _Reference:
    p = pos[b.index]
    others = [j for j in normal if j != b.index and abs(pos[j] - p) <= cfg.max_reference_gap_levels]
    above = sorted((j for j in others if pos[j] < p), key=lambda j: p - pos[j])
    below = sorted((j for j in others if pos[j] > p), key=lambda j: pos[j] - p)
    hp = {j: by_index[j].heights.posterior_mm for j in others}
    if above and below:
        a, c = above[0], below[0]
        w = (p - pos[a]) / (pos[c] - pos[a])
        ref = (1.0 - w) * hp[a] + w * hp[c]
        return _Reference(
            ref,
            f"interpolated between the posterior heights of the nearest normal bodies {_name(by_index[a])} and "
            f"{_name(by_index[c])}",
            (by_index[a].seg.label, by_index[c].seg.label),
            False,
        )
    side = above or below
    if side:
        near = side[0]
        used = side[: cfg.trend_neighbours]
        if len(used) >= 2:
            x = np.array([pos[j] for j in used])
            y = np.log([hp[j] for j in used])
            slope = float(np.polyfit(x, y, 1)[0])
            bound = math.log1p(cfg.max_growth_per_level_pct / 100.0)
            slope = min(bound, max(-bound, slope))
            ref = hp[near] * math.exp(slope * (p - pos[near]))
            names = ", ".join(_name(by_index[j]) for j in used)
            return _Reference(
                ref,
                f"extrapolated from the posterior heights of the nearest normal bodies {names} "
                f"(trend {100.0 * math.expm1(slope):+.1f} % per level)",
                tuple(by_index[j].seg.label for j in used),
                False,
            )
        return _Reference(
            hp[near],
            f"posterior height of the only nearby normal body {_name(by_index[near])} (no level scaling)",
            (by_index[near].seg.label,),
            False,
        )
    return _Reference(
        b.heights.posterior_mm,
        f"own posterior height: no normal body within {cfg.max_reference_gap_levels} levels "
        "(uniform collapse cannot be detected)",
        (),
        True,
    )


def _own_ratios_normal(b: _Body, cfg: MorphometryConfig) -> bool:
    h = b.heights
    return (
        h.anterior_mm / h.posterior_mm >= cfg.wedge_ratio_max
        and h.middle_mm / h.posterior_mm >= cfg.biconcave_ratio_max
    )


def _references(bodies: list[_Body], cfg: MorphometryConfig) -> tuple[dict[int, _Reference], set[int]]:
    """Expected height of every body and the final set of normal bodies (indices)."""
    by_index = {b.index: b for b in bodies}
    pos = _positions(bodies)
    normal = {b.index for b in bodies if _own_ratios_normal(b, cfg)}
    mild = 1.0 - cfg.genant_mild_pct / 100.0
    while True:
        worst, worst_ratio = None, math.inf
        for j in normal:
            r = _reference_from(by_index[j], normal, by_index, pos, cfg)
            if r.own:
                continue
            h = by_index[j].heights
            ratio = min(_min_height(h) / r.height_mm / mild, h.posterior_mm / r.height_mm / cfg.crush_ratio_max)
            if ratio < 1.0 and ratio < worst_ratio:
                worst, worst_ratio = j, ratio
        if worst is None:
            break
        normal.discard(worst)
    refs = {b.index: _reference_from(b, normal, by_index, pos, cfg) for b in bodies}
    return refs, normal


def _grade(loss_pct: float, cfg: MorphometryConfig) -> int:
    if loss_pct >= cfg.genant_severe_pct:
        return 3
    if loss_pct >= cfg.genant_moderate_pct:
        return 2
    if loss_pct >= cfg.genant_mild_pct:
        return 1
    return 0


def _loss_pct(h: Heights, ref_mm: float) -> float:
    return max(0.0, 100.0 * (1.0 - _min_height(h) / ref_mm))


def _classify(h: Heights, ref_mm: float, grade: int, cfg: MorphometryConfig) -> tuple[Morphology, dict[str, float]]:
    ratios = {
        "ha_hp": h.anterior_mm / h.posterior_mm,
        "hm_hp": h.middle_mm / h.posterior_mm,
        "hp_ref": h.posterior_mm / ref_mm,
    }
    patterns = (
        (ratios["ha_hp"] / cfg.wedge_ratio_max, Morphology.WEDGE),
        (ratios["hm_hp"] / cfg.biconcave_ratio_max, Morphology.BICONCAVE),
        (ratios["hp_ref"] / cfg.crush_ratio_max, Morphology.CRUSH),
    )
    score, pattern = min(patterns, key=lambda t: t[0])
    return (pattern if (score < 1.0 or grade >= 1) else Morphology.NORMAL), ratios


# --------------------------------------------------------------------------- posterior wall and canal
def _posterior_wall(sec: _Section, cfg: MorphometryConfig) -> _Wall | str:
    """Bulge of the posterior edge beyond the line joining the posterior corners (mm, >= 0)."""
    pts = sec.contour - sec.centre
    puv = np.column_stack([pts @ sec.u, pts @ sec.v])
    _, v_bot, v_top = sec.chords["posterior"]
    hp = v_top - v_bot
    lo, hi = v_bot + cfg.wall_corner_inset_fraction * hp, v_top - cfg.wall_corner_inset_fraction * hp
    vs = np.linspace(lo, hi, 41)
    edge = np.empty_like(vs)
    for k, v0 in enumerate(vs):
        c = _crossings(puv, float(v0), axis=1)
        if c.size < 2:
            return "posterior wall not traceable on the body contour"
        edge[k] = c.min()
    edge = np.convolve(np.pad(edge, 1, mode="edge"), np.ones(3) / 3.0, mode="valid")  # tame the pixel staircase
    line = edge[0] + (vs - vs[0]) * (edge[-1] - edge[0]) / (vs[-1] - vs[0])
    # u points anterior: a wall point posterior of the corner line (smaller u) bulges into the canal.
    dist = (line - edge) * math.cos(math.atan2(edge[-1] - edge[0], vs[-1] - vs[0]))
    k = int(np.argmax(dist))
    return _Wall(
        bulge_mm=max(0.0, float(dist[k])),
        apex=sec.to_plane(float(edge[k]), float(vs[k])),
        wall_mid=sec.to_plane(float(edge[len(vs) // 2]), float(vs[len(vs) // 2])),
    )


def _canal_diameter(
    canal: np.ndarray, lab_slice: np.ndarray, label: int, sec: _Section, wall: _Wall, plane: _Plane,
    cfg: MorphometryConfig,
) -> float | str:
    """AP extent (mm) of the bright CSF column behind the body, along the body's AP axis."""
    body = ndimage.binary_erosion(lab_slice == label, iterations=2)
    if body.sum() < 10:
        body = lab_slice == label
    marrow = float(np.median(canal[body]))
    step = 0.25
    t = np.arange(0.0, cfg.canal_search_mm + step / 2, step)
    pts = wall.wall_mid[None, :] - t[:, None] * sec.u[None, :]
    idx = pts / plane.spacing_rc
    prof = ndimage.map_coordinates(canal.astype(float), idx.T, order=1, mode="constant", cval=np.nan)
    inside = np.isfinite(prof)
    if not inside.all():
        n_in = int(np.argmin(inside)) if inside[0] else 0
        prof = prof[:n_in]
        t = t[:n_in]
        if t.size == 0 or t[-1] < cfg.canal_min_mm:
            return "the canal behind the body is outside the image"
    win = max(1, round(1.0 / step))
    peak = float(np.max(np.convolve(prof, np.ones(win) / win, mode="valid")))
    if not marrow > 0 or peak < cfg.csf_min_contrast_ratio * marrow:
        return (
            f"no CSF signal behind the body (peak / marrow {peak / marrow if marrow > 0 else float('nan'):.2f} < "
            f"{cfg.csf_min_contrast_ratio:g}); the canal image may not be fluid-sensitive"
        )
    thr = 0.5 * (marrow + peak)
    bright = prof >= thr
    first = int(np.argmax(bright))
    if t[first] > cfg.canal_start_tolerance_mm:
        return f"the CSF column does not start at the posterior wall (first CSF {t[first]:.1f} mm behind it)"
    last, gap = first, 0.0
    for i in range(first, len(prof)):
        if bright[i]:
            last, gap = i, 0.0
        else:
            gap += step
            if gap > cfg.canal_max_gap_mm:
                break
    else:
        if last >= len(prof) - 1:
            return f"the posterior end of the CSF column was not found within {t[-1]:.0f} mm"

    def _cross(i0: int, i1: int) -> float:
        p0, p1 = prof[i0], prof[i1]
        return float(t[i0] + (thr - p0) / (p1 - p0) * (t[i1] - t[i0])) if p1 != p0 else float(t[i0])

    start = _cross(first - 1, first) if first > 0 else 0.0
    end = _cross(last, last + 1) if last + 1 < len(prof) else float(t[last])
    diameter = end - start
    if diameter < cfg.canal_min_mm:
        return f"CSF column behind the body too thin to measure ({diameter:.1f} mm)"
    return diameter


def _canal_diameters(
    bodies: list[_Body],
    normal: set[int],
    lab_arr: np.ndarray,
    canal_image: Volume | None,
    plane: _Plane,
    cfg: MorphometryConfig,
) -> dict[int, float | str]:
    """Canal AP diameter behind each normal body (index -> mm, or the reason it was not measured)."""
    out: dict[int, float | str] = {}
    if canal_image is None:
        return out
    arr = np.asarray(canal_image.array)
    for b in bodies:
        if b.index not in normal:
            continue
        wall = _posterior_wall(b.mid, cfg)
        if isinstance(wall, str):
            out[b.index] = wall
            continue
        s = b.mid.slice_index
        out[b.index] = _canal_diameter(arr[s], lab_arr[s], b.seg.label, b.mid, wall, plane, cfg)
    return out


def _expected_canal(
    b: _Body, canal: dict[int, float | str], bodies: list[_Body], cfg: MorphometryConfig
) -> tuple[float, tuple[str, ...]] | str:
    pos = _positions(bodies)
    p = pos[b.index]
    by_index = {x.index: x for x in bodies}
    ok = {j: d for j, d in canal.items() if isinstance(d, float) and j != b.index}
    near = [j for j in ok if abs(pos[j] - p) <= cfg.max_reference_gap_levels]
    if not near:
        reasons = sorted({d for d in canal.values() if isinstance(d, str)})
        why = f" ({reasons[0]})" if reasons else ""
        return f"expected canal diameter not measurable behind any normal body within " \
               f"{cfg.max_reference_gap_levels} levels{why}"
    above = sorted((j for j in near if pos[j] < p), key=lambda j: p - pos[j])
    below = sorted((j for j in near if pos[j] > p), key=lambda j: pos[j] - p)
    if above and below:
        a, c = above[0], below[0]
        w = (p - pos[a]) / (pos[c] - pos[a])
        return (1.0 - w) * ok[a] + w * ok[c], (_name(by_index[a]), _name(by_index[c]))
    j = (above or below)[0]
    return ok[j], (_name(by_index[j]),)


# --------------------------------------------------------------------------- assembling results
def _not_assessable(vs: VertebraSeg, reason: str) -> VertebraMorphometry:
    return VertebraMorphometry(
        label=vs.label,
        level=vs.level,
        assessable=False,
        reason=reason,
        posterior_wall=PosteriorWall(False, f"body not assessable: {reason}"),
    )


def _to_lps(p: np.ndarray, s: int, plane: _Plane, image: Volume) -> Vec3:
    idx = np.array([float(s), p[0] / plane.spacing_rc[0], p[1] / plane.spacing_rc[1]])
    x = image.index_to_lps(idx)
    return (float(x[0]), float(x[1]), float(x[2]))


def _assemble(
    b: _Body,
    ref: _Reference,
    normal: set[int],
    bodies: list[_Body],
    canal: dict[int, float | str],
    image: Volume,
    plane: _Plane,
    cfg: MorphometryConfig,
    canal_image: Volume | None,
) -> VertebraMorphometry:
    vs, sec = b.seg, b.mid
    h = b.heights
    losses = [_loss_pct(s.heights, ref.height_mm) for s in (sec, *b.neighbours)]
    spread = max(losses) - min(losses)
    slices = sorted(s.slice_index for s in (sec, *b.neighbours))
    if spread >= cfg.spread_not_assessable_pct:
        return _not_assessable(
            vs,
            f"neighbouring sagittal slices disagree: height loss {min(losses):.0f}-{max(losses):.0f} % on slices "
            f"{slices[0]}-{slices[-1]} (spread {spread:.0f} points >= {cfg.spread_not_assessable_pct:g})",
        )
    loss = _loss_pct(h, ref.height_mm)
    grade = _grade(loss, cfg)
    morph, ratios = _classify(h, ref.height_mm, grade, cfg)

    notes: list[str] = []
    confidence = min(1.0, max(0.0, float(vs.quality)))
    if not b.neighbours:
        notes.append("no neighbouring slice could be measured (no robustness check)")
        confidence *= 0.9
    elif spread >= cfg.spread_low_confidence_pct:
        notes.append(f"neighbouring slices disagree by {spread:.0f} points")
        confidence *= 0.6
    if ref.own:
        notes.append("reference is the body's own posterior height")
        confidence *= 0.8
    elif len(ref.labels) and not ref.method.startswith("interpolated"):
        notes.append("reference from normal bodies on one side only")
        confidence *= 0.9
    if sec.n_components > 1:
        notes.append("the body's section has several large parts; the largest was measured")
        confidence *= 0.8

    landmarks: dict[str, Vec3] = {}
    for name, (u0, v_lo, v_hi) in sec.chords.items():
        landmarks[f"{name}_superior"] = _to_lps(sec.chord_point(u0, v_hi), sec.slice_index, plane, image)
        landmarks[f"{name}_inferior"] = _to_lps(sec.chord_point(u0, v_lo), sec.slice_index, plane, image)

    wall_result = _posterior_wall(sec, cfg)
    if isinstance(wall_result, str):
        pw = PosteriorWall(False, wall_result)
    else:
        if wall_result.bulge_mm > 0:
            landmarks["posterior_wall_apex"] = _to_lps(wall_result.apex, sec.slice_index, plane, image)
        bulge = round(wall_result.bulge_mm, 2)
        if canal_image is None:
            pw = PosteriorWall(
                False,
                f"canal compromise not assessable: no T2/STIR image for the CSF column (bulge {bulge:.1f} mm)",
                bulge_mm=bulge,
            )
        else:
            exp = _expected_canal(b, canal, bodies, cfg)
            if isinstance(exp, str):
                pw = PosteriorWall(False, f"canal compromise not assessable: {exp} (bulge {bulge:.1f} mm)",
                                   bulge_mm=bulge)
            else:
                exp_mm, where = exp
                pw = PosteriorWall(
                    True,
                    f"bulge beyond the line through the posterior corners; expected canal = AP extent of the CSF "
                    f"column behind {', '.join(where)}",
                    bulge_mm=bulge,
                    canal_compromise_pct=round(100.0 * wall_result.bulge_mm / exp_mm, 1),
                    expected_canal_mm=round(exp_mm, 2),
                )

    tilt = math.degrees(math.atan2(float(sec.u @ plane.superior), float(sec.u @ plane.anterior)))
    reason = (
        f"six-point morphometry on slice {sec.slice_index} (body axis tilted {tilt:+.1f} deg)"
        + (f", checked on slices {', '.join(str(s.slice_index) for s in b.neighbours)}" if b.neighbours else "")
        + ("; " + "; ".join(notes) if notes else "")
    )
    return VertebraMorphometry(
        label=vs.label,
        level=vs.level,
        assessable=True,
        reason=reason,
        heights=Heights(round(h.anterior_mm, 2), round(h.middle_mm, 2), round(h.posterior_mm, 2)),
        reference_height_mm=round(ref.height_mm, 2),
        reference_method=ref.method,
        reference_labels=ref.labels,
        height_loss_pct=round(loss, 1),
        genant_grade=grade,
        morphology=morph,
        wedge_angle_deg=round(sec.wedge_angle_deg, 1),
        ratios={k: round(v, 3) for k, v in ratios.items()},
        landmarks_lps=landmarks,
        posterior_wall=pw,
        slice_spread_pct=round(spread, 1),
        confidence=round(confidence, 2),
        measured_slice=sec.slice_index,
        ap_depth_mm=round(sec.depth_mm, 2),
        used_as_reference=b.index in normal,
    )
