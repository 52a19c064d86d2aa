"""The committed network (pipeline.segment.network): its card, integrity check and inference on the CPU."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from pipeline.errors import ConfigError
from pipeline.segment.network import CLASSES, MODEL_DIR, MODEL_NAME, load_card, predict


def test_the_committed_model_loads_with_its_card():
    card = load_card()
    assert card.classes == CLASSES
    assert 1.0 <= card.pitch_mm <= 2.5
    assert card.path.stat().st_size < 10e6  # a few MB, committed in the package
    raw = card.raw
    assert raw["training"]["command"].startswith("python -m pipeline.segment.train")
    assert raw["training"]["sets"]  # the card names the training subjects
    assert (MODEL_DIR / "MODEL_CARD.md").is_file()


def test_probabilities_have_the_input_shape_and_sum_to_one():
    card = load_card()
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 100, (3, 37, 45)).astype(np.float32)  # not a multiple of the network's stride
    p = predict(x, card)
    assert p.shape == (3, len(CLASSES), 37, 45)
    assert np.allclose(p.sum(axis=1), 1.0, atol=1e-4)


def test_a_damaged_model_is_refused(tmp_path):
    for ext in ("onnx", "json"):
        shutil.copy(MODEL_DIR / f"{MODEL_NAME}.{ext}", tmp_path / f"{MODEL_NAME}.{ext}")
    with (tmp_path / f"{MODEL_NAME}.onnx").open("r+b") as f:
        f.seek(200)
        f.write(b"\x00\x01\x02\x03")
    with pytest.raises(ConfigError, match="does not match the model card"):
        load_card(tmp_path)


def test_a_missing_model_or_a_card_for_other_classes_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="segmentation model .* is missing"):
        load_card(tmp_path)
    for ext in ("onnx", "json"):
        shutil.copy(MODEL_DIR / f"{MODEL_NAME}.{ext}", tmp_path / f"{MODEL_NAME}.{ext}")
    card = json.loads((tmp_path / f"{MODEL_NAME}.json").read_text())
    card["classes"] = ["background", "body"]
    (tmp_path / f"{MODEL_NAME}.json").write_text(json.dumps(card))
    with pytest.raises(ConfigError, match="model classes"):
        load_card(tmp_path)
