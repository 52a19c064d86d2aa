"""Settings of the ingest stage (``configs/ingest.yaml``).

None of these numbers is a clinical threshold: they describe DICOM geometry tolerances, MR physics
ranges used to recognise a sequence type, and preferences for picking series. Where a range comes
from MR physics or vendor practice, ``configs/ingest.yaml`` says where, next to the value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from pipeline.config import default_config_dir, load_yaml, parse_section
from pipeline.model import Role, Substitute

CONFIG_FILE = "ingest.yaml"

Range = tuple[float | None, float | None]


@dataclass(frozen=True)
class DiscoveryConfig:
    """How a folder is walked and how headers are read."""

    # Values longer than this are not read while scanning headers (pydicom ``defer_size``): private
    # blobs (Siemens CSA, Philips private sequences are SQ and still parsed) and hostile lengths are skipped.
    defer_size_bytes: int = field(default=4096, metadata={"range": (256, 1 << 24)})
    max_files: int = field(default=500_000, metadata={"range": (1, None)})
    # NIfTI files whose name matches one of these (fnmatch, case-insensitive) are label maps, not images.
    nifti_skip_patterns: tuple[str, ...] = ("*label*", "*mask*", "*seg*", "*_dseg*", "*_roi*")
    # HMAC key of ``patient_key``; a site should set its own so keys cannot be recomputed from an ID.
    patient_key_salt: str = "spine-assess-default-salt"
    # Modalities that are considered images of interest; others are listed but never chosen.
    modalities: tuple[str, ...] = ("MR",)


@dataclass(frozen=True)
class GeometryConfig:
    """Tolerances for orientation and for assembling slices into a volume."""

    # A plane whose normal is within this angle of a cardinal axis is SAGITTAL/CORONAL/AXIAL, else OBLIQUE.
    orientation_tolerance_deg: float = field(default=20.0, metadata={"range": (0.0, 45.0)})
    # Slices of one stack whose orientations differ by more than this are inconsistent.
    orientation_consistency_deg: float = field(default=1.0, metadata={"range": (0.0, 20.0)})
    min_slices: int = field(default=3, metadata={"range": (2, None)})
    # Each gap between neighbouring slices must be within this fraction of the median gap ...
    spacing_tolerance_ratio: float = field(default=0.05, metadata={"range": (0.0, 0.5)})
    # ... a gap larger than this multiple of the median means missing slices ...
    missing_slice_factor: float = field(default=1.5, metadata={"range": (1.0, 10.0)})
    # ... and two slices closer than this (mm) are duplicates.
    duplicate_position_mm: float = field(default=0.01, metadata={"range": (0.0, 1.0)})
    # Largest in-plane drift of slice origins between neighbours (fraction of the pixel pitch) before
    # the stack counts as sheared (slices not stacked along their normal).
    max_in_plane_shift_ratio: float = field(default=0.5, metadata={"range": (0.0, 10.0)})
    # Relative tolerance for PixelSpacing to agree between slices of one stack.
    pixel_spacing_tolerance_ratio: float = field(default=0.01, metadata={"range": (0.0, 0.5)})
    # Memory guard: a volume larger than this many million voxels (float32: 4 bytes each) is refused.
    max_megavoxels: float = field(default=256.0, metadata={"range": (0.001, None)})


@dataclass(frozen=True)
class NameRule:
    """A regular expression on the series' names and the role it implies (first match wins)."""

    name: str
    pattern: str
    role: Role
    substitute: Substitute | None = None
    confidence: float = field(default=0.8, metadata={"range": (0.0, 1.0)})

    def __post_init__(self) -> None:
        try:
            re.compile(self.pattern)
        except re.error as exc:
            raise ValueError(f"name rule {self.name!r}: pattern is not a valid regular expression: {exc}") from None


@dataclass(frozen=True)
class PhysicsRule:
    """Conditions on acquisition parameters and the role they imply (first match wins).

    A condition left at its default (``None`` / empty) is not checked. A rule whose condition needs a
    value the header does not have (e.g. ``tr_ms`` without RepetitionTime) does not match.
    """

    name: str
    role: Role
    substitute: Substitute | None = None
    confidence: float = field(default=0.75, metadata={"range": (0.0, 1.0)})
    inversion_recovery: bool | None = None
    fat_suppressed: bool | None = None
    contrast_given: bool | None = None
    ti_ms: Range | None = None  # inclusive [lo, hi], either end may be null
    tr_ms: Range | None = None
    te_ms: Range | None = None
    image_type_any: tuple[str, ...] = ()  # any ImageType / FrameType value equal to one of these
    scanning_sequence_none: tuple[str, ...] = ()  # ScanningSequence must contain none of these

    def __post_init__(self) -> None:
        for label, rng in (("ti_ms", self.ti_ms), ("tr_ms", self.tr_ms), ("te_ms", self.te_ms)):
            if rng is not None and rng[0] is not None and rng[1] is not None and rng[0] > rng[1]:
                raise ValueError(f"physics rule {self.name!r}: {label} range [{rng[0]}, {rng[1]}] is empty")


@dataclass(frozen=True)
class RoleConfig:
    """Rules that name a series T1 / T2 / STIR / OTHER (see ``configs/ingest.yaml`` for the rule sets)."""

    name_rules: tuple[NameRule, ...] = ()
    physics_rules: tuple[PhysicsRule, ...] = ()
    # Pairs [specific, general]: when one source says `specific` and the other `general`, this is not a
    # contradiction but a refinement (fat suppression by SPAIR is often invisible in ScanOptions, a STIR
    # may lack its IR flag; a name may say only "T2" for a fat-saturated T2) -> the specific role wins.
    refinements: tuple[tuple[Role, Role], ...] = ((Role.STIR, Role.T2),)
    # Confidence multiplier when name and physics contradict each other (the stronger one wins).
    disagreement_factor: float = field(default=0.6, metadata={"range": (0.0, 1.0)})
    # Confidence given to OTHER when no rule matched at all.
    unknown_confidence: float = field(default=0.3, metadata={"range": (0.0, 1.0)})
    # ScanOptions values (and Enhanced MR SpectrallySelectedSuppression values) that mean fat suppression.
    fat_suppression_tokens: tuple[str, ...] = (
        "FS",
        "SFS",
        "FAT",
        "FATSAT",
        "FAT_SAT",
        "SPAIR",
        "SPIR",
        "CHESS",
    )


@dataclass(frozen=True)
class SelectionWeights:
    """Weights of the series score; each term is in [0, 1] relative to the best candidate."""

    coverage: float = field(default=0.5, metadata={"range": (0.0, None)})
    resolution: float = field(default=0.3, metadata={"range": (0.0, None)})
    slices: float = field(default=0.1, metadata={"range": (0.0, None)})
    confidence: float = field(default=0.1, metadata={"range": (0.0, None)})
    same_frame_of_reference: float = field(default=0.2, metadata={"range": (0.0, None)})


@dataclass(frozen=True)
class SelectionConfig:
    """Which series each later stage gets."""

    anatomy_roles: tuple[Role, ...] = (Role.T2, Role.T1)  # in order of preference
    # STIR candidates in order of preference; "STIR" means a true (inversion recovery) STIR.
    stir_preference: tuple[str, ...] = field(default=("STIR", "T2_FATSAT", "DIXON_WATER"))
    stir_as_anatomy_fallback: bool = True
    other_as_anatomy_fallback: bool = True
    weights: SelectionWeights = SelectionWeights()

    def __post_init__(self) -> None:
        known = {"STIR", *(s.value for s in Substitute)}
        bad = [s for s in self.stir_preference if s not in known]
        if bad:
            raise ValueError(f"stir_preference: unknown entry {bad[0]!r}; use {', '.join(sorted(known))}")


@dataclass(frozen=True)
class IngestConfig:
    """Everything the ingest stage can be told; built by :func:`load_ingest_config`."""

    discovery: DiscoveryConfig = DiscoveryConfig()
    geometry: GeometryConfig = GeometryConfig()
    roles: RoleConfig = RoleConfig()
    selection: SelectionConfig = SelectionConfig()


@lru_cache(maxsize=1)
def default_ingest_config() -> IngestConfig:
    """The shipped ``configs/ingest.yaml`` (read once); used when a function is called without ``cfg``."""
    return load_ingest_config()


def load_ingest_config(path: Path | None = None) -> IngestConfig:
    """Read and validate the ingest settings.

    Parameters
    ----------
    path : Path, optional
        A YAML file; default ``<config dir>/ingest.yaml`` (see :func:`pipeline.config.default_config_dir`).

    Raises
    ------
    ConfigError
        The file is missing, not YAML, or a field is unknown, mistyped or out of range.
    """
    path = Path(path) if path is not None else default_config_dir() / CONFIG_FILE
    return parse_section(IngestConfig, load_yaml(path), where=str(path))
