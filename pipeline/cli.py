"""Command line: ``spine-assess <command> ...``.

Exit status: 0 success, 1 some studies/items failed, 2 usage or configuration error.
A :class:`~pipeline.errors.PipelineError` prints one clear line; anything else prints a traceback.
Each subcommand is a ``_add_<name>(subparsers)`` builder plus a ``_cmd_<name>(args) -> int`` handler.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from pipeline import __version__
from pipeline.errors import ConfigError, PipelineError

logger = logging.getLogger("pipeline.cli")

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spine-assess",
        description=(
            "Assess sagittal spine MRI for vertebral augmentation (vertebroplasty / kyphoplasty): "
            "finds and labels vertebral bodies, measures height loss and STIR oedema, and checks the "
            "published eligibility rules. Supports, never replaces, a clinician's decision."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for add in _SUBCOMMANDS:
        add(sub)
    return parser


def _configure_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", stream=sys.stderr
    )
    if verbose < 2:
        for noisy in ("pynetdicom", "distributed", "highdicom", "PIL", "matplotlib"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose, args.quiet)
    handler: Handler = args.handler
    try:
        return handler(args)
    except ConfigError as exc:
        print(f"spine-assess: configuration error: {exc}", file=sys.stderr)
        return 2
    except PipelineError as exc:
        print(f"spine-assess: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("spine-assess: interrupted", file=sys.stderr)
        return 130


# Subcommand builders are appended below as the stages land; each sets ``handler``.
_SUBCOMMANDS: list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]] = []


# --------------------------------------------------------------------------- rules (eligibility)
def _add_rules(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "rules",
        help="check the eligibility rules and a clinical file; list the rules with their sources",
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
    p.set_defaults(handler=_cmd_rules)


def _cmd_rules(args: argparse.Namespace) -> int:
    from pipeline.eligibility import find_clinical_file, load_clinical, load_rules
    from pipeline.eligibility.inputs import INPUTS, Origin, Scope

    rules = load_rules(args.rules)
    print(f"rules: {rules.path} (sha256 {rules.sha256[:12]}, {len(rules.rules)} rules) - valid")
    for r in rules.rules:
        cites = "; ".join(f"{s.seed[:3]}_* {s.section}" for s in r.sources if s.seed)
        print(f"  {r.id:<45} {r.kind.value:<10} {r.scope.value:<7} {cites}")
    if args.clinical is None:
        return 0
    path = args.clinical
    if path.is_dir():
        found = find_clinical_file(path)
        if found is None:
            raise ConfigError(f"{path}: no clinical.yaml, clinical.yml or clinical.json in this folder")
        path = found
    clinical = load_clinical(path)
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


_SUBCOMMANDS.append(_add_rules)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
