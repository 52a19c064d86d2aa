"""Vertebral body segmentation and level labelling on sagittal MRI (a learned body model, anatomy as constraints).

Public API::

    from pipeline.segment import SegmentationConfig, load_segmentation_config, parse_anchor, segment_vertebrae
    result = segment_vertebrae(volume, cfg=load_segmentation_config(), contrast=Role.T2,
                               anchor=parse_anchor("L5=lowest"))

The network (``models/vertebra_net.onnx``, run by onnxruntime on one CPU thread) gives per-pixel probabilities
of vertebral body, disc and S1 on every sagittal slice; :mod:`.instances` turns them into one mask per body;
:mod:`.labelling` names the levels from S1 up. Training code: :mod:`pipeline.segment.train` (needs the ``train``
extra). Model card: ``models/MODEL_CARD.md``.
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
