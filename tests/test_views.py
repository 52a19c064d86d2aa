"""Defensive reading of the eligibility section."""

from __future__ import annotations

import pytest

from pipeline.report.views import Decision, decisions_by_label, eligibility_levels, level_name

VERTEBRAE = [{"label": 1, "level": "L1"}, {"label": 2, "level": "L2"}, {"label": 3, "level": None}]


@pytest.mark.parametrize(
    ("eligibility", "want"),
    [
        (
            {
                "levels": [
                    {"level": "L1", "decision": "candidate"},
                    {"label": 2, "decision": "Contraindicated"},
                ]
            },
            {1: Decision.CANDIDATE, 2: Decision.CONTRAINDICATED},
        ),
        (
            {
                "levels": [
                    {"level": "L2", "decision": "not indicated"},
                    {"level": "L1", "decision": "Indeterminate"},
                ]
            },
            {2: Decision.NOT_INDICATED, 1: Decision.INDETERMINATE},
        ),
        ({"levels": [{"level": "L1", "decision": {"value": "candidate"}}]}, {}),
        ({"levels": {"L1": "candidate"}}, {}),
        ({"per_level": [{"level": "L1", "decision": "candidate"}]}, {}),
        (
            {
                "levels": [
                    {"level": "L1", "decision": "maybe"},
                    {"level": "T4", "decision": "candidate"},
                    "junk",
                ]
            },
            {},
        ),
        ({"levels": "garbled"}, {}),
        ({}, {}),
        ("not a mapping", {}),
    ],
)
def test_decisions_by_label(eligibility, want):
    assert decisions_by_label({"vertebrae": VERTEBRAE, "eligibility": eligibility}) == want


def test_no_eligibility_section():
    assert decisions_by_label({"vertebrae": VERTEBRAE}) == {} and eligibility_levels({}) == []


def test_level_name():
    assert level_name({"label": 3, "level": None}) == "body 3 (level unknown)"
    assert level_name({"label": 1, "level": "L1"}) == "L1"
    assert Decision.CANDIDATE_WITH_CAUTIONS.text == "candidate with cautions"
