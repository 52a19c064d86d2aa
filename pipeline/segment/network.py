"""The committed vertebral-body network: loading its model card and running it with onnxruntime on the CPU.

The model (``models/vertebra_net.onnx``) and its card (``models/vertebra_net.json``: classes, input pitch and
normalisation, training data and command, sha256) ship inside the package; nothing is ever downloaded. The
sha256 in the card is checked when the model is loaded, so a damaged or swapped file is refused with a clear
error instead of silently giving other masks. See ``models/MODEL_CARD.md``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import ConfigError
from pipeline.segment.grid import normalise_slices

logger = logging.getLogger(__name__)

MODEL_DIR = Path(__file__).resolve().parent / "models"
MODEL_NAME = "vertebra_net"
CLASSES = ("background", "vertebral_body", "disc", "s1")


@dataclass(frozen=True)
class ModelCard:
    """What the inference needs to know about the network (read from its JSON card)."""

    path: Path
    sha256: str
    pitch_mm: float
    size_multiple: int
    classes: tuple[str, ...]
    raw: dict[str, Any]


def load_card(model_dir: Path = MODEL_DIR) -> ModelCard:
    """Read and check the model card beside the ONNX file.

    Raises
    ------
    ConfigError
        The model or card is missing, unreadable, for other classes, or the file's sha256 differs from the card.
    """
    onnx_path = model_dir / f"{MODEL_NAME}.onnx"
    card_path = model_dir / f"{MODEL_NAME}.json"
    if not onnx_path.is_file() or not card_path.is_file():
        raise ConfigError(
            f"{model_dir}: the segmentation model ({MODEL_NAME}.onnx and {MODEL_NAME}.json) is missing; "
            "reinstall spine-assess or rebuild it with `python -m pipeline.segment.train` (see MODEL_CARD.md)"
        )
    try:
        raw = json.loads(card_path.read_text())
        card = ModelCard(
            path=onnx_path,
            sha256=str(raw["sha256"]),
            pitch_mm=float(raw["input"]["pitch_mm"]),
            size_multiple=int(raw["input"]["size_multiple"]),
            classes=tuple(raw["classes"]),
            raw=raw,
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{card_path}: unreadable model card ({exc})") from exc
    if card.classes != CLASSES:
        raise ConfigError(f"{card_path}: model classes {list(card.classes)} differ from the expected {list(CLASSES)}")
    digest = hashlib.sha256(onnx_path.read_bytes()).hexdigest()
    if digest != card.sha256:
        raise ConfigError(
            f"{onnx_path}: sha256 {digest[:12]}... does not match the model card ({card.sha256[:12]}...); "
            "the model file is damaged or was replaced without its card"
        )
    return card


_lock = threading.Lock()


@lru_cache(maxsize=2)
def _session(path: str, sha256: str) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1  # one thread: batch and listener run one study per worker process
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def predict(slices: np.ndarray, card: ModelCard, *, batch: int = 4) -> np.ndarray:
    """Class probabilities of every sagittal slice.

    Parameters
    ----------
    slices : numpy.ndarray
        ``(slice, row, col)`` raw intensities on the working grid (``card.pitch_mm`` pixels, rows head -> feet,
        columns anterior -> posterior).
    card : ModelCard

    Returns
    -------
    numpy.ndarray
        ``(slice, class, row, col)`` float32 probabilities (sum 1 over classes).
    """
    x = normalise_slices(slices)
    n, h, w = x.shape
    m = card.size_multiple
    hp, wp = -(-h // m) * m, -(-w // m) * m
    padded = np.zeros((n, 1, hp, wp), np.float32)
    padded[:, 0, :h, :w] = x
    with _lock:
        sess = _session(str(card.path), card.sha256)
    out = np.empty((n, len(card.classes), h, w), np.float32)
    for i in range(0, n, batch):
        prob = sess.run(None, {"image": padded[i : i + batch]})[0]
        out[i : i + batch] = prob[:, :, :h, :w]
    return out
