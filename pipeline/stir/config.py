"""Settings of the STIR oedema stage (``configs/stir.yaml``, section ``stir``).

Every decision threshold is marked ``clinical=True`` and must cite its source in the YAML. The seeds
(001_* text and Table 1) establish *what* is measured (STIR hyperintensity of the marrow = oedema =
acute/subacute fracture; "no abnormal STIR signal" is a relative contraindication) but give no
quantitative cut-off, so the numbers here are project-defined from the noise model / normal-marrow
distribution and say so in their ``sources`` entries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pipeline.config import default_config_dir, load_yaml, parse_section
from pipeline.errors import ConfigError

SECTION = "stir"
CONFIG_FILE = "stir.yaml"


@dataclass(frozen=True)
class RegistrationConfig:
    """Rigid registration of the STIR (or T1) series onto the anatomy grid."""

    check_same_frame_alignment: bool = True  # look for patient motion even when the FoR UIDs match
    misalignment_tolerance_mm: float = field(default=1.5, metadata={"range": (0.1, 20.0)})
    alignment_check_levels: int = field(default=2, metadata={"range": (1, 10)})  # coarse pyramid levels used
    mask_margin_mm: float = field(default=25.0, metadata={"range": (0.0, 200.0)})
    histogram_bins: int = field(default=32, metadata={"range": (8, 256)})
    metric_samples: int = field(default=20000, metadata={"range": (500, None)})  # random samples per pyramid level
    # in-plane voxel pitch of each pyramid level, coarse -> fine; 0 = native pitch. Slices are never merged.
    pyramid_inplane_mm: tuple[float, ...] = (4.0, 2.0, 0.0)
    iterations_per_level: int = field(default=80, metadata={"range": (5, 2000)})
    # out-of-plane rotations are estimated only when both series have slices at most this thick
    out_of_plane_max_slice_mm: float = field(default=2.0, metadata={"range": (0.0, 20.0)})
    restarts: int = field(default=2, metadata={"range": (0, 10)})
    restart_shift_mm: float = field(default=3.0, metadata={"range": (0.0, 30.0)})
    restart_rotation_deg: float = field(default=3.0, metadata={"range": (0.0, 30.0)})
    max_residual_mm: float = field(default=2.0, metadata={"range": (0.1, 50.0)})
    min_mutual_information: float = field(default=0.05, metadata={"range": (0.0, 5.0)})
    random_seed: int = 20240601

    def __post_init__(self) -> None:
        if not self.pyramid_inplane_mm:
            raise ValueError("pyramid_inplane_mm must list at least one level (0 = native pitch)")
        if any(p < 0 for p in self.pyramid_inplane_mm):
            raise ValueError(f"pyramid_inplane_mm values must be >= 0, got {list(self.pyramid_inplane_mm)}")


@dataclass(frozen=True)
class MeasurementConfig:
    """Where and how the marrow and the canal fluid are sampled."""

    erosion_mm: float = field(default=2.0, metadata={"range": (0.0, 10.0)})
    smoothing_mm: float = field(default=1.0, metadata={"range": (0.0, 5.0)})  # in-plane Gaussian sigma
    central_width_fraction: float = field(default=0.7, metadata={"range": (0.1, 1.0)})  # of the left-right extent
    min_eroded_volume_mm3: float = field(default=1000.0, metadata={"range": (0.0, None)})
    min_eroded_voxels: int = field(default=50, metadata={"range": (1, None)})
    min_coverage: float = field(default=0.8, metadata={"range": (0.0, 1.0)})  # share of body inside the STIR FoV
    exclude_fov_edge_bodies: bool = True  # a body cut by the image edge (in-plane) is not assessable
    min_component_mm3: float = field(default=30.0, metadata={"range": (0.0, None)})
    canal_gap_mm: tuple[float, float] = (
        1.0,
        18.0,
    )  # AP band behind the posterior wall holding the thecal sac
    canal_half_width_mm: float = field(default=6.0, metadata={"range": (0.5, 30.0)})
    canal_height_fraction: float = field(default=0.6, metadata={"range": (0.1, 1.0)})
    fluid_percentile: float = field(default=98.0, metadata={"range": (50.0, 100.0)})
    min_fluid_voxels: int = field(default=20, metadata={"range": (1, None)})
    min_fluid_to_marrow: float = field(default=1.3, metadata={"range": (1.0, None)})

    def __post_init__(self) -> None:
        lo, hi = self.canal_gap_mm
        if not 0 <= lo < hi:
            raise ValueError(f"canal_gap_mm must be [near, far] with 0 <= near < far, got {list(self.canal_gap_mm)}")


@dataclass(frozen=True)
class ReferenceConfig:
    """How normal marrow is found when some (or all) bodies are abnormal."""

    min_mode_mass: float = field(default=0.25, metadata={"range": (0.05, 1.0)})
    min_reference_bodies: int = field(default=2, metadata={"range": (1, None)})
    max_iterations: int = field(default=6, metadata={"range": (1, 50)})
    # normal marrow / canal fluid: above the maximum the "normal" mode is implausibly bright (all abnormal?)
    max_marrow_to_fluid: float = field(default=0.45, metadata={"range": (0.05, 1.0), "clinical": True})
    max_marrow_to_fluid_substitute: float = field(default=0.7, metadata={"range": (0.05, 1.0), "clinical": True})
    prior_marrow_to_fluid: float = field(default=0.25, metadata={"range": (0.01, 1.0), "clinical": True})
    prior_marrow_to_fluid_substitute: float = field(default=0.45, metadata={"range": (0.01, 1.0), "clinical": True})

    def __post_init__(self) -> None:
        if self.prior_marrow_to_fluid >= self.max_marrow_to_fluid:
            raise ValueError("prior_marrow_to_fluid must be below max_marrow_to_fluid")
        if self.prior_marrow_to_fluid_substitute >= self.max_marrow_to_fluid_substitute:
            raise ValueError("prior_marrow_to_fluid_substitute must be below max_marrow_to_fluid_substitute")


@dataclass(frozen=True)
class DecisionConfig:
    """Voxel threshold, body decision, pattern and T1 corroboration."""

    threshold_k_sd: float = field(default=3.0, metadata={"range": (1.0, 10.0), "clinical": True})
    threshold_floor_fluid_fraction: float = field(default=0.15, metadata={"range": (0.0, 1.0), "clinical": True})
    edema_fraction_min: float = field(default=0.10, metadata={"range": (0.01, 1.0), "clinical": True})
    short_body_ratio: float = field(default=0.7, metadata={"range": (0.0, 1.0)})  # vs neighbours' height
    band_far_to_near_max: float = field(default=0.5, metadata={"range": (0.0, 1.0)})  # see measure.classify_pattern
    t1_min_drop: float = field(default=0.10, metadata={"range": (0.0, 1.0), "clinical": True})
    t1_min_voxels: int = field(default=30, metadata={"range": (1, None)})


@dataclass(frozen=True)
class ConfidenceConfig:
    """Multiplicative confidence factors (0..1); see ``configs/stir.yaml`` for why each exists."""

    margin_scale: float = field(default=0.10, metadata={"range": (0.001, 1.0)})
    substitute_factor: float = field(default=0.8, metadata={"range": (0.0, 1.0)})
    t1_disagreement_factor: float = field(default=0.6, metadata={"range": (0.0, 1.0)})
    registered_factor: float = field(default=0.9, metadata={"range": (0.0, 1.0)})
    few_reference_factor: float = field(default=0.8, metadata={"range": (0.0, 1.0)})
    prior_reference_factor: float = field(default=0.5, metadata={"range": (0.0, 1.0)})
    no_fluid_factor: float = field(default=0.7, metadata={"range": (0.0, 1.0)})
    short_body_factor: float = field(default=0.6, metadata={"range": (0.0, 1.0)})  # "no oedema" in a short body


@dataclass(frozen=True)
class StirConfig:
    """All settings of :func:`pipeline.stir.assess_stir`."""

    registration: RegistrationConfig = RegistrationConfig()
    measurement: MeasurementConfig = MeasurementConfig()
    reference: ReferenceConfig = ReferenceConfig()
    decision: DecisionConfig = DecisionConfig()
    confidence: ConfidenceConfig = ConfidenceConfig()


def load_stir_config(path: Path | None = None) -> StirConfig:
    """Read and validate the ``stir`` section of ``configs/stir.yaml``.

    Parameters
    ----------
    path : Path, optional
        The YAML file; default ``<config dir>/stir.yaml`` (see :func:`pipeline.config.default_config_dir`).

    Raises
    ------
    ConfigError
        File missing/unreadable, no ``stir`` section, unknown field, wrong type, out of range,
        or a clinical threshold without a ``sources`` entry.
    """
    p = Path(path) if path is not None else default_config_dir() / CONFIG_FILE
    data = load_yaml(p)
    if SECTION not in data:
        raise ConfigError(f"{p}: no '{SECTION}' section; add a top-level 'stir:' mapping (see configs/stir.yaml)")
    return parse_section(StirConfig, data[SECTION], where=f"{p}: {SECTION}")
