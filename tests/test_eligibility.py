"""Eligibility engine: every rule on constructed inputs, decision aggregation, session plan, sample studies.

The tables below are the specification: each row says what a rule must give for given inputs and why.
``SAMPLE_FACTS`` / ``SAMPLE_EXPECTED`` hold the expected decisions of the four sample studies for IDEAL
imaging facts (the truth the phantom generator is asked to produce); the lead reuses the same expectations
on the real pipeline output once segmentation, morphometry and STIR land.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from pipeline.eligibility import (
    DISCLAIMER,
    Decision,
    LevelFacts,
    evaluate,
    load_clinical,
    load_rules,
    parse_clinical,
    parse_rules,
)
from pipeline.eligibility.engine import aggregate, evaluate_rule
from pipeline.eligibility.rules import Kind
from pipeline.levels import Level
from pipeline.model import Morphology

RULES = load_rules()

# ----------------------------------------------------------------------------- constructed inputs
# A fractured L1 (Genant 2, 35 % wedge, STIR oedema) and a complete clinical file for a good candidate.
BASE_FACTS = dict(
    label=4,
    level=Level.L1,
    genant_grade=2,
    height_loss_pct=35.0,
    morphology=Morphology.WEDGE,
    posterior_wall_bulge_mm=0.5,
    canal_compromise_pct=3.0,
    stir_edema=True,
    stir_edema_fraction=0.4,
)
BASE_CLINICAL: dict[str, Any] = {
    "aetiology": {"cause": "osteoporosis", "known_malignancy": False, "malignancy_suspected": False},
    "pain": {
        "vas": 7,
        "midline": True,
        "reproducible": True,
        "radicular": False,
        "off_midline": False,
        "mechanical": True,
        "duration_weeks": 8,
        "refractory": True,
        "levels": ["L1"],
    },
    "neurology": {"cord_compression_symptoms": False, "myelopathy": False},
    "infection": {"local": False, "systemic": False},
    "coagulation": {"inr": 1.0, "platelets_10e9_per_l": 240, "correctable": True},
    "allergies": {"bone_cement": False, "contrast": False},
    "severe_cardiopulmonary_disease": False,
    "can_lie_prone": True,
    "surgical_backup": True,
    "prior_imaging": {"acute_levels": ["L1"]},
    "radiologist_findings": {
        "L1": {
            "posterior_wall_disruption": False,
            "retropulsion_canal_pct": 0,
            "epidural_tumor_canal_pct": 0,
            "spinal_stenosis": False,
            "burst_fracture": False,
            "pedicle_involvement": False,
        }
    },
}
DROP = object()  # in a patch: remove the key (the input becomes missing)


def _patched(base: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(base))
    for dotted, value in patch.items():
        *parents, last = dotted.split(".")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        if value is DROP:
            node.pop(last, None)
        else:
            node[last] = value
    return out


def make_facts(**patch: Any) -> LevelFacts:
    return LevelFacts(**{**BASE_FACTS, **patch})


def make_clinical(patch: Mapping[str, Any] | None = None):
    return parse_clinical(_patched(BASE_CLINICAL, patch or {}))


def rule_result(rule_id: str, facts: Mapping[str, Any], clinical: Mapping[str, Any] | None):
    rule = RULES.rule(rule_id)
    f = make_facts(**facts) if rule.scope.value == "level" else None
    c = None if clinical is None else make_clinical(clinical)
    return evaluate_rule(rule, f, c, RULES)


T, F, U = True, False, None
NO_HISTORY = {"prior_imaging.acute_levels": DROP}
NO_STIR = {"stir_edema": None}

# (rule id, facts patch, clinical patch or None for no clinical file, expected, missing inputs (if U), why)
RULE_CASES: list[tuple[str, dict[str, Any], dict[str, Any] | None, bool | None, tuple[str, ...], str]] = [
    # --- indication.painful_acute_vcf
    ("indication.painful_acute_vcf", {}, {}, T, (), "fracture, oedema, VAS 7, refractory"),
    ("indication.painful_acute_vcf", {"genant_grade": 0}, {}, F, (), "no fracture (grade 0)"),
    (
        "indication.painful_acute_vcf",
        {"genant_grade": None},
        {},
        U,
        ("imaging.genant_grade",),
        "ungraded body: fracture unknown, never 'no fracture'",
    ),
    (
        "indication.painful_acute_vcf",
        {"stir_edema": False},
        NO_HISTORY,
        U,
        ("clinical.prior_imaging.acute_by_history", "clinical.prior_imaging.bone_scan_uptake"),
        "no oedema and no history/bone scan: acuity unknown",
    ),
    (
        "indication.painful_acute_vcf",
        {"stir_edema": False},
        {
            **NO_HISTORY,
            "prior_imaging.chronic_levels": ["L1"],
            "prior_imaging.bone_scan": {"performed": True, "uptake_levels": []},
        },
        F,
        (),
        "no oedema, old on prior images, normal bone scan",
    ),
    (
        "indication.painful_acute_vcf",
        NO_STIR,
        {**NO_HISTORY, "prior_imaging.bone_scan": {"performed": True, "uptake_levels": ["L1"]}},
        T,
        (),
        "no STIR: bone scan uptake stands in",
    ),
    ("indication.painful_acute_vcf", {"stir_edema": False}, {}, T, (), "no oedema but new since prior images"),
    (
        "indication.painful_acute_vcf",
        {"stir_edema": False},
        {**NO_HISTORY, "aetiology.cause": "myeloma"},
        T,
        (),
        "chronic malignant fracture (003: benefit even in chronic malignant fractures)",
    ),
    ("indication.painful_acute_vcf", {}, {"pain.vas": 3}, F, (), "VAS 3 < 4"),
    ("indication.painful_acute_vcf", {}, {"pain.vas": 4}, T, (), "VAS 4: boundary included (>= 4)"),
    ("indication.painful_acute_vcf", {}, {"pain.vas": DROP}, U, ("clinical.pain.vas",), "VAS missing"),
    ("indication.painful_acute_vcf", {}, {"pain.refractory": False}, F, (), "pain controlled by analgesics"),
    (
        "indication.painful_acute_vcf",
        {},
        None,
        U,
        ("clinical.pain.vas", "clinical.pain.refractory"),
        "imaging only: oedema proves acuity, the pain questions remain",
    ),
    # --- indication.midline_pain
    ("indication.midline_pain", {}, {}, T, (), "midline, reproducible, at L1"),
    ("indication.midline_pain", {}, {"pain.midline": False}, F, (), "not midline"),
    ("indication.midline_pain", {}, {"pain.levels": ["T12"]}, F, (), "pain at another level"),
    ("indication.midline_pain", {}, {"pain.levels": DROP}, U, ("clinical.pain.at_level",), "painful levels unknown"),
    ("indication.midline_pain", {"level": None}, {}, U, ("clinical.pain.at_level",), "level name unknown"),
    # --- absolute.asymptomatic
    ("absolute.asymptomatic", {}, {}, F, (), "painful at L1"),
    ("absolute.asymptomatic", {}, {"pain.vas": 0}, T, (), "VAS 0"),
    ("absolute.asymptomatic", {}, {"pain.levels": ["T12"]}, T, (), "fracture at L1, pain at T12 only"),
    ("absolute.asymptomatic", {"genant_grade": 0}, {"pain.vas": 0}, F, (), "no fracture: nothing asymptomatic"),
    ("absolute.asymptomatic", {}, {"pain.levels": DROP}, U, ("clinical.pain.at_level",), "VAS 7 but where is unknown"),
    # --- absolute.cord_compression
    ("absolute.cord_compression", {}, {}, F, (), "neither"),
    ("absolute.cord_compression", {}, {"neurology.myelopathy": True}, T, (), "myelopathy"),
    ("absolute.cord_compression", {}, {"neurology.cord_compression_symptoms": True}, T, (), "symptoms"),
    (
        "absolute.cord_compression",
        {},
        {"neurology.myelopathy": DROP},
        U,
        ("clinical.neurology.myelopathy",),
        "one no, one missing: unknown (never silently false)",
    ),
    (
        "absolute.cord_compression",
        {},
        {"neurology.myelopathy": DROP, "neurology.cord_compression_symptoms": True},
        T,
        (),
        "one yes decides although the other is missing",
    ),
    # --- absolute.infection
    ("absolute.infection", {}, {}, F, (), "none"),
    ("absolute.infection", {}, {"infection.local": True}, T, (), "local"),
    ("absolute.infection", {}, {"infection.systemic": True}, T, (), "systemic"),
    ("absolute.infection", {}, None, U, ("clinical.infection.local", "clinical.infection.systemic"), "no file"),
    # --- absolute.coagulopathy
    ("absolute.coagulopathy", {}, {}, F, (), "INR 1.0, platelets 240"),
    (
        "absolute.coagulopathy",
        {},
        {"coagulation.inr": 2.0, "coagulation.correctable": False},
        T,
        (),
        "INR 2.0, not correctable",
    ),
    ("absolute.coagulopathy", {}, {"coagulation.inr": 2.0}, F, (), "INR 2.0 but correctable"),
    (
        "absolute.coagulopathy",
        {},
        {"coagulation.inr": 2.0, "coagulation.correctable": DROP},
        U,
        ("clinical.coagulation.correctable",),
        "abnormal, correctability unknown",
    ),
    (
        "absolute.coagulopathy",
        {},
        {"coagulation.platelets_10e9_per_l": 30, "coagulation.correctable": False},
        T,
        (),
        "platelets 30",
    ),
    (
        "absolute.coagulopathy",
        {},
        {"coagulation.inr": 1.5, "coagulation.correctable": False},
        F,
        (),
        "INR 1.5 is not above 1.5",
    ),
    (
        "absolute.coagulopathy",
        {},
        {"coagulation.inr": DROP, "coagulation.correctable": False},
        U,
        ("clinical.coagulation.inr",),
        "platelets normal, INR missing",
    ),
    # --- absolute.cement_allergy
    ("absolute.cement_allergy", {}, {}, F, (), "none"),
    ("absolute.cement_allergy", {}, {"allergies.bone_cement": True}, T, (), "PMMA"),
    ("absolute.cement_allergy", {}, {"allergies.contrast": True}, T, (), "contrast"),
    ("absolute.cement_allergy", {}, {"allergies.contrast": DROP}, U, ("clinical.allergies.contrast",), "missing"),
    # --- absolute.osteoporotic_prophylaxis
    ("absolute.osteoporotic_prophylaxis", {}, {}, F, (), "fractured level: not prophylaxis"),
    ("absolute.osteoporotic_prophylaxis", {"genant_grade": 0}, {}, T, (), "unfractured, osteoporosis"),
    ("absolute.osteoporotic_prophylaxis", {"genant_grade": 0}, {"aetiology.cause": "myeloma"}, F, (), "myeloma"),
    ("absolute.osteoporotic_prophylaxis", {"genant_grade": None}, {}, U, ("imaging.genant_grade",), "ungraded"),
    (
        "absolute.osteoporotic_prophylaxis",
        {"genant_grade": 0},
        {"aetiology.cause": DROP},
        U,
        ("clinical.aetiology.cause",),
        "cause unknown",
    ),
    # --- relative.posterior_wall_disruption (radiologist only: a bulge does not prove a cortical break)
    ("relative.posterior_wall_disruption", {}, {}, F, (), "radiologist: intact"),
    (
        "relative.posterior_wall_disruption",
        {},
        {"radiologist_findings.L1.posterior_wall_disruption": True},
        T,
        (),
        "radiologist: disrupted",
    ),
    (
        "relative.posterior_wall_disruption",
        {"posterior_wall_bulge_mm": 5.0},
        {"radiologist_findings.L1.posterior_wall_disruption": DROP},
        U,
        ("radiologist.posterior_wall_disruption",),
        "a 5 mm bulge alone does not decide disruption",
    ),
    # --- relative.retropulsion_canal_gt_third
    (
        "relative.retropulsion_canal_gt_third",
        {},
        {"radiologist_findings.L1.retropulsion_canal_pct": 40},
        T,
        (),
        "radiologist 40 %",
    ),
    (
        "relative.retropulsion_canal_gt_third",
        {"canal_compromise_pct": 50.0},
        {"radiologist_findings.L1.retropulsion_canal_pct": 10},
        F,
        (),
        "radiologist's reading wins",
    ),
    (
        "relative.retropulsion_canal_gt_third",
        {"canal_compromise_pct": 50.0},
        {"radiologist_findings.L1.retropulsion_canal_pct": DROP},
        T,
        (),
        "measured 50 %",
    ),
    ("relative.retropulsion_canal_gt_third", {"canal_compromise_pct": 20.0}, None, F, (), "measured 20 %"),
    (
        "relative.retropulsion_canal_gt_third",
        {"canal_compromise_pct": None},
        None,
        U,
        ("imaging.canal_compromise_pct", "radiologist.retropulsion_canal_pct"),
        "neither known",
    ),
    # --- relative.retropulsed_fragment (000: any retropulsion)
    ("relative.retropulsed_fragment", {"posterior_wall_bulge_mm": 3.0}, {}, F, (), "radiologist says 0 %"),
    ("relative.retropulsed_fragment", {"posterior_wall_bulge_mm": 3.0}, None, T, (), "measured 3 mm bulge"),
    ("relative.retropulsed_fragment", {"posterior_wall_bulge_mm": 1.0}, None, F, (), "1 mm: within normal"),
    (
        "relative.retropulsed_fragment",
        {"posterior_wall_bulge_mm": None},
        None,
        U,
        ("imaging.posterior_wall_bulge_mm", "radiologist.retropulsion_canal_pct"),
        "neither known",
    ),
    # --- relative.epidural_tumor_canal_gt_third
    (
        "relative.epidural_tumor_canal_gt_third",
        {},
        {"radiologist_findings.L1.epidural_tumor_canal_pct": 40},
        T,
        (),
        "40 %",
    ),
    (
        "relative.epidural_tumor_canal_gt_third",
        {},
        {"radiologist_findings.L1.epidural_tumor_canal_pct": 33},
        F,
        (),
        "33 % is not more than a third",
    ),
    (
        "relative.epidural_tumor_canal_gt_third",
        {},
        None,
        U,
        ("radiologist.epidural_tumor_canal_pct",),
        "not measured by imaging",
    ),
    # --- radiologist-only booleans
    ("relative.spinal_stenosis", {}, {"radiologist_findings.L1.spinal_stenosis": True}, T, (), "stenosis"),
    ("relative.spinal_stenosis", {}, {}, F, (), "none"),
    ("relative.spinal_stenosis", {}, {"radiologist_findings": {}}, U, ("radiologist.spinal_stenosis",), "no read"),
    ("relative.burst_fracture", {}, {"radiologist_findings.L1.burst_fracture": True}, T, (), "burst"),
    ("relative.burst_fracture", {}, {}, F, (), "not burst"),
    (
        "relative.burst_fracture",
        {"morphology": Morphology.CRUSH},
        None,
        U,
        ("radiologist.burst_fracture",),
        "a crush shape is not a burst diagnosis",
    ),
    ("relative.pedicle_extension", {}, {"radiologist_findings.L1.pedicle_involvement": True}, T, (), "pedicle"),
    ("relative.pedicle_extension", {}, {}, F, (), "no pedicle"),
    ("relative.pedicle_extension", {}, None, U, ("radiologist.pedicle_involvement",), "no read"),
    # --- relative.height_loss_gt_two_thirds
    ("relative.height_loss_gt_two_thirds", {"height_loss_pct": 72.0}, None, T, (), "72 %"),
    ("relative.height_loss_gt_two_thirds", {"height_loss_pct": 67.0}, None, T, (), "67 % > 2/3"),
    ("relative.height_loss_gt_two_thirds", {"height_loss_pct": 66.0}, None, F, (), "66 % < 2/3"),
    ("relative.height_loss_gt_two_thirds", {"height_loss_pct": None}, None, U, ("imaging.height_loss_pct",), "?"),
    # --- relative.cardiopulmonary / cannot_lie_prone / no_surgical_backup
    ("relative.cardiopulmonary", {}, {"severe_cardiopulmonary_disease": True}, T, (), "severe disease"),
    ("relative.cardiopulmonary", {}, {}, F, (), "none"),
    ("relative.cardiopulmonary", {}, None, U, ("clinical.severe_cardiopulmonary_disease",), "no file"),
    ("relative.cannot_lie_prone", {}, {"can_lie_prone": False}, T, (), "cannot"),
    ("relative.cannot_lie_prone", {}, {}, F, (), "can"),
    ("relative.cannot_lie_prone", {}, {"can_lie_prone": DROP}, U, ("clinical.can_lie_prone",), "missing"),
    ("relative.no_surgical_backup", {}, {"surgical_backup": False}, T, (), "no backup"),
    ("relative.no_surgical_backup", {}, {}, F, (), "backup"),
    ("relative.no_surgical_backup", {}, {"surgical_backup": DROP}, U, ("clinical.surgical_backup",), "missing"),
    # --- relative.no_stir_signal
    ("relative.no_stir_signal", {"stir_edema": False}, {}, T, (), "no oedema at a fracture"),
    ("relative.no_stir_signal", {}, {}, F, (), "oedema"),
    ("relative.no_stir_signal", {"genant_grade": 0, "stir_edema": False}, {}, F, (), "no fracture"),
    (
        "relative.no_stir_signal",
        NO_STIR,
        {"prior_imaging.bone_scan": {"performed": True, "uptake_levels": []}},
        T,
        (),
        "no STIR, normal bone scan",
    ),
    (
        "relative.no_stir_signal",
        NO_STIR,
        {"prior_imaging.bone_scan": {"performed": True, "uptake_levels": ["L1"]}},
        F,
        (),
        "no STIR, bone scan uptake",
    ),
    (
        "relative.no_stir_signal",
        NO_STIR,
        {},
        U,
        ("imaging.stir_edema", "clinical.prior_imaging.bone_scan_uptake"),
        "neither STIR nor bone scan",
    ),
    # --- relative.radicular_or_off_midline_pain
    ("relative.radicular_or_off_midline_pain", {}, {"pain.radicular": True}, T, (), "radicular"),
    ("relative.radicular_or_off_midline_pain", {}, {"pain.off_midline": True}, T, (), "off midline"),
    ("relative.radicular_or_off_midline_pain", {}, {}, F, (), "neither"),
    ("relative.radicular_or_off_midline_pain", {}, {"pain.radicular": DROP}, U, ("clinical.pain.radicular",), "?"),
    # --- relative.osteoporotic_pain_outside_6w_1y (004)
    ("relative.osteoporotic_pain_outside_6w_1y", {}, {"pain.duration_weeks": 4}, T, (), "4 weeks"),
    ("relative.osteoporotic_pain_outside_6w_1y", {}, {}, F, (), "8 weeks"),
    ("relative.osteoporotic_pain_outside_6w_1y", {}, {"pain.duration_weeks": 60}, T, (), "60 weeks"),
    (
        "relative.osteoporotic_pain_outside_6w_1y",
        {},
        {"pain.duration_weeks": 2, "aetiology.cause": "myeloma"},
        F,
        (),
        "not osteoporotic",
    ),
    (
        "relative.osteoporotic_pain_outside_6w_1y",
        {},
        {"pain.duration_weeks": DROP},
        U,
        ("clinical.pain.duration_weeks",),
        "duration unknown",
    ),
    (
        "relative.osteoporotic_pain_outside_6w_1y",
        {},
        {"aetiology.cause": DROP},
        F,
        (),
        "8 weeks is inside the window whatever the cause (Kleene: unknown AND false = false)",
    ),
    # --- relative.non_mechanical_pain_malignant (003)
    (
        "relative.non_mechanical_pain_malignant",
        {},
        {"aetiology.cause": "myeloma", "pain.mechanical": False},
        T,
        (),
        "myeloma, non-positional",
    ),
    ("relative.non_mechanical_pain_malignant", {}, {"aetiology.cause": "metastasis"}, F, (), "positional"),
    ("relative.non_mechanical_pain_malignant", {}, {"pain.mechanical": False}, F, (), "osteoporosis"),
    (
        "relative.non_mechanical_pain_malignant",
        {},
        {"aetiology.cause": "myeloma", "pain.mechanical": DROP},
        U,
        ("clinical.pain.mechanical",),
        "missing",
    ),
    # --- plan.prefer_kyphoplasty
    ("plan.prefer_kyphoplasty", {}, None, T, (), "L1: thoracolumbar junction"),
    ("plan.prefer_kyphoplasty", {"level": Level.T11, "height_loss_pct": 22.0}, None, T, (), "T11"),
    ("plan.prefer_kyphoplasty", {"level": Level.L3, "height_loss_pct": 45.0}, None, T, (), "45 % collapse"),
    ("plan.prefer_kyphoplasty", {"level": Level.L3, "height_loss_pct": 30.0}, None, F, (), "L3, 30 %"),
    (
        "plan.prefer_kyphoplasty",
        {"level": Level.L3, "height_loss_pct": None},
        None,
        U,
        ("imaging.height_loss_pct",),
        "L3, height unknown",
    ),
    (
        "plan.prefer_kyphoplasty",
        {"level": None, "height_loss_pct": 30.0},
        None,
        U,
        ("imaging.level",),
        "unlabelled body",
    ),
    # --- plan.biopsy
    ("plan.biopsy", {}, {"aetiology.cause": "myeloma"}, T, (), "myeloma"),
    ("plan.biopsy", {}, {"aetiology.cause": "metastasis"}, T, (), "metastasis"),
    ("plan.biopsy", {}, {}, F, (), "osteoporosis, no cancer known or suspected"),
    ("plan.biopsy", {}, {"aetiology.malignancy_suspected": True}, T, (), "suspected"),
    ("plan.biopsy", {}, {"aetiology.cause": DROP}, U, ("clinical.aetiology.cause",), "cause unknown"),
    # --- plan.max_levels_per_session: parameters only, always applied
    ("plan.max_levels_per_session", {}, None, T, (), "parameters"),
]


@pytest.mark.parametrize(
    "rule_id, facts, clinical, expected, missing, why", RULE_CASES, ids=[f"{c[0]}:{c[5]}" for c in RULE_CASES]
)
def test_rule(rule_id, facts, clinical, expected, missing, why):
    out = rule_result(rule_id, facts, clinical)
    assert out.result is expected, out.sentence
    if expected is None:
        assert set(out.missing) == set(missing), out.sentence
        assert "would be decided by" in out.sentence
    else:
        assert out.missing == ()
        assert out.because, "a known result explains itself"


def test_every_rule_is_exercised_true_false_and_unknown():
    seen: dict[str, set[object]] = {}
    for rule_id, *_rest in RULE_CASES:
        seen.setdefault(rule_id, set()).add(_rest[2])
    for rule in RULES.rules:
        if rule.when is None:
            continue
        assert seen.get(rule.id) == {True, False, None}, f"{rule.id}: cases cover {seen.get(rule.id)}"


def test_rule_outcome_records_inputs_seen():
    out = rule_result("relative.height_loss_gt_two_thirds", {"height_loss_pct": 72.0}, None)
    assert out.inputs == {"imaging.height_loss_pct": 72.0}
    assert out.result is True
    assert "height loss 72 %, threshold > 66.67 %" in out.sentence


# ----------------------------------------------------------------------------- aggregation
D = Decision
# (all indications, any absolute, any relative) -> decision, possible decisions, groups that would decide
AGGREGATION: list[tuple[bool | None, bool | None, bool | None, Decision, set[Decision], set[Kind]]] = [
    (T, F, F, D.CANDIDATE, {D.CANDIDATE}, set()),
    (T, F, T, D.CANDIDATE_WITH_CAUTIONS, {D.CANDIDATE_WITH_CAUTIONS}, set()),
    (T, T, F, D.CONTRAINDICATED, {D.CONTRAINDICATED}, set()),
    (T, T, U, D.CONTRAINDICATED, {D.CONTRAINDICATED}, set()),
    (F, T, T, D.NOT_INDICATED, {D.NOT_INDICATED}, set()),
    (F, U, U, D.NOT_INDICATED, {D.NOT_INDICATED}, set()),
    (U, T, F, D.CONTRAINDICATED, {D.CONTRAINDICATED}, set()),  # no answer can make it a candidate
    (T, F, U, D.INDETERMINATE, {D.CANDIDATE, D.CANDIDATE_WITH_CAUTIONS}, {Kind.RELATIVE}),
    (T, U, F, D.INDETERMINATE, {D.CANDIDATE, D.CONTRAINDICATED}, {Kind.ABSOLUTE}),
    (T, U, T, D.INDETERMINATE, {D.CANDIDATE_WITH_CAUTIONS, D.CONTRAINDICATED}, {Kind.ABSOLUTE}),
    (U, F, T, D.INDETERMINATE, {D.NOT_INDICATED, D.CANDIDATE_WITH_CAUTIONS}, {Kind.INDICATION}),
    (U, F, F, D.INDETERMINATE, {D.NOT_INDICATED, D.CANDIDATE}, {Kind.INDICATION}),
    (U, U, U, D.INDETERMINATE, set(D) - {D.INDETERMINATE}, {Kind.INDICATION, Kind.ABSOLUTE, Kind.RELATIVE}),
]


@pytest.mark.parametrize("ind, ab, rel, decision, possible, matters", AGGREGATION)
def test_aggregate(ind, ab, rel, decision, possible, matters):
    got, got_possible, got_matters = aggregate(ind, ab, rel)
    assert got is decision
    assert set(got_possible) == possible
    assert got_matters == matters


# (facts patch, clinical patch or None, decision, rules listed, deciding inputs, why)
Patch = dict[str, Any]
DECISIONS: list[tuple[Patch, Patch | None, Decision, tuple[str, ...], tuple[str, ...], str]] = [
    ({}, {}, D.CANDIDATE, (), (), "complete, clean inputs"),
    (
        {"genant_grade": 3, "height_loss_pct": 70.0},
        {},
        D.CANDIDATE_WITH_CAUTIONS,
        ("relative.height_loss_gt_two_thirds",),
        (),
        "70 % collapse",
    ),
    ({}, {"infection.local": True}, D.CONTRAINDICATED, ("absolute.infection",), (), "infection"),
    (
        {},
        {"infection.local": True, "pain.vas": DROP},
        D.CONTRAINDICATED,
        ("absolute.infection",),
        (),
        "infection decides although the indication is unknown",
    ),
    (
        {"genant_grade": 0},
        {},
        D.NOT_INDICATED,
        ("absolute.osteoporotic_prophylaxis",),
        (),
        "no fracture; prophylaxis listed as well",
    ),
    ({}, {"pain.vas": 2}, D.NOT_INDICATED, (), (), "VAS 2"),
    (
        {},
        {"surgical_backup": DROP},
        D.INDETERMINATE,
        (),
        ("clinical.surgical_backup",),
        "only a caution is open: candidate or candidate with cautions",
    ),
    (
        {"genant_grade": 3, "height_loss_pct": 70.0},
        {"surgical_backup": DROP},
        D.CANDIDATE_WITH_CAUTIONS,
        ("relative.height_loss_gt_two_thirds",),
        (),
        "a caution already holds; the open one cannot change that",
    ),
    (
        {"stir_edema": False},
        NO_HISTORY,
        D.INDETERMINATE,
        ("relative.no_stir_signal",),
        ("clinical.prior_imaging.acute_by_history", "clinical.prior_imaging.bone_scan_uptake"),
        "acuity unknown",
    ),
    (
        {"genant_grade": None, "height_loss_pct": None},
        {},
        D.INDETERMINATE,
        (),
        ("imaging.genant_grade", "imaging.height_loss_pct"),
        "fracture status unknown (not assessable)",
    ),
]


@pytest.mark.parametrize("facts, clinical, decision, listed, deciding, why", DECISIONS, ids=[c[-1] for c in DECISIONS])
def test_level_decision(facts, clinical, decision, listed, deciding, why):
    c = None if clinical is None else make_clinical(clinical)
    d = evaluate([make_facts(**facts)], c, RULES).levels[0]
    assert d.decision is decision, d.reasons
    assert set(listed) <= set(d.absolute) | set(d.relative)
    assert d.deciding_inputs == deciding
    assert d.reasons


def test_imaging_only_lists_the_clinical_questions():
    r = evaluate(
        [make_facts(), make_facts(label=5, level=Level.L2, genant_grade=0, height_loss_pct=3.0, stir_edema=False)],
        None,
        RULES,
    )
    assert r.level("L1").decision is D.INDETERMINATE
    assert set(r.level("L1").possible) == set(D) - {D.INDETERMINATE}
    assert r.level("L2").decision is D.NOT_INDICATED  # imaging alone shows no fracture
    asked = {q.input for q in r.questions}
    assert {
        "clinical.pain.vas",
        "clinical.pain.at_level",
        "clinical.infection.local",
        "radiologist.burst_fracture",
        "clinical.aetiology.cause",
    } <= asked
    # imaging rules are still evaluated
    l1 = {o.rule: o for o in r.level("L1").trace}
    assert l1["relative.height_loss_gt_two_thirds"].result is False
    assert l1["relative.no_stir_signal"].result is False
    q = next(q for q in r.questions if q.input == "clinical.pain.at_level")
    assert q.levels == ("L1",) and q.asked_of == "clinician" and q.field == "pain.levels"
    assert not r.clinical_provided and "Imaging only" in r.summary


def test_when_missing_assumption_is_applied_and_reported():
    data = _shipped_rules_data()
    rule = next(r for r in data["rules"] if r["id"] == "relative.no_surgical_backup")
    rule["when_missing"] = {"assume": False, "because": "this hospital always has spine surgery on call"}
    rules = parse_rules(data)
    d = evaluate([make_facts()], make_clinical({"surgical_backup": DROP}), rules).levels[0]
    assert d.decision is D.CANDIDATE
    assert any("always has spine surgery on call" in r for r in d.reasons)


def _shipped_rules_data() -> dict[str, Any]:
    import yaml

    assert RULES.path is not None
    return yaml.safe_load(RULES.path.read_text())


def test_excluded_level_is_listed_not_evaluated():
    r = evaluate([make_facts(), LevelFacts(label=9, level=Level.S1)], make_clinical(), RULES)
    assert [d.name for d in r.levels] == ["L1"]
    assert r.excluded[0][0] == "S1"


def test_patient_absolute_contraindication_applies_to_every_fractured_level():
    facts = [make_facts(), make_facts(label=5, level=Level.L2)]
    r = evaluate(facts, make_clinical({"allergies.bone_cement": True, "pain.levels": ["L1", "L2"]}), RULES)
    assert [d.decision for d in r.levels] == [D.CONTRAINDICATED, D.CONTRAINDICATED]
    assert r.plan.sessions == ()


# ----------------------------------------------------------------------------- session plan
def _plan_facts() -> list[LevelFacts]:
    # five painful fractures: oedema first, then larger height loss; L1 has no oedema (acute by history)
    spec = [
        (2, Level.T11, 25.0, True),
        (3, Level.T12, 50.0, True),
        (4, Level.L1, 60.0, False),
        (5, Level.L2, 30.0, True),
        (6, Level.L3, 22.0, True),
    ]
    return [
        make_facts(
            label=lab, level=lv, height_loss_pct=h, stir_edema=ed, genant_grade=3 if h >= 40 else 1 if h < 25 else 2
        )
        for lab, lv, h, ed in spec
    ]


PLAN_CLINICAL = {
    "pain.levels": ["T11", "T12", "L1", "L2", "L3"],
    "prior_imaging.acute_levels": ["L1"],
    "radiologist_findings": {},
}


def test_session_plan_five_levels_staged_by_priority():
    clinical = make_clinical(
        {
            **PLAN_CLINICAL,
            "radiologist_findings": {
                lv: BASE_CLINICAL["radiologist_findings"]["L1"] for lv in ("T11", "T12", "L1", "L2", "L3")
            },
        }
    )
    r = evaluate(_plan_facts(), clinical, RULES)
    assert all(d.decision in (D.CANDIDATE, D.CANDIDATE_WITH_CAUTIONS) for d in r.levels)
    assert r.level("L1").relative == ("relative.no_stir_signal",)
    # oedema first (T12 50 %, L2 30 %, T11 25 %, L3 22 %), then L1 without oedema
    assert r.plan.sessions == (("T12", "L2", "T11"), ("L3", "L1"))
    assert len(r.plan.sessions) > 1  # staged
    assert set(r.plan.kyphoplasty_preferred) == {"T11", "T12", "L1"}  # T11-L1, and L1 60 %
    assert set(r.plan.either_technique) == {"L2", "L3"}
    assert r.plan.biopsy is False


def test_session_size_is_configurable():
    data = _shipped_rules_data()
    rule = next(r for r in data["rules"] if r["id"] == "plan.max_levels_per_session")
    rule["parameters"]["max_levels"] = 2
    clinical = make_clinical(
        {
            **PLAN_CLINICAL,
            "radiologist_findings": {
                lv: BASE_CLINICAL["radiologist_findings"]["L1"] for lv in ("T11", "T12", "L1", "L2", "L3")
            },
        }
    )
    r = evaluate(_plan_facts(), clinical, parse_rules(data))
    assert r.plan.sessions == (("T12", "L2"), ("T11", "L3"), ("L1",))


def test_pending_levels_and_questions_when_radiology_missing():
    r = evaluate(_plan_facts(), make_clinical(PLAN_CLINICAL), RULES)
    # radiologist's findings missing: candidate or candidate with cautions, depending on them ...
    assert [d.decision for d in r.levels] == [IN, IN, CC, IN, IN]
    assert set(r.level("T12").possible) == {CA, CC}
    assert "radiologist.burst_fracture" in r.level("T12").deciding_inputs
    # ... except L1, where a caution (no STIR signal) already holds: the open ones only add to it
    assert r.plan.sessions == (("L1",),) and r.plan.pending == ("T11", "T12", "L2", "L3")
    q = {x.input: x for x in r.questions}
    assert q["radiologist.burst_fracture"].levels == ("T11", "T12", "L1", "L2", "L3")
    assert q["radiologist.burst_fracture"].asked_of == "radiologist"


# ----------------------------------------------------------------------------- the four sample studies
# IDEAL imaging facts = the phantom's truth (sample_dicom/<study>/truth.json):
# bodies T10-L5 (+ S1 anchor), normal bodies 0-5 % height loss, Genant 0, no oedema, no bulge.
# Per fractured level:
# (Genant grade, height loss %, morphology, posterior bulge mm, canal compromise %, STIR oedema)
SAMPLE_LEVELS = (Level.T10, Level.T11, Level.T12, Level.L1, Level.L2, Level.L3, Level.L4, Level.L5)
NORMAL = (0, 2.0, Morphology.NORMAL, 0.0, 0.0, False)
SAMPLE_FACTS: dict[str, dict[Level, tuple[int, float, Morphology, float, float, bool]]] = {
    "01_normal": {},
    "02_acute_osteoporotic_wedge": {Level.L1: (2, 35.0, Morphology.WEDGE, 0.0, 0.0, True)},
    # T12: severe collapse with mild retropulsion (3.5 mm, 23 % of the canal), no oedema
    "03_chronic_severe_collapse": {Level.T12: (3, 72.0, Morphology.CRUSH, 3.5, 22.8, False)},
    "04_myeloma_four_acute_levels": {
        Level.T11: (2, 28.0, Morphology.BICONCAVE, 0.0, 0.0, True),
        Level.L1: (2, 30.0, Morphology.WEDGE, 0.0, 0.0, True),
        Level.L3: (2, 36.0, Morphology.BICONCAVE, 0.0, 0.0, True),
        Level.L4: (1, 24.0, Morphology.CRUSH, 0.0, 0.0, True),
    },
}
NI, CA, CC, IN = D.NOT_INDICATED, D.CANDIDATE, D.CANDIDATE_WITH_CAUTIONS, D.INDETERMINATE
OTHERS = "others"
# study -> level (or "others") -> (expected decision, rules that must be listed, reason)
SAMPLE_EXPECTED: dict[str, dict[str, tuple[Decision, tuple[str, ...], str]]] = {
    "01_normal": {
        OTHERS: (
            NI,
            ("absolute.osteoporotic_prophylaxis",),
            "no fracture anywhere; osteoporosis: prophylactic augmentation is contraindicated",
        ),
    },
    "02_acute_osteoporotic_wedge": {
        "L1": (
            CA,
            (),
            "acute wedge (STIR oedema, new since prior radiographs), VAS 7 refractory, midline "
            "reproducible at L1, 8 weeks (inside 6 w - 1 y), no contraindication",
        ),
        OTHERS: (NI, ("absolute.osteoporotic_prophylaxis",), "unfractured levels in osteoporosis"),
    },
    "03_chronic_severe_collapse": {
        "T12": (
            IN,
            ("relative.height_loss_gt_two_thirds", "relative.no_stir_signal", "relative.retropulsed_fragment"),
            "no oedema and no bone scan / prior images: acuity unknown -> candidate with cautions (> 2/3 "
            "height loss, no STIR signal, retropulsion) or not indicated",
        ),
        OTHERS: (NI, ("absolute.osteoporotic_prophylaxis",), "unfractured levels in osteoporosis"),
    },
    "04_myeloma_four_acute_levels": {
        "T11": (CA, (), "acute myeloma fracture, painful, no contraindication"),
        "L1": (CC, ("relative.posterior_wall_disruption",), "radiologist: posterior wall disrupted"),
        "L3": (CA, (), "acute myeloma fracture, painful"),
        "L4": (CA, (), "acute myeloma fracture, painful"),
        OTHERS: (NI, (), "no fracture (myeloma: no prophylaxis rule)"),
    },
}
# study -> (sessions, kyphoplasty preferred, biopsy, pending, inputs that must be asked)
Sessions = tuple[tuple[str, ...], ...]
SAMPLE_PLAN: dict[str, tuple[Sessions, set[str], bool | None, tuple[str, ...], set[str]]] = {
    "01_normal": ((), set(), False, (), set()),
    "02_acute_osteoporotic_wedge": ((("L1",),), {"L1"}, False, (), set()),
    "03_chronic_severe_collapse": (
        (),
        set(),
        False,
        ("T12",),
        {
            "clinical.prior_imaging.acute_by_history",
            "clinical.prior_imaging.bone_scan_uptake",
            "clinical.surgical_backup",
            "radiologist.posterior_wall_disruption",
        },
    ),
    # priority: oedema (all), pain (all), then height loss: L3 36, L1 30, T11 28 | L4 24;
    # kyphoplasty preferred at the thoracolumbar junction (T11, L1), no level collapsed >= 40 %
    "04_myeloma_four_acute_levels": ((("L3", "L1", "T11"), ("L4",)), {"T11", "L1"}, True, (), set()),
}


def sample_facts(study: str) -> list[LevelFacts]:
    out = []
    for label, lv in enumerate(SAMPLE_LEVELS, start=1):
        g, h, m, bulge, canal, oedema = SAMPLE_FACTS[study].get(lv, NORMAL)
        out.append(
            LevelFacts(
                label=label,
                level=lv,
                genant_grade=g,
                height_loss_pct=h,
                morphology=m,
                posterior_wall_bulge_mm=bulge,
                canal_compromise_pct=canal,
                stir_edema=oedema,
            )
        )
    out.append(LevelFacts(label=len(SAMPLE_LEVELS) + 1, level=Level.S1))  # sacrum anchor, not evaluated
    return out


def sample_clinical_path(repo_root: Path, study: str) -> Path:
    return repo_root / "sample_dicom" / study / "clinical.yaml"


@pytest.mark.parametrize("study", sorted(SAMPLE_EXPECTED))
def test_sample_study_decisions_with_ideal_facts(study, repo_root):
    r = evaluate(sample_facts(study), load_clinical(sample_clinical_path(repo_root, study)), RULES)
    expected = SAMPLE_EXPECTED[study]
    for d in r.levels:
        decision, listed, why = expected.get(d.name, expected[OTHERS])
        assert d.decision is decision, f"{study} {d.name}: {d.reasons} (expected because: {why})"
        assert set(listed) <= set(d.absolute) | set(d.relative), f"{study} {d.name}: {d.reasons}"
    sessions, kypho, biopsy, pending, asked = SAMPLE_PLAN[study]
    assert r.plan.sessions == sessions
    assert set(r.plan.kyphoplasty_preferred) == kypho
    assert r.plan.biopsy is biopsy
    assert r.plan.pending == pending
    assert asked <= {q.input for q in r.questions}
    assert r.sentences[-1] == DISCLAIMER


@pytest.mark.parametrize("study", sorted(SAMPLE_EXPECTED))
def test_sample_study_imaging_only(study):
    """Without clinical.yaml: unfractured levels are still not indicated, fractured ones indeterminate."""
    r = evaluate(sample_facts(study), None, RULES)
    fractured = {lv.value for lv in SAMPLE_FACTS[study]}
    for d in r.levels:
        assert d.decision is (IN if d.name in fractured else NI), d.reasons
    assert bool(r.questions) == bool(fractured)


def test_unlabelled_body_asks_for_the_level_not_for_level_specific_answers():
    r = evaluate([make_facts(level=None, label=3)], make_clinical(), RULES)
    d = r.levels[0]
    assert d.name == "vertebra #3" and d.decision is D.INDETERMINATE
    assert "clinical.pain.at_level" in d.deciding_inputs  # the decision says what is missing ...
    asked = {q.input: q for q in r.questions}
    assert "clinical.pain.at_level" not in asked  # ... but nobody can answer it before the level is known
    assert asked["imaging.level"].levels == ("vertebra #3",)
    assert asked["imaging.level"].asked_of == "imaging review"


@pytest.mark.parametrize("study", sorted(SAMPLE_EXPECTED))
def test_sample_facts_match_the_phantom_truth(study, repo_root):
    """The ideal facts above are the generator's truth.json, so the two cannot drift apart."""
    truth = json.loads((repo_root / "sample_dicom" / study / "truth.json").read_text())
    fractured = {v["level"]: v for v in truth["vertebrae"] if v["genant_grade"] and v["level"] != "S1"}
    assert set(fractured) == {lv.value for lv in SAMPLE_FACTS[study]}
    for lv, (grade, loss, morph, bulge, canal, oedema) in SAMPLE_FACTS[study].items():
        t = fractured[lv.value]
        assert (t["genant_grade"], t["morphology"], t["edema"]["present"]) == (grade, morph.value, oedema)
        assert t["height_loss_pct"] == pytest.approx(loss, abs=0.1)
        assert t["posterior_wall"]["bulge_mm"] == pytest.approx(bulge, abs=0.1)
        assert t["posterior_wall"]["canal_compromise_pct"] == pytest.approx(canal, abs=0.1)
