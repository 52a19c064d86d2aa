"""``spine-assess rules``: check the eligibility rules and a clinical file; list the rules with their sources."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.errors import ConfigError, UsageError


def add_parser(sub: argparse._SubParsersAction, one_line: str) -> None:
    p = sub.add_parser(
        "rules",
        help=one_line,
        description=(
            "Checks the vertebral augmentation eligibility rules (configs/eligibility.yaml) and, with "
            "--clinical, a patient's clinical file (clinical.yaml or clinical.json, see "
            "docs/clinical_inputs.md). Prints each rule with its kind and source, and which clinical "
            "fields are still empty. Exit 0 if everything is valid, 2 if a file has a mistake (the message "
            "names the file and the field)."
        ),
    )
    p.add_argument(
        "--rules",
        type=Path,
        default=None,
        metavar="FILE",
        help="rules file to check (default: the installed configs/eligibility.yaml)",
    )
    p.add_argument(
        "--clinical",
        type=Path,
        default=None,
        metavar="FILE",
        help="clinical.yaml / clinical.json to check, or a study folder that contains one",
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from pipeline.eligibility import find_clinical_file, load_clinical, load_rules
    from pipeline.eligibility.inputs import INPUTS, Origin, Scope

    rules = load_rules(args.rules)
    # both files are checked before anything is printed: a mistake is the first (and only) thing shown
    path = args.clinical
    clinical = None
    if path is not None:
        if not path.exists():
            raise UsageError(f"--clinical {path}: no such file or folder")
        if path.is_dir():
            found = find_clinical_file(path)
            if found is None:
                raise ConfigError(f"{path}: no clinical.yaml, clinical.yml or clinical.json in this folder")
            path = found
        clinical = load_clinical(path)
    print(f"rules: {rules.path} (sha256 {rules.sha256[:12]}, {len(rules.rules)} rules) - valid")
    for r in rules.rules:
        cites = dict.fromkeys(f"{rules.references[s.seed].short}, {s.section}" for s in r.sources if s.seed)
        print(f"  {r.id:<45} {r.kind.value:<10} {r.scope.value:<7} {'; '.join(cites)}")
    print("references (the seed documents in shared/seeds):")
    for ref in rules.cited_references():
        print(f"  {ref.short}: {ref.citation} [{ref.seed}]")
    if path is None or clinical is None:
        return 0
    print(f"clinical: {path} - valid")

    def given(spec_field: str) -> bool:
        obj: object = clinical
        for part in spec_field.split("."):
            obj = getattr(obj, part, None)
        return obj is not None

    empty = [
        s
        for s in INPUTS.values()
        if s.origin is Origin.CLINICAL
        and (s.value(None, clinical) is None if s.scope is Scope.PATIENT else not given(s.field))
    ]
    for spec in empty:
        print(f"  not given: {spec.field:<40} {spec.question}")
    read = ", ".join(lv.value for lv in clinical.radiologist_findings) or "none"
    print(f"  radiologist findings given for: {read}")
    return 0
