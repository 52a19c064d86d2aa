"""Vertebral augmentation eligibility: rules as data, clinical inputs, per-level decisions with a full trace.

Public API (used by :mod:`pipeline.run` and the report writer)::

    rules = load_rules()                                  # configs/eligibility.yaml, validated
    clinical = load_clinical(path) if path else None      # clinical.yaml / .json, validated
    facts = imaging_facts(morphometry, stir)              # per vertebral body
    result = evaluate(facts, clinical, rules)             # an EligibilityResult (pipeline.model)

The result supports, never replaces, a clinician's decision (the disclaimer is part of every result).
"""

from pipeline.eligibility.clinical import (
    ClinicalInputs,
    clinical_json_schema,
    find_clinical_file,
    load_clinical,
    parse_clinical,
)
from pipeline.eligibility.engine import evaluate
from pipeline.eligibility.facts import LevelFacts, imaging_facts
from pipeline.eligibility.rules import Rule, RuleSet, load_rules, parse_rules
from pipeline.eligibility.wording import DISCLAIMER
from pipeline.model import Decision, EligibilityResult, Kind, LevelDecision, Question, RuleOutcome, SessionPlan

__all__ = [
    "DISCLAIMER",
    "ClinicalInputs",
    "Decision",
    "EligibilityResult",
    "Kind",
    "LevelDecision",
    "LevelFacts",
    "Question",
    "Rule",
    "RuleOutcome",
    "RuleSet",
    "SessionPlan",
    "clinical_json_schema",
    "evaluate",
    "find_clinical_file",
    "imaging_facts",
    "load_clinical",
    "load_rules",
    "parse_clinical",
    "parse_rules",
]
