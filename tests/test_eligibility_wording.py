"""The words of an eligibility result (pipeline.eligibility.wording): values, rule sentences, questions, summary."""

from __future__ import annotations

import pytest

from pipeline.eligibility import evaluate, load_rules
from pipeline.eligibility import wording as w
from pipeline.eligibility.inputs import INPUTS
from pipeline.model import Decision, Morphology
from tests.test_eligibility import make_clinical, make_facts

RULES = load_rules()


@pytest.mark.parametrize(
    ("names", "text"),
    [([], ""), (["L1"], "L1"), (["L1", "L2"], "L1 and L2"), (["T12", "L1", "L2"], "T12, L1 and L2")],
)
def test_join(names, text):
    assert w.join(names) == text


@pytest.mark.parametrize(
    ("name", "value", "text"),
    [
        ("imaging.height_loss_pct", 35.0, "35 %"),
        ("imaging.height_loss_pct", 66.666666, "66.67 %"),
        ("imaging.posterior_wall_bulge_mm", 0.5, "0.5 mm"),
        ("clinical.coagulation.inr", 1.0, "1"),
        ("clinical.pain.midline", True, "yes"),
        ("clinical.pain.midline", False, "no"),
        ("imaging.morphology", Morphology.WEDGE, "wedge"),
        ("clinical.pain.midline", None, "not known"),
    ],
)
def test_fmt(name, value, text):
    assert w.fmt(INPUTS[name], value) == text


def test_shown_value_keeps_json_types():
    assert w.shown_value(Morphology.CRUSH) == "crush"
    assert w.shown_value(1 / 3) == 0.333
    assert w.shown_value(True) is True and w.shown_value(None) is None


def test_input_order_is_the_registry_order():
    assert w.input_order({"radiologist.burst_fracture", "clinical.pain.vas", "imaging.genant_grade"}) == (
        "imaging.genant_grade",
        "clinical.pain.vas",
        "radiologist.burst_fracture",
    )


def test_rule_sentence_says_the_answer_and_why_or_what_would_decide_it():
    rule = RULES.rule("relative.height_loss_gt_two_thirds")
    text = rule.text.rstrip(".")
    assert w.rule_sentence(rule, "L1", True, ["height loss 72 %"], (), "") == f"L1: {text} - yes (height loss 72 %)."
    unknown = w.rule_sentence(rule, "L1", None, [], {"imaging.height_loss_pct"}, "")
    assert unknown == f"L1: {text} - unknown; would be decided by: height loss."
    assumed = w.rule_sentence(rule, None, False, [], {"imaging.height_loss_pct"}, "no sign of it.")
    assert assumed.startswith(f"{text} - no; assumed no because no sign of it;")


def test_question_names_the_levels_and_the_clinical_file_field():
    q = w.question("radiologist.burst_fracture", {"L2", "T12"}, {"relative.burst_fracture"})
    assert q.asked_of == "radiologist" and q.levels == ("T12", "L2")
    assert q.text == "Burst fracture at T12 and L2?"
    assert q.field == "radiologist_findings.<level>.burst_fracture"  # several levels: the user picks one
    one = w.question("radiologist.burst_fracture", {"L2"}, {"relative.burst_fracture"})
    assert one.field == "radiologist_findings.L2.burst_fracture"


def test_summary_sentences_and_reasons_of_a_result():
    r = evaluate([make_facts(), make_facts(label=5, level=None)], make_clinical(), RULES)
    assert [d.decision for d in r.levels] == [Decision.CANDIDATE, Decision.INDETERMINATE]
    assert r.summary.startswith("Candidate: L1; indeterminate: vertebra #5.")
    assert r.levels[0].reasons[0].startswith("Candidate: indications met: ")
    assert r.levels[1].reasons[0].startswith("Indeterminate: could be ")
    assert r.sentences[0] == r.summary and r.sentences[-1] == w.DISCLAIMER
    assert "L1: " + r.levels[0].reasons[0] in r.sentences
    assert w.summary([], r.plan, True, []) == "No vertebral body could be evaluated."
