"""STIR marrow oedema per vertebral body (issue 6).

Public API: :func:`assess_stir`, :class:`StirConfig`, :func:`load_stir_config`, and
:func:`overlay_rgb` for report pictures.
"""

from pipeline.stir.assess import NOT_AVAILABLE_REASON, assess_stir
from pipeline.stir.config import StirConfig, load_stir_config

__all__ = ["NOT_AVAILABLE_REASON", "StirConfig", "assess_stir", "load_stir_config"]
