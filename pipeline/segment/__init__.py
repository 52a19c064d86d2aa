"""Vertebral body segmentation and level labelling on sagittal MRI (classical image analysis).

Public API::

    from pipeline.segment import SegmentationConfig, load_segmentation_config, parse_anchor, segment_vertebrae
    result = segment_vertebrae(volume, cfg=load_segmentation_config(), contrast=Role.T2,
                               anchor=parse_anchor("L5=lowest"))
"""

from pipeline.segment.config import SegmentationConfig, load_segmentation_config
from pipeline.segment.labelling import Anchor, parse_anchor, parse_anchor_option
from pipeline.segment.segmenter import segment_vertebrae

__all__ = [
    "Anchor",
    "SegmentationConfig",
    "load_segmentation_config",
    "parse_anchor",
    "parse_anchor_option",
    "segment_vertebrae",
]
