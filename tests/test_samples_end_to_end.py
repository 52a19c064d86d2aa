"""The whole pipeline on the four sample studies against the phantom's exact truth (sample_dicom/*/truth.json).

Unit tests check each stage on its own inputs; this checks what a user gets: the right level names, height loss
near the truth, the Genant grade of every fractured body, oedema where (and only where) the truth has it, and
the eligibility decision per level that ``tests/test_eligibility.py`` expects for ideal imaging facts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pipeline.report.outputs import OutputKind
from pipeline.run import RunOptions, load_pipeline_config, run_study
from tests.test_eligibility import OTHERS, SAMPLE_EXPECTED

SAMPLES = Path(__file__).resolve().parent.parent / "sample_dicom"
STUDIES = sorted(SAMPLE_EXPECTED)
HEIGHT_LOSS_TOLERANCE_PP = 8.0  # segmentation of 4-mm slices: a few voxels of the endplate
CENTROID_TOLERANCE_MM = 10.0  # a body is "the same" as the truth body when its centroid is this close


@pytest.fixture(scope="module")
def config():
    return load_pipeline_config()


@pytest.fixture(scope="module")
def reports(config, tmp_path_factory) -> dict[str, dict[str, Any]]:
    out = tmp_path_factory.mktemp("samples")
    options = RunOptions(outputs=frozenset({OutputKind.JSON}), write_labels=False)  # clinical.yaml beside the study
    return {
        study: run_study(SAMPLES / study, out / study, config=config, options=options).report.to_json()
        for study in STUDIES
    }


def _truth(study: str) -> list[dict[str, Any]]:
    truth = json.loads((SAMPLES / study / "truth.json").read_text())
    return [v for v in truth["vertebrae"] if not v["is_sacrum"]]


def _match(report: dict[str, Any], body: dict[str, Any]) -> dict[str, Any] | None:
    """The reported vertebra whose centroid is nearest the truth body's (None when none is close)."""
    best, best_d = None, CENTROID_TOLERANCE_MM
    for v in report["vertebrae"]:
        d = sum((a - b) ** 2 for a, b in zip(v["centroid_lps_mm"], body["centroid_lps_mm"], strict=True)) ** 0.5
        if d < best_d:
            best, best_d = v, d
    return best


pytestmark = pytest.mark.slow

# Known failures of the learned segmenter (issue 15 closing note, README "Limits"), kept visible instead of loosened:
# strict, so the day they pass the test says so and the mark must go.
_VERTEBRA_PLANA = (
    "at 2 mm pixels the network sees the 72 % crushed T12 of sample 03 as mostly disc: it is found only in part, "
    "its centre sits 16 mm under its neighbour's, so the level count stops there with a warning (T11 and above "
    "unnamed), and T11, T12 and L1 are reported not assessable (indeterminate): no height loss or oedema there"
)
_FULL_ENDPLATES = (
    "the network outlines fractured bodies too full (depressed endplate centres and corners filled at 2 mm pixels): "
    "height loss underestimated (sample 04 T11 28 % -> 12 %, L3 36 % -> 20 %), so levels graded too mild"
)
KNOWN = {
    ("found", "03_chronic_severe_collapse"): _VERTEBRA_PLANA,
    ("height", "03_chronic_severe_collapse"): _VERTEBRA_PLANA,
    ("oedema", "03_chronic_severe_collapse"): _VERTEBRA_PLANA,
    ("decision", "03_chronic_severe_collapse"): _VERTEBRA_PLANA,
    ("height", "04_myeloma_four_acute_levels"): _FULL_ENDPLATES,
    ("decision", "04_myeloma_four_acute_levels"): _FULL_ENDPLATES,
}


def _studies(check: str) -> list:  # type: ignore[type-arg]
    return [
        pytest.param(s, marks=pytest.mark.xfail(strict=True, reason=KNOWN[(check, s)])) if (check, s) in KNOWN else s
        for s in STUDIES
    ]


@pytest.mark.parametrize("study", _studies("found"))
def test_every_body_is_found_and_named(reports, study):
    for body in _truth(study):
        found = _match(reports[study], body)
        assert found is not None, f"{study}: {body['level']} not found"
        assert found["level"] == body["level"], f"{study}: {body['level']} reported as {found['level']}"


@pytest.mark.parametrize("study", _studies("height"))
def test_height_loss_and_grade_follow_the_truth(reports, study):
    for body in _truth(study):
        found = _match(reports[study], body)
        assert found is not None and found["height_loss_pct"] is not None, f"{study}: {body['level']} not measured"
        if body["fractured"]:
            err = found["height_loss_pct"] - body["height_loss_pct"]
            assert abs(err) <= HEIGHT_LOSS_TOLERANCE_PP, (
                f"{study} {body['level']}: height loss {found['height_loss_pct']:.1f} % vs truth "
                f"{body['height_loss_pct']:.1f} %"
            )
            assert abs(found["genant_grade"] - body["genant_grade"]) <= 1, f"{study} {body['level']}"
        else:
            assert found["genant_grade"] == 0, f"{study} {body['level']}: normal body graded {found['genant_grade']}"


@pytest.mark.parametrize("study", _studies("oedema"))
def test_oedema_where_the_truth_has_it(reports, study):
    for body in _truth(study):
        found = _match(reports[study], body)
        assert found is not None
        assert found["stir"]["edema"] is bool(body["edema"]["present"]), (
            f"{study} {body['level']}: oedema {found['stir']['edema']} vs truth {body['edema']['present']} "
            f"(ratio {found['stir']['ratio']}, fraction {found['stir']['edema_fraction']})"
        )


def _grade_uncertain(report: dict[str, Any], level: str) -> bool:
    v = next(v for v in report["vertebrae"] if v["level"] == level)
    m = v.get("morphometry") or {}
    return bool(m.get("grade_uncertain") or m.get("low_confidence"))


@pytest.mark.parametrize("study", _studies("decision"))
def test_decisions_per_level_are_the_expected_ones(reports, study):
    """The expected decision, or 'indeterminate' where the pipeline says its grade is uncertain; never another."""
    expected = SAMPLE_EXPECTED[study]
    decided = {lv["level"]: lv["decision"] for lv in reports[study]["eligibility"]["levels"]}
    for body in _truth(study):
        want = expected.get(body["level"], expected[OTHERS])[0].value
        got = decided.get(body["level"])
        if got != want:
            assert got == "indeterminate" and _grade_uncertain(reports[study], body["level"]), (
                f"{study} {body['level']}: {got}, expected {want}"
            )
