"""What to generate: fracture and phantom specifications (frozen, validated on construction).

A :class:`PhantomSpec` fully determines a phantom: rendering the same spec twice gives identical
pixels, labels, truth and DICOM UIDs. :func:`parse_fracture` turns the command-line syntax
``LEVEL:KIND:LOSS[:edema=PATTERN[:FRACTION]][:retro=MM]`` into a :class:`FractureSpec`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Any, TypeVar

from pipeline.errors import ConfigError
from pipeline.levels import Level
from pipeline.model import EdemaPattern, Morphology

#: Version of the generator's geometry/contrast model. Bump when pixels or truth change for a given spec.
GENERATOR_VERSION = "1.0"

#: Largest height loss the generator can build (a vertebra plana keeps ~15 % of its height).
MAX_HEIGHT_LOSS_PCT = 85.0
#: Largest posterior-wall retropulsion (mm) into the canal.
MAX_RETROPULSION_MM = 8.0
#: Default oedema fraction used when ``edema=True`` but no fraction is given, per pattern.
DEFAULT_EDEMA_FRACTION = {EdemaPattern.BAND: 0.30, EdemaPattern.DIFFUSE: 0.60}

_FRACTURABLE = tuple(lv for lv in Level if lv.region in ("thoracic", "lumbar")) + (Level.S1,)


class Vendor(StrEnum):
    """Scanner vendor whose naming style, header conventions and protocol physics are imitated."""

    SIEMENS = "siemens"
    GE = "ge"
    PHILIPS = "philips"
    CANON = "canon"


@dataclass(frozen=True)
class FractureSpec:
    """One abnormal vertebral body.

    Parameters
    ----------
    level : Level
        Which body (T1..L5 or S1).
    kind : Morphology
        ``WEDGE`` (anterior height loss), ``BICONCAVE`` (middle loss, both endplates concave) or
        ``CRUSH`` (uniform loss of the whole body). ``NORMAL`` with ``height_loss_pct=0`` gives a body
        of normal shape, e.g. to carry marrow oedema without collapse (bone bruise, infiltration).
    height_loss_pct : float
        ``100 * (1 - min(Ha, Hm, Hp) / reference_height)``, 0..85 (see :mod:`pipeline.tools.phantom.truth`).
        Reproduced exactly by the geometry (solved numerically).
    edema : bool
        Marrow oedema present (acute/subacute fracture); ``False`` for a chronic fracture.
    edema_pattern : EdemaPattern
        ``BAND`` (subchondral band under the fractured endplate(s)) or ``DIFFUSE`` (patchy, whole body).
    edema_fraction : float
        Share of the body's volume (cortex included) that is oedematous, 0..1. ``0`` with ``edema=True``
        means "use the pattern's default" (:data:`DEFAULT_EDEMA_FRACTION`).
    retropulsion_mm : float
        Posterior bulge of the posterior wall into the spinal canal (mid-sagittal, mm), 0..8.
    """

    level: Level
    kind: Morphology
    height_loss_pct: float
    edema: bool = False
    edema_pattern: EdemaPattern = EdemaPattern.BAND
    edema_fraction: float = 0.0
    retropulsion_mm: float = 0.0

    def __post_init__(self) -> None:
        level = _level(self.level, "fracture level")
        object.__setattr__(self, "level", level)
        object.__setattr__(self, "kind", _enum(Morphology, self.kind, f"fracture at {level.value}: kind"))
        object.__setattr__(
            self,
            "edema_pattern",
            _enum(EdemaPattern, self.edema_pattern, f"fracture at {level.value}: edema_pattern"),
        )
        object.__setattr__(self, "height_loss_pct", float(self.height_loss_pct))
        object.__setattr__(self, "edema_fraction", float(self.edema_fraction))
        object.__setattr__(self, "retropulsion_mm", float(self.retropulsion_mm))
        where = f"fracture at {level.value}"
        if level not in _FRACTURABLE:
            raise ConfigError(f"{where}: only thoracic, lumbar and S1 bodies can be fractured")
        if self.kind not in (Morphology.WEDGE, Morphology.BICONCAVE, Morphology.CRUSH, Morphology.NORMAL):
            raise ConfigError(f"{where}: kind must be wedge, biconcave, crush or normal, got {self.kind.value}")
        if not 0.0 <= self.height_loss_pct <= MAX_HEIGHT_LOSS_PCT:
            raise ConfigError(
                f"{where}: height_loss_pct must be in 0..{MAX_HEIGHT_LOSS_PCT:g}, got {self.height_loss_pct:g}"
            )
        if self.kind is Morphology.NORMAL and self.height_loss_pct != 0.0:
            raise ConfigError(f"{where}: kind 'normal' means no collapse; use height_loss_pct=0 or a fracture kind")
        if self.kind is not Morphology.NORMAL and self.height_loss_pct < 10.0:
            raise ConfigError(
                f"{where}: a {self.kind.value} fracture needs height_loss_pct >= 10 (below that the shape is "
                f"within physiological variation); use kind 'normal' with 0 for oedema without collapse"
            )
        if self.edema_pattern not in (EdemaPattern.BAND, EdemaPattern.DIFFUSE):
            raise ConfigError(f"{where}: edema_pattern must be band or diffuse, got {self.edema_pattern.value}")
        if not 0.0 <= self.edema_fraction <= 0.8:
            raise ConfigError(
                f"{where}: edema_fraction must be in 0..0.8 (the cortex is never oedematous), "
                f"got {self.edema_fraction:g}"
            )
        if not self.edema and self.edema_fraction > 0:
            raise ConfigError(f"{where}: edema_fraction={self.edema_fraction:g} given but edema=False")
        if self.edema and self.edema_fraction == 0.0:
            object.__setattr__(self, "edema_fraction", DEFAULT_EDEMA_FRACTION[self.edema_pattern])
        if not 0.0 <= self.retropulsion_mm <= MAX_RETROPULSION_MM:
            raise ConfigError(
                f"{where}: retropulsion_mm must be in 0..{MAX_RETROPULSION_MM:g}, got {self.retropulsion_mm:g}"
            )
        if self.kind is Morphology.NORMAL and not self.edema and self.retropulsion_mm == 0:
            raise ConfigError(f"{where}: a 'normal' entry without oedema or retropulsion changes nothing; remove it")

    @property
    def acute(self) -> bool:
        """Oedema present (an acute or subacute fracture / marrow lesion)."""
        return self.edema


#: Largest anterior slip (spondylolisthesis) the generator builds, mm (about Meyerding grade II).
MAX_SLIP_MM = 16.0

_SLIPPABLE = tuple(lv for lv in Level if lv.region in ("thoracic", "lumbar"))


@dataclass(frozen=True)
class SlipSpec:
    """Spondylolisthesis: anterior translation of one body (and the column above it) over the body below.

    Parameters
    ----------
    level : Level
        The slipping body (T1..L5), e.g. ``L4`` for an L4-on-L5 slip, ``L5`` for L5 on S1.
    slip_mm : float
        Translation (mm) along the superior endplate rim line of the body below, anterior positive, 0.5..16.
        The posterior-inferior corner of ``level`` then lies ``slip_mm`` in front of the posterior-superior
        corner of the body below (they are flush without a slip). Meyerding grade in the truth:
        ``slip_mm / depth of the body below`` in quarters (I < 25 %, II 25-50 %).
    """

    level: Level
    slip_mm: float

    def __post_init__(self) -> None:
        level = _level(self.level, "slip level")
        object.__setattr__(self, "level", level)
        object.__setattr__(self, "slip_mm", float(self.slip_mm))
        if level not in _SLIPPABLE:
            raise ConfigError(f"slip at {level.value}: only thoracic and lumbar bodies can slip (T1..L5)")
        if not 0.5 <= self.slip_mm <= MAX_SLIP_MM:
            raise ConfigError(f"slip at {level.value}: slip_mm must be in 0.5..{MAX_SLIP_MM:g}, got {self.slip_mm:g}")


@dataclass(frozen=True)
class ModicSpec:
    """Modic change at both endplates of one disc (marrow bands in the two adjacent bodies).

    Parameters
    ----------
    level : Level
        The disc, named by the body above it (T1..L5; ``L4`` = L4/L5: the inferior endplate of L4 and the
        superior endplate of L5).
    modic_type : int
        1: fibrovascular (T1 dark, T2 and STIR bright: looks like oedema but is *not* marked as oedema in the
        truth); 2: fatty (T1 bright, T2 bright, STIR dark).
    depth_mm : float
        Typical band depth from the endplate into the marrow, 2..12 (irregular, varies per body).
    """

    level: Level
    modic_type: int
    depth_mm: float = 6.0

    def __post_init__(self) -> None:
        level = _level(self.level, "Modic level")
        object.__setattr__(self, "level", level)
        object.__setattr__(self, "depth_mm", float(self.depth_mm))
        if level not in _SLIPPABLE:
            raise ConfigError(f"Modic at {level.value}: name the disc by the body above it, T1..L5")
        if self.modic_type not in (1, 2) or isinstance(self.modic_type, bool):
            raise ConfigError(f"Modic at {level.value}: modic_type must be 1 or 2, got {self.modic_type!r}")
        if not 2.0 <= self.depth_mm <= 12.0:
            raise ConfigError(f"Modic at {level.value}: depth_mm must be in 2..12, got {self.depth_mm:g}")


@dataclass(frozen=True)
class SchmorlSpec:
    """Schmorl node: a small pit in one endplate filled with disc material (never part of the body label).

    Parameters
    ----------
    level : Level
        The body (T1..L5 or S1; S1 only on its superior endplate).
    endplate : str
        ``"superior"`` or ``"inferior"``.
    radius_mm, depth_mm : float
        Half-width of the pit (1.5..5 mm) and its depth into the body from the endplate surface (1.5..8 mm).
    ap_fraction : float
        Centre of the pit as a fraction of the depth from the anterior cortex, 0.25..0.75; the pit must stay
        clear of the 10/50/90 % height lines (checked when the phantom is built) so heights stay exact.
    lateral_mm : float
        Offset of the centre towards the patient's left (negative: right) from the body's mid-plane.
    """

    level: Level
    endplate: str = "superior"
    radius_mm: float = 3.0
    depth_mm: float = 4.0
    ap_fraction: float = 0.3
    lateral_mm: float = 0.0

    def __post_init__(self) -> None:
        level = _level(self.level, "Schmorl node level")
        object.__setattr__(self, "level", level)
        for name in ("radius_mm", "depth_mm", "ap_fraction", "lateral_mm"):
            object.__setattr__(self, name, float(getattr(self, name)))
        where = f"Schmorl node at {level.value}"
        if level not in _FRACTURABLE:
            raise ConfigError(f"{where}: only thoracic, lumbar and S1 bodies")
        if self.endplate not in ("superior", "inferior"):
            raise ConfigError(f"{where}: endplate must be 'superior' or 'inferior', got {self.endplate!r}")
        if level is Level.S1 and self.endplate == "inferior":
            raise ConfigError(f"{where}: S1's inferior end is fused to S2; use its superior endplate")
        if not 1.5 <= self.radius_mm <= 5.0 or not 1.5 <= self.depth_mm <= 8.0:
            raise ConfigError(f"{where}: radius_mm must be 1.5..5 and depth_mm 1.5..8")
        if not 0.25 <= self.ap_fraction <= 0.75 or abs(self.lateral_mm) > 15.0:
            raise ConfigError(f"{where}: ap_fraction must be 0.25..0.75 and |lateral_mm| <= 15")


@dataclass(frozen=True)
class PhantomSpec:
    """Everything that determines a synthetic study.

    Geometry: sagittal slices run from the patient's left to right (array axis 0), rows head to feet,
    columns anterior to posterior; the slab is centred on the field of view (the spine's mid-plane is
    a few mm off-centre, seed-dependent, as in real positioning).

    Parameters
    ----------
    seed : int
        Controls every random choice (anatomy variation, bowel, noise, bias field, UIDs).
    top_level : Level
        Most cranial vertebral body that is fully inside the field of view and labelled. The body above
        is partly visible but not labelled.
    include_sacrum : bool
        ``True``: the field of view reaches down to the sacrum; S1 is labelled (last label) and flagged.
        ``False``: the field of view ends in the middle of the body below ``bottom_level`` (with the default
        L4, the sacrum is not seen); ``rows`` is then derived from the anatomy.
    bottom_level : Level
        Most caudal labelled body when ``include_sacrum=False`` (ignored otherwise).
    fractures : tuple of FractureSpec
        At most one per level.
    n_slices, slice_thickness_mm, slice_gap_mm : int, float, float
        Sagittal slab: slice pitch is thickness + gap.
    pixel_spacing_mm, rows, cols : float, int, int
        In-plane grid (square pixels). The field of view (rows x spacing) must cover the labelled
        column plus margins, else construction fails with the size needed.
    supersample : int
        In-plane sub-samples per pixel side (partial volume); 2 is plenty.
    slice_subsamples : int
        Sub-planes across the slice thickness (partial volume through the slice).
    noise_pct : float
        Rician noise sigma as a percentage of the brightest tissue of each sequence (STIR uses 1.6x).
    bias_pct : float
        Peak-to-peak amplitude of the smooth multiplicative bias field (percent), on top of the
        posterior-coil fall-off.
    lordosis_scale : float
        Multiplies the lumbar disc wedge angles (1.0 = average supine lordosis).
    vendor : Vendor
        Naming and header style of the DICOM series (see :mod:`pipeline.tools.phantom.vendors`).
    include_axial_t2, include_localizer : bool
        Also render an oblique axial T2 stack (parallel to the L4/L5 disc, 4 mm slices, 192 mm field of view)
        and a 3-plane localizer (9 images).
    axial_n_slices, axial_matrix : int
        Size of the axial stack.
    patient_name, patient_id : str
        Synthetic identifiers; defaults ``PHANTOM^SEED<seed>`` and ``PH-<seed>``.
    patient_sex, patient_age_years : str, int
    study_description : str

    Opt-in anatomy for training and stress tests (the defaults reproduce the classic phantom exactly, and
    :meth:`to_json` leaves them out while they are at their defaults, so UIDs and truth.json do not change):

    desiccated_discs : tuple of Level
        Discs (named by the body above them, ``L4`` = the L4/L5 disc) that are desiccated: the nucleus is
        dark on T2 and STIR (as dark as the annulus or a little brighter, varying per disc, sometimes with a
        vacuum cleft) and the disc is 20-50 % lower (seed-dependent per disc).
    slips : tuple of SlipSpec
        Spondylolisthesis (at most one per level); reported in ``truth["column"]["spondylolisthesis"]``.
    fov_below_s1_mm : float
        ``0``: the field of view is ``rows`` high (default). ``> 0`` (needs ``include_sacrum``): ``rows`` is
        derived so that the image reaches this far (mm) below the lowest point of S1: the rest of the
        sacrum (S2-S5, fused, with vestigial discs), the coccyx and the pelvis come into view, unlabelled.
    pelvic_anatomy : bool
        Add the lower pelvis: iliac bones from the sacroiliac joints down to the acetabula, gluteal muscles
        behind the sacrum, piriformis, sigmoid loops in front of the sacrum.
    modic : tuple of ModicSpec
        Modic changes (at most one per disc); never counted as oedema in the truth or the oedema map.
    schmorl_nodes : tuple of SchmorlSpec
        Schmorl nodes; the pit is outside the body label, volumes and centroids in the truth exclude it.
    scoliosis_mm : float
        Lateral curve: the body at ``scoliosis_apex`` is shifted this far towards the patient's left
        (negative: right), its neighbours less (cos^2 taper over 4 levels above, down to S1 below; S1 and
        the sacrum stay put), so each body has its own mid-sagittal slice (``mid_slice`` in the truth).
        Bodies are translated, not tilted or rotated, so their heights and axes stay exact. |value| <= 40.
    scoliosis_apex : Level
        Apex of the curve (T4..L4), used when ``scoliosis_mm`` is not 0.
    """

    seed: int = 0
    top_level: Level = Level.T10
    include_sacrum: bool = True
    bottom_level: Level = Level.L4
    fractures: tuple[FractureSpec, ...] = ()
    n_slices: int = 15
    slice_thickness_mm: float = 4.0
    slice_gap_mm: float = 0.4
    pixel_spacing_mm: float = 0.85
    rows: int = 384
    cols: int = 384
    supersample: int = 2
    slice_subsamples: int = 4
    noise_pct: float = 2.0
    bias_pct: float = 20.0
    lordosis_scale: float = 1.0
    vendor: Vendor = Vendor.SIEMENS
    include_axial_t2: bool = False
    include_localizer: bool = False
    axial_n_slices: int = 18
    axial_matrix: int = 256
    patient_name: str = ""
    patient_id: str = ""
    patient_sex: str = "O"
    patient_age_years: int = 67
    study_description: str = ""
    desiccated_discs: tuple[Level, ...] = ()
    slips: tuple[SlipSpec, ...] = ()
    fov_below_s1_mm: float = 0.0
    pelvic_anatomy: bool = False
    modic: tuple[ModicSpec, ...] = ()
    schmorl_nodes: tuple[SchmorlSpec, ...] = ()
    scoliosis_mm: float = 0.0
    scoliosis_apex: Level = Level.L1

    def __post_init__(self) -> None:
        top = _level(self.top_level, "top_level")
        bottom = _level(self.bottom_level, "bottom_level")
        object.__setattr__(self, "top_level", top)
        object.__setattr__(self, "bottom_level", bottom)
        object.__setattr__(self, "vendor", _enum(Vendor, self.vendor, "vendor"))
        object.__setattr__(self, "fractures", tuple(self.fractures))
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed must be a non-negative integer, got {self.seed!r}")
        if top.region not in ("thoracic", "lumbar") or top.ordinal > Level.L4.ordinal:
            raise ConfigError(f"top_level must be between T1 and L4, got {top.value}")
        bad_bottom = bottom.region not in ("thoracic", "lumbar") or bottom.ordinal <= top.ordinal
        if not self.include_sacrum and bad_bottom:
            raise ConfigError(
                f"bottom_level must be a thoracic/lumbar level below top_level {top.value}, got {bottom.value}"
            )
        last = Level.S1 if self.include_sacrum else bottom
        seen: set[Level] = set()
        for fx in self.fractures:
            if not isinstance(fx, FractureSpec):
                raise ConfigError(f"fractures must be FractureSpec objects, got {type(fx).__name__}")
            if fx.level in seen:
                raise ConfigError(f"two fracture entries for {fx.level.value}; give one per level")
            seen.add(fx.level)
            if not top.ordinal <= fx.level.ordinal <= last.ordinal:
                raise ConfigError(
                    f"fracture at {fx.level.value} is outside the labelled range {top.value}..{last.value}; "
                    f"change top_level / include_sacrum or the fracture level"
                )
        if not 3 <= self.n_slices <= 64:
            raise ConfigError(f"n_slices must be 3..64, got {self.n_slices}")
        if not 1.0 <= self.slice_thickness_mm <= 10.0:
            raise ConfigError(f"slice_thickness_mm must be 1..10, got {self.slice_thickness_mm}")
        if not 0.0 <= self.slice_gap_mm <= 5.0:
            raise ConfigError(f"slice_gap_mm must be 0..5, got {self.slice_gap_mm}")
        if not 0.3 <= self.pixel_spacing_mm <= 2.0:
            raise ConfigError(f"pixel_spacing_mm must be 0.3..2.0, got {self.pixel_spacing_mm}")
        if not (64 <= self.rows <= 1024 and 64 <= self.cols <= 1024):
            raise ConfigError(f"rows and cols must be 64..1024, got {self.rows}x{self.cols}")
        if not 1 <= self.supersample <= 4 or not 1 <= self.slice_subsamples <= 8:
            raise ConfigError("supersample must be 1..4 and slice_subsamples 1..8")
        if not 0.0 <= self.noise_pct <= 20.0 or not 0.0 <= self.bias_pct <= 80.0:
            raise ConfigError("noise_pct must be 0..20 and bias_pct 0..80")
        if not 0.0 <= self.lordosis_scale <= 2.0:
            raise ConfigError(f"lordosis_scale must be 0..2, got {self.lordosis_scale}")
        if not (1 <= self.axial_n_slices <= 64 and 32 <= self.axial_matrix <= 512):
            raise ConfigError("axial_n_slices must be 1..64 and axial_matrix 32..512")
        if self.patient_sex not in ("F", "M", "O"):
            raise ConfigError(f"patient_sex must be F, M or O, got {self.patient_sex!r}")
        if not 18 <= self.patient_age_years <= 110:
            raise ConfigError(f"patient_age_years must be 18..110, got {self.patient_age_years}")
        self._check_realism(top, last)
        if not self.patient_name:
            object.__setattr__(self, "patient_name", f"PHANTOM^SEED{self.seed}")
        if not self.patient_id:
            object.__setattr__(self, "patient_id", f"PH-{self.seed:04d}")
        if not self.study_description:
            object.__setattr__(self, "study_description", "MR SPINE THORACOLUMBAR (SYNTHETIC PHANTOM)")

    def _check_realism(self, top: Level, last: Level) -> None:
        """Validate and normalise the opt-in anatomy fields."""
        discs = tuple(_level(lv, "desiccated_discs") for lv in self.desiccated_discs)
        object.__setattr__(self, "desiccated_discs", discs)
        for lv in discs:
            if lv.region not in ("thoracic", "lumbar"):
                raise ConfigError(
                    f"desiccated_discs: {lv.value} has no mobile disc below it; name discs by the body above "
                    f"them, T1..L5 (L5 = the L5/S1 disc)"
                )
        if len(set(discs)) != len(discs):
            raise ConfigError("desiccated_discs: a disc is listed twice")
        slips = tuple(self.slips)
        object.__setattr__(self, "slips", slips)
        seen: set[Level] = set()
        for sl in slips:
            if not isinstance(sl, SlipSpec):
                raise ConfigError(f"slips must be SlipSpec objects, got {type(sl).__name__}")
            if sl.level in seen:
                raise ConfigError(f"two slip entries for {sl.level.value}; give one per level")
            seen.add(sl.level)
            if not top.ordinal <= sl.level.ordinal < last.ordinal:
                raise ConfigError(
                    f"slip at {sl.level.value} is outside the labelled range {top.value}..{last.value} (the "
                    f"slipping body and the one below it must be labelled); change the slip level or top_level"
                )
        object.__setattr__(self, "fov_below_s1_mm", float(self.fov_below_s1_mm))
        if self.fov_below_s1_mm != 0.0:
            if not self.include_sacrum:
                raise ConfigError("fov_below_s1_mm needs include_sacrum=True (it extends the image below S1)")
            if not 10.0 <= self.fov_below_s1_mm <= 250.0:
                raise ConfigError(f"fov_below_s1_mm must be 0 or 10..250, got {self.fov_below_s1_mm:g}")
        if not isinstance(self.pelvic_anatomy, bool):
            raise ConfigError(f"pelvic_anatomy must be true or false, got {self.pelvic_anatomy!r}")
        modic = tuple(self.modic)
        object.__setattr__(self, "modic", modic)
        if not all(isinstance(m, ModicSpec) for m in modic):
            raise ConfigError("modic must be ModicSpec objects")
        if len({m.level for m in modic}) != len(modic):
            raise ConfigError("modic: give at most one entry per disc")
        nodes = tuple(self.schmorl_nodes)
        object.__setattr__(self, "schmorl_nodes", nodes)
        if not all(isinstance(n, SchmorlSpec) for n in nodes):
            raise ConfigError("schmorl_nodes must be SchmorlSpec objects")
        if len({(n.level, n.endplate) for n in nodes}) != len(nodes):
            raise ConfigError("schmorl_nodes: give at most one node per endplate")
        for n in nodes:
            if not top.ordinal <= n.level.ordinal <= last.ordinal:
                raise ConfigError(
                    f"Schmorl node at {n.level.value} is outside the labelled range {top.value}..{last.value}"
                )
        object.__setattr__(self, "scoliosis_mm", float(self.scoliosis_mm))
        apex = _level(self.scoliosis_apex, "scoliosis_apex")
        object.__setattr__(self, "scoliosis_apex", apex)
        if abs(self.scoliosis_mm) > 40.0:
            raise ConfigError(f"scoliosis_mm must be within -40..40, got {self.scoliosis_mm:g}")
        if not Level.T4.ordinal <= apex.ordinal <= Level.L4.ordinal:
            raise ConfigError(f"scoliosis_apex must be T4..L4, got {apex.value}")

    # ------------------------------------------------------------------ presets
    @classmethod
    def small(cls, **overrides: Any) -> PhantomSpec:
        """A coarse, fast phantom for unit tests (same anatomy and truth definitions, ~1/5 of the voxels).

        11 sagittal slices of 4 mm, 192 x 192 pixels of 1.7 mm (the default field of view), 2 sub-planes
        across each slice. Any field can be overridden, e.g. ``PhantomSpec.small(seed=3, fractures=(...))``.
        """
        base: dict[str, Any] = dict(rows=192, cols=192, pixel_spacing_mm=1.7, n_slices=11, slice_subsamples=2)
        base.update(overrides)
        return cls(**base)

    # ------------------------------------------------------------------ derived
    @property
    def slice_pitch_mm(self) -> float:
        """Centre-to-centre distance of adjacent slices (thickness + gap)."""
        return self.slice_thickness_mm + self.slice_gap_mm

    @property
    def labelled_levels(self) -> tuple[Level, ...]:
        """Levels that get a label, cranial to caudal (S1 last when the sacrum is included)."""
        last = Level.S1 if self.include_sacrum else self.bottom_level
        return tuple(lv for lv in Level if self.top_level.ordinal <= lv.ordinal <= last.ordinal)

    def fracture_at(self, level: Level) -> FractureSpec | None:
        for fx in self.fractures:
            if fx.level is level:
                return fx
        return None

    def slip_at(self, level: Level) -> SlipSpec | None:
        for sl in self.slips:
            if sl.level is level:
                return sl
        return None

    def to_json(self) -> dict[str, Any]:
        """JSON-ready description (enums as their values); :func:`spec_from_json` inverts it.

        Opt-in fields (:data:`OPT_IN_FIELDS`) are left out while at their defaults, so a classic spec has the
        same JSON (and therefore the same UIDs and truth.json) as before they existed.
        """
        d = dataclasses.asdict(self)
        for name in OPT_IN_FIELDS:
            if getattr(self, name) == _DEFAULTS[name]:
                del d[name]
        return _jsonable(d)

    def canonical(self) -> str:
        """Stable text form used to derive deterministic UIDs."""
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))


#: Fields added for training realism; omitted from :meth:`PhantomSpec.to_json` while at their defaults.
OPT_IN_FIELDS = (
    "desiccated_discs",
    "slips",
    "fov_below_s1_mm",
    "pelvic_anatomy",
    "modic",
    "schmorl_nodes",
    "scoliosis_mm",
    "scoliosis_apex",
)
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(PhantomSpec)}


def _level(value: object, what: str) -> Level:
    if isinstance(value, Level):
        return value
    try:
        return Level.parse(str(value))
    except ValueError as exc:
        raise ConfigError(f"{what}: {exc}") from None


E = TypeVar("E", bound=Enum)


def _enum(cls: type[E], value: object, what: str) -> E:
    try:
        return cls(value)
    except ValueError:
        raise ConfigError(f"{what}: {value!r} is not one of {', '.join(str(m.value) for m in cls)}") from None


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


def spec_from_json(data: dict[str, Any]) -> PhantomSpec:
    """Inverse of :meth:`PhantomSpec.to_json` (e.g. to re-render the spec recorded in a truth.json)."""
    d = dict(data)
    d["fractures"] = tuple(FractureSpec(**fx) for fx in d.get("fractures", ()))
    d["slips"] = tuple(SlipSpec(**sl) for sl in d.get("slips", ()))
    d["modic"] = tuple(ModicSpec(**m) for m in d.get("modic", ()))
    d["schmorl_nodes"] = tuple(SchmorlSpec(**n) for n in d.get("schmorl_nodes", ()))
    return PhantomSpec(**d)


_KINDS = {
    "wedge": Morphology.WEDGE,
    "biconcave": Morphology.BICONCAVE,
    "crush": Morphology.CRUSH,
    "normal": Morphology.NORMAL,
    "none": Morphology.NORMAL,
}

FRACTURE_SYNTAX = (
    "LEVEL:KIND:LOSS[:edema=band|diffuse[:FRACTION]][:retro=MM], e.g. L1:wedge:35:edema=band:0.4, "
    "T12:crush:72:retro=3, L3:biconcave:30:edema=diffuse, L2:normal:0:edema=diffuse:0.5 "
    "(KIND is wedge, biconcave, crush or normal; LOSS is the height loss in percent; "
    "FRACTION is the oedematous share of the body, 0-0.8)"
)


def parse_fracture(text: str) -> FractureSpec:
    """Parse the command-line fracture syntax (see :data:`FRACTURE_SYNTAX`).

    Raises
    ------
    ConfigError
        With the offending text, what is wrong and the expected syntax.
    """

    def fail(why: str) -> ConfigError:
        return ConfigError(f"--fracture {text!r}: {why}. Expected {FRACTURE_SYNTAX}")

    parts = [p.strip() for p in text.strip().split(":")]
    if len(parts) < 3 or not all(parts):
        raise fail("need at least LEVEL:KIND:LOSS")
    try:
        level = Level.parse(parts[0])
    except ValueError as exc:
        raise fail(str(exc)) from None
    kind = _KINDS.get(parts[1].lower())
    if kind is None:
        raise fail(f"unknown kind {parts[1]!r}")
    try:
        loss = float(parts[2].rstrip("%"))
    except ValueError:
        raise fail(f"height loss {parts[2]!r} is not a number") from None
    edema = False
    pattern = EdemaPattern.BAND
    fraction = 0.0
    retro = 0.0
    i = 3
    while i < len(parts):
        key, sep, value = parts[i].partition("=")
        key = key.lower()
        if key in ("edema", "oedema"):
            if not sep or value.lower() not in ("band", "diffuse", "none"):
                raise fail(f"{parts[i]!r}: edema must be band, diffuse or none")
            edema = value.lower() != "none"
            if edema:
                pattern = EdemaPattern(value.lower())
            if i + 1 < len(parts) and "=" not in parts[i + 1]:
                try:
                    fraction = float(parts[i + 1])
                except ValueError:
                    raise fail(f"oedema fraction {parts[i + 1]!r} is not a number") from None
                i += 1
        elif key in ("fraction", "frac"):
            try:
                fraction = float(value)
            except ValueError:
                raise fail(f"oedema fraction {value!r} is not a number") from None
        elif key in ("retro", "retropulsion"):
            try:
                retro = float(value)
            except ValueError:
                raise fail(f"retropulsion {value!r} is not a number (mm)") from None
        else:
            raise fail(f"unknown option {parts[i]!r}")
        i += 1
    try:
        return FractureSpec(
            level,
            kind,
            loss,
            edema=edema,
            edema_pattern=pattern,
            edema_fraction=fraction,
            retropulsion_mm=retro,
        )
    except ConfigError as exc:
        raise fail(str(exc)) from None
