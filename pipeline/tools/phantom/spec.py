"""What to generate: the phantom specification (frozen, validated on construction).

A :class:`PhantomSpec` fully determines a phantom: rendering the same spec twice gives identical
pixels, labels, truth and DICOM UIDs. What it asks for at single levels (fractures, slips, Modic changes,
Schmorl nodes) is :mod:`pipeline.tools.phantom.findings`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Any

from pipeline.errors import ConfigError
from pipeline.levels import Level
from pipeline.tools.phantom.findings import (
    FractureSpec,
    ModicSpec,
    SchmorlSpec,
    SlipSpec,
    parse_enum,
    parse_level,
)

#: Version of the generator's geometry/contrast model. Bump when pixels or truth change for a given spec.
GENERATOR_VERSION = "1.0"


class Vendor(StrEnum):
    """Scanner vendor whose naming style, header conventions and protocol physics are imitated."""

    SIEMENS = "siemens"
    GE = "ge"
    PHILIPS = "philips"
    CANON = "canon"


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
        top = parse_level(self.top_level, "top_level")
        bottom = parse_level(self.bottom_level, "bottom_level")
        object.__setattr__(self, "top_level", top)
        object.__setattr__(self, "bottom_level", bottom)
        object.__setattr__(self, "vendor", parse_enum(Vendor, self.vendor, "vendor"))
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
        discs = tuple(parse_level(lv, "desiccated_discs") for lv in self.desiccated_discs)
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
        apex = parse_level(self.scoliosis_apex, "scoliosis_apex")
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
