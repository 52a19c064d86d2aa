"""Settings of the vertebral-body segmentation stage (``configs/segmentation.yaml``).

Every size is a physical size (mm, mm^2, mm^3) so that the same settings work for any voxel pitch and
slice thickness; nothing here is in pixels. None of these numbers is a clinical decision threshold: they
are image-analysis parameters and anatomical plausibility ranges (adult thoracolumbar vertebral bodies
and discs), chosen once for all series, never per case.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pipeline.config import default_config_dir, load_yaml, parse_section

SECTION = "segmentation"


@dataclass(frozen=True)
class SegmentationConfig:
    """Parameters of :func:`pipeline.segment.segment_vertebrae`.

    Grouped by step: working grid and intensity (``working_pitch_mm`` .. ``n4_iterations``), spinal canal /
    column axis (``canal_*``, ``column_*``), disc spaces along the column (``body_*``, ``disc_*``), per-body
    segmentation (``contour_*``, ``rim_mm``, ``body_*``), level labelling (``sacrum_*``, ``*_gap_ratio``, ``count_*``:
    see :mod:`.labelling`).
    """

    # ---- working grid and intensity
    working_pitch_mm: float = field(default=1.0, metadata={"range": (0.3, 3.0)})
    bias_correction: bool = True
    n4_pitch_mm: float = field(default=8.0, metadata={"range": (2.0, 20.0)})
    n4_iterations: int = field(default=20, metadata={"range": (1, 200)})

    # ---- spinal canal and column axis (mid-sagittal slab)
    canal_halfwidth_mm: tuple[float, float] = field(default=(3.0, 12.0), metadata={"range": (0.5, 40.0)})
    canal_smoothing_mm: float = field(default=4.0, metadata={"range": (0.0, 20.0)})
    canal_max_slope: float = field(default=1.5, metadata={"range": (0.1, 5.0)})
    canal_step_penalty: float = field(default=0.1, metadata={"range": (0.0, 10.0)})
    corridor_mm: float = field(default=15.0, metadata={"range": (2.0, 100.0)})
    canal_candidates: int = field(default=4, metadata={"range": (1, 10)})
    canal_min_support: float = field(default=0.25, metadata={"range": (0.0, 1.0)})
    slab_halfwidth_mm: float = field(default=3.0, metadata={"range": (0.0, 20.0)})
    min_marrow_above_background: float = field(default=0.06, metadata={"range": (0.0, 1.0)})
    column_smoothing_mm: float = field(default=8.0, metadata={"range": (1.0, 40.0)})
    wall_search_mm: tuple[float, float] = field(default=(1.0, 20.0), metadata={"range": (0.0, 60.0)})
    band_mm: tuple[float, float] = field(default=(4.0, 24.0), metadata={"range": (0.0, 80.0)})
    band_smoothing_mm: float = field(default=2.5, metadata={"range": (0.0, 20.0)})
    marrow_k_sigma: float = field(default=2.0, metadata={"range": (0.5, 10.0)})
    edge_scale_per_mm: float = field(default=1.0, metadata={"range": (0.01, 100.0)})
    disc_closing_mm: float = field(default=4.0, metadata={"range": (0.0, 30.0)})

    # ---- disc spaces along the column (1-D partition into bodies and discs)
    body_height_mm: tuple[float, float] = field(default=(5.0, 50.0), metadata={"range": (1.0, 120.0)})
    body_typical_min_mm: float = field(default=14.0, metadata={"range": (1.0, 60.0)})
    body_short_penalty_per_mm: float = field(default=2.0, metadata={"range": (0.0, 20.0)})
    disc_height_mm: tuple[float, float] = field(default=(1.0, 22.0), metadata={"range": (0.5, 60.0)})
    disc_typical_max_mm: float = field(default=16.0, metadata={"range": (1.0, 60.0)})
    disc_long_penalty_per_mm: float = field(default=1.0, metadata={"range": (0.0, 20.0)})
    long_body_ratio: float = field(default=1.45, metadata={"range": (1.0, 5.0)})
    short_body_ratio: float = field(default=0.6, metadata={"range": (0.0, 1.0)})
    thin_disc_ratio: float = field(default=0.4, metadata={"range": (0.0, 1.0)})
    half_body_ratio: float = field(default=0.8, metadata={"range": (0.0, 1.0)})
    disc_space_ratio: float = field(default=1.4, metadata={"range": (1.0, 5.0)})
    split_min_dip: float = field(default=0.15, metadata={"range": (0.0, 1.0)})
    nucleus_min_contrast: float = field(default=0.15, metadata={"range": (0.0, 5.0)})
    nucleus_min_mm: float = field(default=2.0, metadata={"range": (0.5, 20.0)})
    thin_body_min_mm: float = field(default=3.0, metadata={"range": (1.0, 30.0)})
    outside_cost: float = field(default=0.45, metadata={"range": (0.0, 1.0)})
    segment_cost: float = field(default=0.5, metadata={"range": (0.0, 50.0)})

    # ---- per-body segmentation (polar contour on each sagittal slice)
    contour_rays: int = field(default=96, metadata={"range": (16, 512)})
    contour_step_mm: float = field(default=0.5, metadata={"range": (0.1, 2.0)})
    contour_max_radius_mm: float = field(default=40.0, metadata={"range": (5.0, 100.0)})
    contour_max_jump_mm: float = field(default=3.0, metadata={"range": (0.1, 20.0)})
    contour_jump_penalty: float = field(default=0.05, metadata={"range": (0.0, 10.0)})
    contour_inside_mm: float = field(default=3.0, metadata={"range": (0.5, 20.0)})
    contour_outside_mm: float = field(default=2.0, metadata={"range": (0.5, 20.0)})
    marrow_dark_rel: float = field(default=0.2, metadata={"range": (0.0, 1.0)})
    marrow_bright_k_sigma: float = field(default=5.0, metadata={"range": (0.5, 100.0)})
    inclusion_bright_rel: float = field(default=1.0, metadata={"range": (0.0, 10.0)})
    inclusion_valley: float = field(default=0.5, metadata={"range": (0.05, 1.0)})
    inclusion_line_mm: float = field(default=1.0, metadata={"range": (0.0, 5.0)})
    inclusion_min_fraction: float = field(default=0.05, metadata={"range": (0.0, 1.0)})
    cortex_halfwidth_mm: float = field(default=1.5, metadata={"range": (0.2, 10.0)})
    contour_valley_crossing_per_mm: float = field(default=0.3, metadata={"range": (0.0, 10.0)})
    core_radius_mm: float = field(default=7.0, metadata={"range": (1.0, 30.0)})
    marrow_min_rel_sigma: float = field(default=0.04, metadata={"range": (0.0, 1.0)})
    contour_crossing_per_mm: float = field(default=0.15, metadata={"range": (0.0, 10.0)})
    contour_prior_per_mm: float = field(default=0.02, metadata={"range": (0.0, 10.0)})
    cortex_max_mm: float = field(default=3.0, metadata={"range": (0.0, 10.0)})
    cortex_fraction: float = field(default=0.75, metadata={"range": (0.0, 1.0)})
    rim_mm: float = field(default=0.0, metadata={"range": (-3.0, 5.0)})
    body_depth_mm: tuple[float, float] = field(default=(12.0, 60.0), metadata={"range": (1.0, 150.0)})
    anterior_margin_mm: float = field(default=10.0, metadata={"range": (0.0, 100.0)})
    body_max_width_mm: float = field(default=65.0, metadata={"range": (10.0, 150.0)})
    footprint_band_mm: float = field(default=3.0, metadata={"range": (0.0, 20.0)})
    footprint_shape_weight: float = field(default=0.5, metadata={"range": (0.0, 10.0)})
    body_width_to_depth: float = field(default=1.4, metadata={"range": (0.5, 3.0)})
    footprint_slice_cover: float = field(default=0.35, metadata={"range": (0.0, 1.0)})
    footprint_tolerance_mm: float = field(default=2.0, metadata={"range": (0.0, 20.0)})
    lateral_growth_mm: float = field(default=3.0, metadata={"range": (0.0, 30.0)})
    lateral_level_drift: float = field(default=0.35, metadata={"range": (0.0, 1.0)})
    lateral_min_area_ratio: float = field(default=0.3, metadata={"range": (0.0, 1.0)})
    lateral_min_marrow_fraction: float = field(default=0.55, metadata={"range": (0.0, 1.0)})
    min_volume_mm3: float = field(default=1500.0, metadata={"range": (0.0, 1e6)})

    # ---- level labelling (see pipeline.segment.labelling)
    sacrum_min_tilt_deg: float = field(default=25.0, metadata={"range": (0.0, 90.0)})
    sacrum_min_turn_deg: float = field(default=30.0, metadata={"range": (0.0, 90.0)})
    sacrum_max_tilt_deg: float = field(default=85.0, metadata={"range": (10.0, 90.0)})
    sacrum_max_mobile_below: int = field(default=1, metadata={"range": (0, 10)})
    ordinary_body_height_ratio: float = field(default=0.75, metadata={"range": (0.0, 2.0)})
    sacrum_tilt_scale_deg: float = field(default=10.0, metadata={"range": (1.0, 90.0)})
    mobile_gap_ratio: float = field(default=0.5, metadata={"range": (0.0, 5.0)})
    fused_gap_ratio: float = field(default=0.4, metadata={"range": (0.0, 5.0)})
    min_reference_gap_mm: float = field(default=4.0, metadata={"range": (0.0, 50.0)})
    sacrum_min_score: float = field(default=1.0, metadata={"range": (-3.0, 3.0)})
    sacrum_last_body_fused: float = field(default=-0.5, metadata={"range": (-1.0, 1.0)})
    sacrum_clear_score: float = field(default=1.5, metadata={"range": (-3.0, 3.0)})
    sacrum_min_margin: float = field(default=0.5, metadata={"range": (0.0, 6.0)})
    sacrum_unconfirmed_confidence: float = field(default=0.5, metadata={"range": (0.0, 1.0)})
    # an S1 candidate shorter than this share of the median body above it is a partly seen body, not an anchor
    sacrum_min_height_ratio: float = field(default=0.7, metadata={"range": (0.0, 2.0)})
    count_missing_gap_ratio: float = field(default=0.75, metadata={"range": (0.1, 5.0)})
    count_missing_disc_ratio: float = field(default=2.5, metadata={"range": (1.0, 10.0)})
    count_merged_height_ratio: float = field(default=1.6, metadata={"range": (1.0, 5.0)})
    lumbarised_disc_ratio: float = field(default=0.8, metadata={"range": (0.0, 5.0)})
    sacralised_disc_ratio: float = field(default=0.25, metadata={"range": (0.0, 1.0)})
    # ---- plausibility of a segmented body (anything else is rejected as non-vertebral)
    body_min_height_mm: float = field(default=5.0, metadata={"range": (0.0, 100.0)})
    body_max_height_mm: float = field(default=60.0, metadata={"range": (1.0, 200.0)})
    body_min_width_mm: float = field(default=12.0, metadata={"range": (0.0, 200.0)})
    smoothing_mm: float = field(default=0.6, metadata={"range": (0.0, 5.0)})

    def __post_init__(self) -> None:
        if self.contour_rays % 4:
            raise ValueError(f"contour_rays must be a multiple of 4, got {self.contour_rays}")
        for name in (
            "canal_halfwidth_mm",
            "wall_search_mm",
            "band_mm",
            "body_height_mm",
            "disc_height_mm",
            "body_depth_mm",
        ):
            lo, hi = getattr(self, name)
            if lo >= hi:
                raise ValueError(f"{name} must be [low, high] with low < high, got {[lo, hi]}")


def load_segmentation_config(path: Path | None = None) -> SegmentationConfig:
    """Read the ``segmentation`` section of ``configs/segmentation.yaml`` (or ``path``).

    Raises
    ------
    ConfigError
        File missing/unreadable, or a field unknown, mistyped or out of range (the message names it).
    """
    p = Path(path) if path is not None else default_config_dir() / "segmentation.yaml"
    data = load_yaml(p)
    return parse_section(SegmentationConfig, data.get(SECTION), where=f"{p}: {SECTION}")
