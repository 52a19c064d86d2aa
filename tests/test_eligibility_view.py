"""The eligibility section of the HTML report: levels that share a decision and reason are said once, and
contraindication / technique lines appear only where a procedure is in question."""

from __future__ import annotations

import re

import pytest

from pipeline.eligibility import evaluate
from pipeline.levels import Level
from pipeline.model import Morphology
from pipeline.report.eligibility_view import eligibility_view
from pipeline.report.html import render_html
from pipeline.report.study_report import StudyReport
from tests.test_eligibility import RULES, make_clinical, make_facts
from tests.test_study_report import _study

NORMAL = (Level.T11, Level.T12, Level.L2, Level.L3, Level.L4)


@pytest.fixture(scope="module")
def report() -> StudyReport:
    """An osteoporotic patient with a painful acute L1 wedge fracture and five unfractured levels around it."""
    facts = [
        make_facts(
            label=i + 1,
            level=lv,
            genant_grade=0,
            height_loss_pct=5.0,
            morphology=Morphology.NORMAL,
            stir_edema=False,
            stir_edema_fraction=0.0,
        )
        for i, lv in enumerate(NORMAL)
    ]
    facts.insert(2, make_facts(label=9, level=Level.L1))
    return StudyReport(_study(), eligibility=evaluate(facts, make_clinical(), RULES))


def test_unfractured_levels_carry_no_contraindication_reason(report):
    levels = {e["name"]: e for e in report.to_json()["eligibility"]["levels"]}
    assert levels["L1"]["decision"] == "candidate"
    for lv in NORMAL:
        e = levels[lv.value]
        assert e["decision"] == "not_indicated"
        # still recorded for the record, never given as a reason for a level where nothing is proposed
        assert "absolute.osteoporotic_prophylaxis" in e["absolute_contraindications"]
        assert not any("contraindication" in r for r in e["reasons"]), e["reasons"]
        assert e["technique"] is None


def test_levels_sharing_a_decision_and_reason_are_one_row(report):
    view = eligibility_view(report.eligibility)
    assert view is not None
    assert [g.name for g in view.groups] == ["T11, T12, L2, L3, L4", "L1"]
    html = render_html(report, {})
    section = html[html.index("Decision per level") : html.index("<h3>Plan</h3>")]
    reason = report.eligibility.levels[0].reasons[0]
    assert section.count("Not indicated; not met:") == 1
    assert len(reason.split()) > 20  # the boilerplate that used to be repeated for every normal level
    assert section.count('class="decision not_indicated"') == 1


def test_trace_shows_no_contraindication_or_technique_on_levels_not_in_question(report):
    html = render_html(report, {})
    trace = html[html.index("<h3>Rule trace</h3>") :]
    blocks = dict(re.findall(r'<div class="trace-head">([^<]+)</div>(.*?)(?=<div class="trace">|<h3)', trace, re.S))
    normal = blocks["T11, T12, L2, L3, L4"]
    assert 'class="result present"' not in normal and "applies" not in normal
    assert "absolute.osteoporotic_prophylaxis" not in normal and "plan.prefer_kyphoplasty" not in normal
    assert "no procedure is in question" in normal
    # where a procedure is in question everything is shown: L1 (thoracolumbar junction) prefers kyphoplasty
    assert "plan.prefer_kyphoplasty" in blocks["L1"] and "applies" in blocks["L1"]
    decisions = html[html.index("Decision per level") : html.index("<h3>Plan</h3>")]
    assert decisions.count("technique:") == 1
