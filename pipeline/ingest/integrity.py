"""Is a DICOM file cut short? A cheap check by the file's own lengths, for messages that say "truncated".

A file that ends before its pixel data does (an interrupted copy or transfer) fails later as an obscure decoder
error ("End of file reached before delimiter"). :func:`truncation` names it: ``inspect`` lists such files and
``run`` says "truncated" in the reason a series could not be loaded.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import pydicom
from pydicom.tag import Tag

logger = logging.getLogger(__name__)

_PIXEL_DATA = Tag(0x7FE0, 0x0010)
_UNDEFINED = 0xFFFFFFFF


def truncation(path: Path) -> str | None:
    """Why ``path`` is a truncated DICOM file (``"file ends at byte N ..."``), or ``None`` when it is complete
    (or not readable for another reason, which is reported elsewhere)."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError:
        return None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pydicom_log = logging.getLogger("pydicom")
        level = pydicom_log.level
        pydicom_log.setLevel(logging.CRITICAL)  # the warning is returned, not logged a second time
        try:
            ds = pydicom.dcmread(path, defer_size=1024, force=True)
        except EOFError:
            return f"truncated: the file ends at byte {size} in the middle of its header"
        except Exception:  # noqa: BLE001 - not a truncation question: other readers report it
            return None
        finally:
            pydicom_log.setLevel(level)
    if any("End of file" in str(w.message) for w in caught):
        return f"truncated: the file ends at byte {size} before its pixel data is complete"
    raw = ds._dict.get(_PIXEL_DATA)  # the raw (deferred) element: its length and offset, not the pixels
    length = getattr(raw, "length", None)
    tell = getattr(raw, "value_tell", None)
    if isinstance(length, int) and isinstance(tell, int) and length != _UNDEFINED and tell + length > size:
        return f"truncated: the file ends at byte {size}, its pixel data needs {tell + length} bytes"
    return None


__all__ = ["truncation"]
