"""Vertebral augmentation eligibility: rules as data, clinical inputs, per-level decisions with a full trace.

Public API (used by :mod:`pipeline.run` and the report writer)::

    rules = load_rules()                                  # configs/eligibility.yaml, validated
    clinical = load_clinical(path) if path else None      # clinical.yaml / .json, validated
    facts = imaging_facts(morphometry, stir)              # per vertebral body
    result = evaluate(facts, clinical, rules)             # an EligibilityResult (pipeline.model)

The result supports, never replaces, a clinician's decision (the disclaimer is part of every result).
The clinical-file names that need pydantic (``ClinicalInputs``, ``load_clinical``, ``parse_clinical``,
``clinical_json_schema``) are imported on first use: a run without a clinical file never loads pydantic.
"""

from typing import TYPE_CHECKING, Any

from pipeline.eligibility.clinical_file import find_clinical_file
from pipeline.eligibility.engine import evaluate
from pipeline.eligibility.facts import LevelFacts, imaging_facts
from pipeline.eligibility.rules import Rule, RuleSet, load_rules, parse_rules
from pipeline.eligibility.wording import DISCLAIMER
from pipeline.model import Decision, EligibilityResult, Kind, LevelDecision, Question, RuleOutcome, SessionPlan

if TYPE_CHECKING:
    from pipeline.eligibility.clinical import ClinicalInputs, clinical_json_schema, load_clinical, parse_clinical

_NEED_PYDANTIC = frozenset({"ClinicalInputs", "clinical_json_schema", "load_clinical", "parse_clinical"})

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


def __getattr__(name: str) -> Any:
    # PEP 562: the pydantic-backed names are imported from pipeline.eligibility.clinical when first asked for
    if name in _NEED_PYDANTIC:
        from pipeline.eligibility import clinical

        return getattr(clinical, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
