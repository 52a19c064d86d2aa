"""``spine-assess queue``: what the listener received and sent (:mod:`pipeline.listener.operations`)."""

from __future__ import annotations

import argparse
import json

from pipeline.cli.options import add_settings_file, add_spool
from pipeline.errors import ConfigError


def add_parser(sub: argparse._SubParsersAction, one_line: str) -> None:
    p = sub.add_parser(
        "queue",
        help=one_line,
        description=(
            "Look at and manage what the listener has received: which studies are arriving, waiting, being "
            "assessed, done or failed (dead letters), and whether their results reached the PACS. Works while "
            "the listener runs. Studies are named by their Study Instance UID."
        ),
        epilog=(
            "examples:\n"
            "  spine-assess queue list                      all studies, newest last\n"
            "  spine-assess queue list --status dead        only the failed ones\n"
            "  spine-assess queue show 1.2.840.113619.2.1   details, exports, quarantined images\n"
            "  spine-assess queue retry 1.2.840.113619.2.1  try a failed study / its failed exports again\n"
            "  spine-assess queue retry --dead              try every dead letter again\n"
            "  spine-assess queue purge --done --older-than-days 30\n"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_settings_file(p, "listener settings", "listener.yaml")
    add_spool(p, "spool folder (overrides the settings)")
    qs = p.add_subparsers(dest="queue_command", metavar="ACTION")
    qs.required = True
    from pipeline.listener.state import StudyStatus

    pl = qs.add_parser("list", help="one line per study: status, images, attempts, export status, last error")
    pl.add_argument("--status", choices=[s.value for s in StudyStatus], help="only studies in this state")
    pl.add_argument("--json", action="store_true", help="machine-readable output")
    ps = qs.add_parser("show", help="everything about one study")
    ps.add_argument("study_uid", metavar="STUDY_UID")
    ps.add_argument("--json", action="store_true", help="machine-readable output")
    pr = qs.add_parser("retry", help="queue a failed study (or its failed exports) again")
    pr.add_argument("study_uid", nargs="?", metavar="STUDY_UID")
    pr.add_argument("--dead", action="store_true", help="every dead study and every dead export")
    pr.add_argument("--rerun", action="store_true", help="assess a finished study again (e.g. after a config change)")
    pp = qs.add_parser("purge", help="delete a study's images, results and state")
    pp.add_argument("study_uid", nargs="?", metavar="STUDY_UID")
    pp.add_argument("--done", action="store_true", help="every finished study whose results were all delivered ...")
    pp.add_argument(
        "--older-than-days", type=float, default=None, metavar="N", help="... finished more than N days ago"
    )
    pp.add_argument("--force", action="store_true", help="also purge a study that is still arriving or running")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from pipeline.listener import load_listener_config, operations
    from pipeline.listener.state import StudyStatus

    spool_dir = args.spool if args.spool is not None else load_listener_config(args.config).spool_dir
    spool, state = operations.open_state(spool_dir)
    try:
        if args.queue_command == "list":
            rows = operations.list_studies(state, StudyStatus(args.status) if args.status else None)
            print(json.dumps(rows, indent=2) if args.json else operations.format_list(rows))
            return 0
        if args.queue_command == "show":
            d = operations.study_detail(state, spool, args.study_uid)
            print(json.dumps(d, indent=2) if args.json else operations.format_detail(d))
            return 0
        if args.queue_command == "retry":
            print(operations.retry(state, args.study_uid, dead=args.dead, rerun=args.rerun))
            return 0
        if args.done and args.older_than_days is None:
            raise ConfigError("--done needs --older-than-days N")
        purged = operations.purge(
            state,
            spool,
            args.study_uid,
            done_older_than_days=args.older_than_days if args.done else None,
            force=args.force,
        )
        for uid in purged:
            print(f"purged {uid}")
        print(f"{len(purged)} stud{'y' if len(purged) == 1 else 'ies'} purged")
        return 0
    finally:
        state.close()
