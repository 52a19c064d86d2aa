"""Settings of the morphometry stage: ``configs/morphometry.yaml``, section ``morphometry``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.config import default_config_dir, load_yaml, parse_section

SECTION = "morphometry"
CONFIG_FILE = "morphometry.yaml"


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
    contour_smoothing_mm: float = _method(1.0, 0.0, 3.0)  # Gaussian sigma applied to the mask before tracing
    slice_search_mm: float = _method(6.0, 0.0, 50.0)  # the mid section is sought within this of mid_slice
    neighbour_slice_mm: float = _method(3.0, 0.0, 20.0)  # robustness check on slices within this (>= 1 slice)
    neighbour_min_area_fraction: float = _method(0.6, 0.0, 1.0)  # neighbour sections smaller than this are skipped
    height_slab_mm: float = _method(2.0, 0.0, 20.0)  # heights averaged over measured slices within this (0: mid only)
    min_section_area_mm2: float = _method(100.0, 0.0, None)
    spread_low_confidence_pct: float = _method(10.0, 0.0, 100.0)  # slice spread of height loss -> lower confidence
    spread_not_assessable_pct: float = _method(25.0, 0.0, 100.0)  # slice spread -> not assessable
    # |height loss - genant_mild_pct| below this: fracture or not is within the measurement uncertainty
    fracture_margin_pp: float = _method(3.0, 0.0, 20.0)
    max_slice_obliquity_deg: float = _method(35.0, 0.0, 90.0)  # slice normal vs left-right axis

    # Reference height.
    max_reference_gap_levels: int = _method(3, 1, 24)
    trend_neighbours: int = _method(3, 1, 10)  # normal bodies used for a one-sided trend
    reference_at_least_own_hp: bool = True  # an intact posterior wall taller than predicted is the reference
    max_growth_per_level_pct: float = _method(3.0, 0.0, 50.0)  # bound of the one-sided level-to-level trend

    # Plausibility of the segmentation (a bad mask gives "not assessable" or low confidence, not a false grade).
    min_segmentation_quality: float = _method(0.5, 0.0, 1.0)  # below: low confidence, not a reference body
    # A body's tallest height against the mean distance from its centre to its neighbours' centres along the column
    # (half its height + disc + half the neighbour's): at or beyond 1 there is no room for a disc, so the mask spans
    # one (leak, merge) and the body is not assessable; beyond the reference limit it is no reference body.
    max_height_to_spacing_ratio: float = _method(1.0, 0.5, 2.0)
    reference_max_height_to_spacing_ratio: float = _method(0.9, 0.5, 2.0)
    # Both endplates tilted more than this from the perpendicular to the local column (neighbours' centres): the
    # section is not a vertebral body seen along its axis (a wedge keeps one endplate square to the column).
    max_endplate_deviation_deg: float = _method(20.0, 0.0, 90.0)

    # Posterior wall and canal.
    wall_corner_inset_fraction: float = _method(0.10, 0.0, 0.4)
    canal_search_mm: float = _method(30.0, 5.0, 100.0)
    canal_start_tolerance_mm: float = _method(4.0, 0.0, 20.0)  # CSF must start this close behind the wall
    # The canal ends where darker than both of these (for canal_dark_min_mm): a share of the body's marrow (T2,
    # where marrow is bright and the ligamentum flavum is not much darker than the cord) and a share of the CSF
    # peak (STIR / water images, where suppressed marrow is darker than the ligament).
    canal_dark_marrow_fraction: float = _method(0.6, 0.0, 1.0)
    canal_dark_csf_fraction: float = _method(0.2, 0.0, 1.0)
    canal_dark_min_mm: float = _method(0.25, 0.0, 10.0)  # ... for at least this long
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
