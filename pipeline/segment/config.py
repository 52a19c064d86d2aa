"""Settings of the vertebral-body segmentation stage (``configs/segmentation.yaml``).

The appearance model is the committed network (:mod:`.network`); these settings are the anatomy kept as
constraints around it and the level-naming rules. Every size is physical (mm, mm^3) so that the same settings
work for any pixel size and slice thickness. None is a clinical decision threshold: they are image-analysis
parameters and adult thoracolumbar plausibility ranges, chosen once for all series, never per case.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pipeline.config import default_config_dir, load_yaml, parse_section

SECTION = "segmentation"


@dataclass(frozen=True)
class SegmentationConfig:
    """Parameters of :func:`pipeline.segment.segment_vertebrae` (see :mod:`.instances` and :mod:`.labelling`)."""

    # ---- body instances from the network's probabilities (pipeline.segment.instances)
    core_probability: float = field(default=0.85, metadata={"range": (0.5, 0.99)})
    core_erosion_mm: float = field(default=2.0, metadata={"range": (0.0, 10.0)})
    merge_max_disc_share: float = field(default=0.2, metadata={"range": (0.0, 1.0)})
    merge_min_contact: float = field(default=0.5, metadata={"range": (0.0, 1.0)})
    merge_max_height_ratio: float = field(default=1.3, metadata={"range": (1.0, 3.0)})
    subvoxel_territory_mm: float = field(default=4.0, metadata={"range": (0.0, 20.0)})

    # ---- plausibility of a body (anything else is dropped as non-vertebral)
    min_volume_mm3: float = field(default=1500.0, metadata={"range": (0.0, 1e6)})
    body_depth_mm: tuple[float, float] = field(default=(12.0, 65.0), metadata={"range": (1.0, 150.0)})
    body_min_height_mm: float = field(default=3.0, metadata={"range": (0.5, 50.0)})
    body_max_height_mm: float = field(default=60.0, metadata={"range": (10.0, 150.0)})
    body_min_width_mm: float = field(default=10.0, metadata={"range": (0.0, 80.0)})
    column_max_offset_mm: float = field(default=30.0, metadata={"range": (5.0, 200.0)})

    # ---- level naming (pipeline.segment.labelling)
    s1_min_score: float = field(default=0.7, metadata={"range": (0.0, 1.0)})
    s1_uncertain_below: float = field(default=0.8, metadata={"range": (0.0, 1.0)})
    s1_rival_score: float = field(default=0.2, metadata={"range": (0.0, 1.0)})
    fused_gap_mm: float = field(default=2.0, metadata={"range": (0.0, 10.0)})
    count_missing_gap_ratio: float = field(default=1.6, metadata={"range": (1.0, 5.0)})
    count_short_step_ratio: float = field(default=0.6, metadata={"range": (0.0, 1.0)})
    count_merged_height_ratio: float = field(default=1.6, metadata={"range": (1.0, 5.0)})
    count_missing_disc_ratio: float = field(default=1.8, metadata={"range": (1.0, 5.0)})
    below_s1_max_spacing_ratio: float = field(default=2.0, metadata={"range": (1.0, 10.0)})

    def __post_init__(self) -> None:
        lo, hi = self.body_depth_mm
        if lo >= hi:
            raise ValueError(f"body_depth_mm must be [low, high] with low < high, got {[lo, hi]}")
        if self.body_min_height_mm >= self.body_max_height_mm:
            raise ValueError("body_min_height_mm must be below body_max_height_mm")


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
