"""Assemble the whole synthetic patient from a :class:`PhantomSpec`: column, canal, posterior elements,
soft tissue, and the sagittal field of view.

Everything lives in DICOM patient coordinates (LPS mm). The column lies in the sagittal plane
``x = x0`` (a few mm off the slab centre), bodies are chained from the sacrum (see
:mod:`pipeline.tools.phantom.column`), and the chain is then rotated so that the line from the most cranial
labelled body to S1 leans a few degrees (upper end posterior), as on a supine scan.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline.errors import ConfigError
from pipeline.levels import Level
from pipeline.model import EdemaPattern, Morphology
from pipeline.tools.phantom.anomalies import (
    apply_slips,
    modic_bands,
    schmorl_notches,
    schmorl_painters,
    scoliosis_shift,
)
from pipeline.tools.phantom.body import BodyDims, BodyShape, Deformation, solve_deformation
from pipeline.tools.phantom.canal import CANAL_TABLE, CanalPainter, build_canal
from pipeline.tools.phantom.column import (
    EdemaModel,
    Frame2D,
    PlacedBody,
    PlacedDisc,
    fine_samples,
    place_by_superior_rim,
    stack_down,
    stack_up,
)
from pipeline.tools.phantom.findings import FractureSpec
from pipeline.tools.phantom.posterior import posterior_elements, sacral_posterior
from pipeline.tools.phantom.primitives import Painter, smooth_noise_3d
from pipeline.tools.phantom.soft import ColumnProfile, build_soft_tissue, pelvic_anatomy
from pipeline.tools.phantom.spec import PhantomSpec
from pipeline.tools.phantom.tissues import Tissue

# Mean adult dimensions (mm): posterior rim height, Ha/Hp ratio, AP depth, width.
# Thoracic bodies are slightly wedged (kyphosis), L5 is taller anteriorly (lordosis).
_BODY_TABLE: dict[str, tuple[float, float, float, float]] = {
    "T1": (15.5, 0.95, 17.0, 27.0),
    "T2": (16.5, 0.94, 18.0, 27.0),
    "T3": (17.0, 0.93, 19.5, 27.5),
    "T4": (17.5, 0.92, 21.0, 28.0),
    "T5": (18.0, 0.92, 22.5, 29.0),
    "T6": (18.8, 0.92, 24.0, 30.5),
    "T7": (19.5, 0.92, 25.0, 32.0),
    "T8": (20.2, 0.92, 26.0, 33.5),
    "T9": (20.8, 0.93, 27.0, 35.5),
    "T10": (21.5, 0.93, 28.0, 38.0),
    "T11": (22.5, 0.94, 29.0, 40.0),
    "T12": (23.5, 0.95, 30.5, 42.0),
    "L1": (24.5, 0.97, 32.0, 44.0),
    "L2": (25.3, 0.99, 33.0, 46.0),
    "L3": (25.8, 1.00, 34.0, 48.0),
    "L4": (25.8, 1.01, 34.0, 49.5),
    "L5": (24.8, 1.08, 33.0, 50.0),
}
# Disc below each level: (posterior, anterior) height in mm.
_DISC_TABLE: dict[str, tuple[float, float]] = {
    **{f"T{i}": (3.8, 4.4) for i in range(1, 10)},
    "T10": (4.2, 4.8),
    "T11": (4.5, 5.4),
    "T12": (5.0, 6.4),
    "L1": (6.0, 8.6),
    "L2": (6.6, 10.0),
    "L3": (7.0, 11.4),
    "L4": (7.4, 12.4),
    "L5": (6.6, 12.6),
}
_SACRAL = ("S2", "S3", "S4", "S5", "Co1", "Co2")


@dataclass
class SagittalGeometry:
    """The sagittal series grid (shared by T1, T2, STIR and the label map)."""

    origin_lps: tuple[float, float, float]
    axes_lps: np.ndarray  # (3, 3): slice -> patient right, row -> feet, col -> posterior
    spacing_mm: tuple[float, float, float]
    shape: tuple[int, int, int]


@dataclass
class Anatomy:
    """The assembled phantom patient."""

    spec: PhantomSpec
    x0: float
    bodies: dict[str, PlacedBody]  # every built body by name (T9, L1, S1, S2, Co1, ...)
    labelled: list[PlacedBody]  # cranial -> caudal, label = index + 1
    discs: list[PlacedDisc]
    canal: CanalPainter
    painters: list[Painter]  # in paint order
    grid: SagittalGeometry
    canal_ap_mm: dict[str, float]  # expected bony canal AP diameter per level
    profile: ColumnProfile
    partial_levels: list[str] = field(default_factory=list)  # visible but unlabelled bodies
    slips: list[dict[str, Any]] = field(default_factory=list)  # spondylolisthesis truth


def _rngs(seed: int) -> dict[str, np.random.Generator]:
    # streams are appended, never inserted: SeedSequence children keep their keys, so the classic anatomy
    # draws the same numbers whatever is added for the opt-in features
    names = ("column", "soft", "bowel", "texture", "noise", "fov", "lesions", "discs", "pelvis", "modic")
    children = np.random.SeedSequence([seed, 0x5B1E]).spawn(len(names))
    return {n: np.random.default_rng(c) for n, c in zip(names, children, strict=True)}


def build_anatomy(spec: PhantomSpec) -> Anatomy:
    """Build the geometric model of the patient described by ``spec`` (no pixels yet)."""
    rng = _rngs(spec.seed)
    rc = rng["column"]
    k_size = rc.uniform(0.94, 1.06)
    k_canal = rc.uniform(0.92, 1.08)
    sacral_slope = math.radians(rc.uniform(33.0, 44.0))
    chord_tilt = math.radians(rc.uniform(2.0, 7.0))
    x0 = float(rc.uniform(-2.5, 2.5))

    # two bodies above the labelled range (for the top of the image), and always T10 and below (soft tissue
    # landmarks such as the diaphragm, crura and psoas are placed relative to T10..L5)
    top_build = min(spec.top_level.offset(-2) or Level.T1, Level.T10, key=lambda lv: lv.ordinal)
    chain = [lv.value for lv in Level if top_build.ordinal <= lv.ordinal <= Level.L5.ordinal]

    # ---- body shapes (random draws happen for every level, fractured or not, so a fracture never
    # changes the rest of the patient)
    dims: dict[str, BodyDims] = {}
    for name in chain:
        hp, ratio, depth, width = _BODY_TABLE[name]
        j = rc.uniform(0.97, 1.03, size=3)
        thoracic = name.startswith("T")
        conc = rc.uniform(0.4, 0.8, size=2) if thoracic else rc.uniform(0.5, 1.0, size=2)
        hp_ = hp * k_size * j[0]
        dims[name] = BodyDims(
            depth_mm=depth * k_size * j[1],
            width_mm=width * k_size * j[2],
            hp_rim_mm=hp_,
            ha_rim_mm=hp_ * (ratio + rc.normal(0.0, 0.012)),
            concavity_sup_mm=float(conc[0]),
            concavity_inf_mm=float(conc[1]),
            posterior_concavity_mm=float(rc.uniform(0.8, 1.5)),
            cortex_mm=float(rc.uniform(1.0, 1.3)),
        )
    l5 = dims["L5"]
    s1_hp = 23.5 * k_size * rc.uniform(0.96, 1.04)
    dims["S1"] = BodyDims(
        depth_mm=l5.depth_mm * rc.uniform(0.95, 1.0),
        width_mm=l5.width_mm * 0.94,
        hp_rim_mm=s1_hp,
        ha_rim_mm=s1_hp * rc.uniform(1.04, 1.10),
        concavity_sup_mm=float(rc.uniform(0.4, 0.8)),
        concavity_inf_mm=0.0,
        posterior_concavity_mm=1.0,
        cortex_mm=1.1,
        lateral_cortex=False,
        inf_cortex=False,
    )
    s1 = dims["S1"]
    sac_scale = {
        "S2": (0.84, 0.78, 0.82),
        "S3": (0.70, 0.58, 0.70),
        "S4": (0.56, 0.44, 0.58),
        "S5": (0.46, 0.34, 0.48),
        "Co1": (0.34, 0.26, 0.40),
        "Co2": (0.28, 0.20, 0.32),
    }
    for name, (kd, kw, kh) in sac_scale.items():
        d_ = s1.depth_mm * kd
        hp_ = s1.hp_rim_mm * kh
        wedge = math.radians(rc.uniform(9.0, 14.0) if name.startswith("S") else 16.0)
        dims[name] = BodyDims(
            depth_mm=d_,
            width_mm=s1.width_mm * kw,
            hp_rim_mm=hp_,
            ha_rim_mm=max(hp_ - d_ * math.tan(wedge), 0.45 * hp_),
            concavity_sup_mm=0.0,
            concavity_inf_mm=0.0,
            posterior_concavity_mm=0.6,
            cortex_mm=1.0,
            lateral_cortex=name.startswith("Co"),
            sup_cortex=name.startswith("Co"),
            inf_cortex=name.startswith("Co") or name == "S5",
        )
    discs: dict[str, tuple[float, float, bool]] = {}
    degeneration_p = {"L3": 0.2, "L4": 0.4, "L5": 0.45}
    for name in chain:
        post, ant = _DISC_TABLE[name]
        k = k_size * rc.uniform(0.9, 1.1)
        degen = rc.uniform() < degeneration_p.get(name, 0.0)
        kd = rc.uniform(0.55, 0.8)
        if degen:
            k *= kd
        ant = post + (ant - post) * spec.lordosis_scale
        discs[name] = (post * k, ant * k, bool(degen))
    # desiccated discs (opt-in): draws happen for every level so the choice of discs changes nothing else
    rd = rng["discs"]
    disc_look: dict[str, tuple[Tissue, bool]] = {}
    for name in chain:
        f_h, dark, vacuum = rd.uniform(0.5, 0.8), rd.uniform(), rd.uniform() < 0.2
        if Level(name) not in spec.desiccated_discs:
            continue
        post, ant, degen = discs[name]
        if not degen:  # already lowered when the classic draw made it degenerated
            post, ant = post * f_h, ant * f_h
        discs[name] = (post, ant, True)
        disc_look[name] = (Tissue.NUCLEUS_DESICCATED if dark < 0.7 else Tissue.NUCLEUS_DEGENERATED, bool(vacuum))
    missing = [lv.value for lv in spec.desiccated_discs if lv.value not in discs]
    if missing:
        raise ConfigError(
            f"desiccated_discs: {', '.join(missing)} is above the built column ({chain[0]}..L5); "
            f"choose discs from {chain[0]} down"
        )
    hemangioma_level = chain[int(rc.integers(len(chain)))] if rc.uniform() < 0.35 else None
    hem_pos = rc.uniform(-0.5, 0.5, size=3)
    conus_offset = rc.uniform(-1.0, 1.3)

    # ---- fractures
    deform: dict[str, Deformation] = {}
    for fxs in spec.fractures:
        name = fxs.level.value
        deform[name] = solve_deformation(
            dims[name], fxs.kind, fxs.height_loss_pct, fxs.retropulsion_mm, where=f"fracture at {name}"
        )
    notches = schmorl_notches(spec, dims)
    shapes = {
        name: BodyShape(d, deform.get(name, Deformation()), notches[name])
        if name in notches
        # classic path untouched when there are no Schmorl nodes
        else BodyShape(d, deform.get(name, Deformation()))
        for name, d in dims.items()
    }

    # ---- chain in the sagittal plane, (y, z) with anterior = -y
    frames: dict[str, Frame2D] = {}
    e_s1 = np.array([-math.cos(sacral_slope), -math.sin(sacral_slope)])  # posterior -> anterior, descending
    frames["S1"] = place_by_superior_rim(shapes["S1"], np.zeros(2), e_s1)
    below = "S1"
    for name in reversed(chain):
        post, ant, _ = discs[name]
        frames[name] = stack_up(shapes[below], frames[below], post, ant, shapes[name])
        below = name
    above = "S1"
    for name in _SACRAL:
        gap = 2.2 if name.startswith("Co") else 1.6
        frames[name] = stack_down(shapes[above], frames[above], gap, gap, shapes[name])
        above = name
    # global orientation and position
    top_name = spec.top_level.value
    chord = frames[top_name].centre - frames["S1"].centre
    want = math.atan2(math.cos(chord_tilt), math.sin(chord_tilt))
    turn = want - math.atan2(chord[1], chord[0])
    pivot = frames["S1"].centre.copy()
    rf = rng["fov"]
    mid_target = np.array([rf.uniform(35.0, 55.0), rf.uniform(-70.0, -10.0)])
    frames = {n: f.rotated(pivot, turn) for n, f in frames.items()}
    shift = mid_target - 0.5 * (frames[top_name].centre + frames["S1"].centre)
    for f in frames.values():
        f.centre = f.centre + shift
    slips = apply_slips(spec, frames, shapes, chain, x0)
    lateral = scoliosis_shift(spec, list(frames))
    modic = modic_bands(spec, rng["modic"])

    # ---- placed bodies
    rt = rng["texture"]
    labelled_names = [lv.value for lv in spec.labelled_levels]
    bodies: dict[str, PlacedBody] = {}
    lesion_rng = rng["lesions"]
    for name, frame in frames.items():
        label = labelled_names.index(name) + 1 if name in labelled_names else 0
        fat_noise = smooth_noise_3d(rt, 9, (3.5, 9.0))
        fx: FractureSpec | None = spec.fracture_at(Level(name)) if name in Level.__members__ else None
        edema = None
        sclerosis = 0.0
        e_noise_band = smooth_noise_3d(lesion_rng, 3, (10.0, 22.0))
        e_noise_diffuse = smooth_noise_3d(lesion_rng, 6, (9.0, 20.0))
        if fx is not None and fx.edema:
            both = fx.kind in (Morphology.BICONCAVE,)
            noise = e_noise_band if fx.edema_pattern is EdemaPattern.BAND else e_noise_diffuse
            edema = EdemaModel(fx.edema_pattern, threshold=0.0, both_endplates=both, noise=noise)
        elif fx is not None and fx.kind is not Morphology.NORMAL:
            sclerosis = 1.6
        hem = None
        if name == hemangioma_level and fx is None:
            s = shapes[name]
            hem = (
                float(hem_pos[0] * s.D * 0.4),
                float(hem_pos[1] * s.dims.hp_rim_mm * 0.3),
                float(hem_pos[2] * s.Wh * 0.5),
                float(rt.uniform(3.0, 5.5)),
            )
        bodies[name] = PlacedBody(
            name=name,
            shape=shapes[name],
            frame=frame,
            x0=x0 + lateral.get(name, 0.0),  # scoliosis (x0 + 0.0 is x0: the classic column is unchanged)
            label=label,
            edema=edema,
            fat_noise=fat_noise,
            fat_threshold=float(rt.uniform(0.9, 1.2)),
            sclerosis_mm=sclerosis,
            hemangioma=hem,
            vein=name in Level.__members__,
            modic=tuple(modic.get(name, ())),
        )

    solve_edema_thresholds(bodies, spec)

    # ---- discs
    disc_list: list[PlacedDisc] = []
    order = chain + ["S1"]
    for upper, lower in zip(order[:-1], order[1:], strict=True):
        disc_list.append(
            PlacedDisc(
                below=bodies[lower],
                above=bodies[upper],
                x0=x0,
                degenerated=discs[upper][2],
                cleft=not upper.startswith("T"),
                nucleus=disc_look[upper][0] if upper in disc_look else None,
                vacuum=disc_look[upper][1] if upper in disc_look else False,
            )
        )
    sac_order = ["S1", *_SACRAL]
    for upper, lower in zip(sac_order[:-1], sac_order[1:], strict=True):
        disc_list.append(
            PlacedDisc(
                below=bodies[lower],
                above=bodies[upper],
                x0=x0,
                fused=upper.startswith("S"),
                bulge=0.02,
                remnant=0.3 if upper == "S1" else 0.15,
            )
        )

    # ---- canal
    canal, canal_ap, conus_name = build_canal(bodies, order, discs, x0, k_canal, conus_offset, rc)
    disc_tissue = {n: disc_look[n][0] for n in disc_look}
    pits = schmorl_painters(spec, bodies, order, disc_tissue)

    # ---- posterior elements
    post_painters, ligament_painters, tips = posterior_elements(bodies, order, discs, CANAL_TABLE, k_canal)
    sacral_painters, sacral_tips = sacral_posterior(bodies, CANAL_TABLE, k_canal)
    tips.extend(sacral_tips)

    # ---- soft tissue
    profile = _column_profile(bodies, order + list(_SACRAL), disc_list, tips, x0)
    soft = build_soft_tissue(rng["soft"], rng["bowel"], profile, spec)
    if spec.pelvic_anatomy:
        soft.extend(pelvic_anatomy(rng["pelvis"], profile))

    grid, partial = _field_of_view(spec, bodies, labelled_names, profile, rng["fov"])

    painters: list[Painter] = [
        *soft,
        *ligament_painters,
        *post_painters,
        *sacral_painters,
        canal,
        *disc_list,
        *pits,
        *[bodies[n] for n in _SACRAL],
        *[bodies[n] for n in reversed(order)],
    ]
    labelled = [bodies[n] for n in labelled_names]
    return Anatomy(
        spec=spec,
        x0=x0,
        bodies=bodies,
        labelled=labelled,
        discs=disc_list,
        canal=canal,
        painters=painters,
        grid=grid,
        canal_ap_mm=canal_ap,
        profile=profile,
        partial_levels=partial,
        slips=slips,
    )


def solve_edema_thresholds(bodies: dict[str, PlacedBody], spec: PhantomSpec) -> None:
    """Set each oedematous body's metric threshold so that the oedema fraction equals the request."""
    for fx in spec.fractures:
        body = bodies[fx.level.value]
        if body.edema is None:
            continue
        body.edema.threshold = np.inf
        smp = fine_samples(body)
        inside, interior = smp["inside"], smp["inside"] & (smp["d_in"] >= body.shape.dims.cortex_mm)
        n_inside = int(inside.sum())
        target = int(round(fx.edema_fraction * n_inside))
        metric = np.sort(body.edema.metric(body.shape, smp["u"], smp["v"], smp["w"], smp["ds"], smp["di"])[interior])
        if target > metric.size:
            raise ConfigError(
                f"fracture at {fx.level.value}: edema_fraction {fx.edema_fraction:g} exceeds the marrow "
                f"share of "
                f"this body ({metric.size / n_inside:.2f}); request a smaller fraction"
            )
        if target == 0:
            body.edema.threshold = float(metric[0]) - 1.0
        elif target == metric.size:
            body.edema.threshold = float(metric[-1]) + 1.0
        else:
            body.edema.threshold = float(0.5 * (metric[target - 1] + metric[target]))


# --------------------------------------------------------------------------- profiles and field of view
def _column_profile(
    bodies: dict[str, PlacedBody],
    names: list[str],
    discs: list[PlacedDisc],
    tips: list[np.ndarray],
    x0: float,
) -> ColumnProfile:
    ant, post, centre = [], [], []
    for name in names:
        b = bodies[name]
        s = b.shape
        for frac in np.linspace(-0.45, 0.45, 5):
            v = frac * s.dims.hp_rim_mm
            ant.append(b.frame.to_world(np.array([s.D / 2, v])))
            post.append(b.frame.to_world(np.array([-s.D / 2, v])))
        centre.append(b.frame.centre)
    for disc in discs:
        ant.append(disc.centre + disc.u_d * disc.depth / 2)
        post.append(disc.centre - disc.u_d * disc.depth / 2)
    level_centres = {n: bodies[n].frame.centre.copy() for n in names}
    level_half_width = {n: bodies[n].shape.Wh for n in names}
    level_depth = {n: bodies[n].shape.D for n in names}
    tip_yz = np.array([[t[1], t[2]] for t in tips])
    return ColumnProfile.from_points(
        np.array(ant), np.array(post), tip_yz, level_centres, level_half_width, level_depth, x0
    )


def _field_of_view(
    spec: PhantomSpec,
    bodies: dict[str, PlacedBody],
    labelled: list[str],
    profile: ColumnProfile,
    rng: np.random.Generator,
) -> tuple[SagittalGeometry, list[str]]:
    sp = spec.pixel_spacing_mm
    margin_top = rng.uniform(11.0, 18.0)
    top_body = bodies[labelled[0]]
    z_top = float(top_body.hi[2]) - 2.0 + margin_top  # hi includes a 2 mm pad above the rim
    rows = spec.rows
    if not spec.include_sacrum:
        below = spec.bottom_level.offset(1)
        assert below is not None
        z_bottom = float(bodies[below.value].frame.centre[1])
        rows = int(math.ceil((z_top - z_bottom) / sp))
    elif spec.fov_below_s1_mm > 0:
        z_bottom = float(bodies["S1"].lo[2]) + 2.0 - spec.fov_below_s1_mm
        rows = int(math.ceil((z_top - z_bottom) / sp))
        if rows > 1024:
            raise ConfigError(
                f"phantom field of view {spec.top_level.value} to {spec.fov_below_s1_mm:g} mm below S1 needs "
                f"{rows} rows of {sp:g} mm (at most 1024); use a larger pixel_spacing_mm, a lower top_level "
                f"or a smaller fov_below_s1_mm"
            )
    fov_h = rows * sp
    if spec.include_sacrum:
        need = z_top - (float(bodies["S1"].lo[2]) + 2.0 - 8.0)
        if need > fov_h:
            raise ConfigError(
                f"phantom field of view too small: {spec.top_level.value}..S1 needs {need:.0f} mm of rows "
                f"but rows x pixel_spacing_mm = {fov_h:.0f} mm; increase rows or pixel_spacing_mm, "
                f"or lower top_level"
            )
    # AP: centre the body if it fits, else keep the back in view
    z_mid = z_top - fov_h / 2
    y_ant = float(profile.skin_ant(np.array([z_mid]))[0])
    y_post = float(profile.skin_post(np.array([z_mid]))[0])
    fov_w = spec.cols * sp
    if y_post - y_ant + 20 <= fov_w:
        y_front = 0.5 * (y_ant + y_post) - fov_w / 2 + rng.uniform(-8, 8)
    else:
        y_front = y_post + 0.06 * fov_w - fov_w
    pitch = spec.slice_pitch_mm
    n = spec.n_slices
    axes = np.array([[-1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    origin = (pitch * (n - 1) / 2.0, y_front + sp / 2, z_top - sp / 2)
    grid = SagittalGeometry(origin_lps=origin, axes_lps=axes, spacing_mm=(pitch, sp, sp), shape=(n, rows, spec.cols))
    # visible unlabelled bodies (partly in the field of view)
    z_bot = z_top - fov_h
    partial = [
        name
        for name, b in bodies.items()
        if name not in labelled and b.hi[2] > z_bot and b.lo[2] < z_top and name in Level.__members__
    ]
    return grid, partial
