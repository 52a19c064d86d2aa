"""--anchor next to the detected sacrum (issue 16 item 2): no anchor silently contradicts what was detected."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.cli import main
from pipeline.level_anchor import anchor_warning, level_shift, resolve_anchor
from pipeline.levels import Level
from pipeline.model import SegmentationResult, VertebraSeg
from pipeline.segment import parse_anchor
from pipeline.volume import Volume

SAMPLE = Path(__file__).resolve().parents[1] / "sample_dicom" / "02_acute_osteoporotic_wedge"
DISAGREES = "disagrees with the detected sacrum"


def _seg(levels: list[Level | None], *, sacrum: bool) -> SegmentationResult:
    """Bodies 30 mm apart from the head down; the last is the detected S1 when ``sacrum``."""
    vol = Volume(np.zeros((2, 2, 2), np.uint16), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), np.eye(3))
    verts = tuple(
        VertebraSeg(
            i + 1, lv, 0.9, (0.0, 0.0, -30.0 * i), 0, (0, 0, 0, 1, 1, 1), 0.9, is_sacrum=sacrum and lv is Level.S1
        )
        for i, lv in enumerate(levels)
    )
    return SegmentationResult(vol, verts, "1.2", sacrum, "test")


AUTO = _seg([Level.T12, Level.L1, Level.L2, Level.L3, Level.L4, Level.L5, Level.S1], sacrum=True)


def test_lowest_means_the_lowest_body_above_a_detected_sacrum():
    r = resolve_anchor(parse_anchor("L5=lowest"), AUTO)
    assert r.anchor.position == 6 and r.anchor.level is Level.L5 and "above the detected sacrum" in r.note
    assert resolve_anchor(parse_anchor("S1=lowest"), AUTO).anchor.position == 7
    no_sacrum = _seg([None] * 5, sacrum=False)
    assert resolve_anchor(parse_anchor("L5=lowest"), no_sacrum).anchor.position == "lowest"
    assert resolve_anchor(parse_anchor("L1=3"), AUTO).anchor.position == 3


def test_an_anchor_that_contradicts_the_sacrum_warns_and_one_that_agrees_does_not():
    same = _seg([Level.T12, Level.L1, Level.L2, Level.L3, Level.L4, Level.L5, Level.S1], sacrum=True)
    assert anchor_warning("L5=lowest", AUTO, same) is None
    # the old meaning of L5=lowest: the detected S1 called L5, every level one up
    shifted = _seg([Level.T11, Level.T12, Level.L1, Level.L2, Level.L3, Level.L4, Level.L5], sacrum=False)
    assert level_shift(AUTO, shifted) == -1
    w = anchor_warning("L5=7", AUTO, shifted)
    assert w is not None and DISAGREES in w and "named L5" in w and "differs by 1" in w and "T12 is called T11" in w
    assert anchor_warning("L5=lowest", _seg([None] * 7, sacrum=False), shifted) is None  # nothing detected


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The README's and `run --help`'s anchor examples, run literally on sample 02, plus a run without anchor."""
    out = tmp_path_factory.mktemp("anchor")
    results = {}
    for anchor in (None, "L5=lowest", "L1=3", "L3=z:-120.5"):
        d = out / (anchor or "auto").replace(":", "_").replace("=", "_")
        argv = ["-q", "run", str(SAMPLE), "--out", str(d), "--outputs", "json,html"]
        argv += ["--anchor", anchor] if anchor else []
        results[anchor] = (main(argv), d)
    return results


@pytest.mark.slow
def test_readme_l5_lowest_keeps_the_detected_levels(runs, capsys):
    code, d = runs["L5=lowest"]
    auto_code, auto_dir = runs[None]
    assert code == 0 and auto_code == 0
    report, auto = (json.loads((x / "report.json").read_text()) for x in (d, auto_dir))
    assert auto["segmentation"]["sacrum_found"]
    assert [v["level"] for v in report["vertebrae"]] == [v["level"] for v in auto["vertebrae"]]
    l1 = next(v for v in report["vertebrae"] if v["level"] == "L1")
    assert l1["genant_grade"] >= 1  # the fractured L1 stays L1 (it was reported as T12 / T11 before)
    assert not any(DISAGREES in w for w in report["warnings"])
    assert "lowest body above the detected sacrum" in report["segmentation"]["labelling_method"]


@pytest.mark.slow
@pytest.mark.parametrize("anchor", ["L5=lowest", "L1=3", "L3=z:-120.5"])
def test_no_anchor_example_contradicts_the_sacrum_silently(anchor, runs):
    code, d = runs[anchor]
    assert code == 0
    report = json.loads((d / "report.json").read_text())
    auto = json.loads((runs[None][1] / "report.json").read_text())
    levels, auto_levels = ([v["level"] for v in r["vertebrae"]] for r in (report, auto))
    if levels != auto_levels:
        assert any(DISAGREES in w for w in report["warnings"]), report["warnings"]
        assert DISAGREES in (d / "report.html").read_text()
