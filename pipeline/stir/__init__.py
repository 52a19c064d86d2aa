"""STIR marrow oedema per vertebral body (issue 6; method and outputs in docs/stir.md).

Public API: :func:`assess_stir`, :class:`StirConfig`, :func:`load_stir_config`; helpers
:func:`pipeline.stir.overlay.overlay_rgb` (report picture) and
:func:`pipeline.stir.labelmap.segmentation_from_label_map` (run on a given label map).
"""

from pipeline.stir.assess import NOT_AVAILABLE_REASON, assess_stir
from pipeline.stir.config import StirConfig, load_stir_config

__all__ = ["NOT_AVAILABLE_REASON", "StirConfig", "assess_stir", "load_stir_config"]
