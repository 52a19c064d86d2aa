"""``spine-assess batch``: assess every study in a folder (:func:`pipeline.batch.runner.run_batch`), resumable."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from pathlib import Path

from pipeline import __version__
from pipeline.cli.options import (
    add_anchor,
    add_config_dir,
    add_outputs,
    anchor_option,
    ingest_quiet_unless_verbose,
    outputs_option,
)
from pipeline.errors import ConfigError

logger = logging.getLogger("pipeline.cli")


def add_parser(sub: argparse._SubParsersAction, one_line: str) -> None:
    from pipeline.batch.task import DEFAULT_MEMORY_LIMIT_MB, DEFAULT_TIMEOUT_S

    p = sub.add_parser(
        "batch",
        help=one_line,
        description=(
            "Assess every study found under ROOT (any folder layout: one folder per study, PACS or CD exports, "
            "NIfTI files) and write each study's results into its own folder under --out, named after the "
            "study's folder (never after the patient). Studies run in separate worker processes: a study that "
            "fails, takes too long or runs out of memory is recorded with the reason and the others carry on. "
            "--out/summary.csv (opens in a spreadsheet) and summary.json list every study: status, vertebral "
            "levels found, fractures, oedema, eligibility, run time and error. If the batch is stopped (Ctrl-C, "
            "power cut), run the same command again with --resume: finished studies are kept and only the "
            "others are run. Exit status: 0 all studies assessed, 1 some could not be, 2 a mistake in the "
            "command, the settings or a clinical file (nothing was run), 130 stopped with Ctrl-C."
        ),
        epilog=(
            "examples:\n"
            "  spine-assess batch /data/exports --out /data/results -j 2\n"
            "  spine-assess batch /data/exports --out /data/results -j 2 --resume      (continue after a stop)\n"
            "  spine-assess batch /data/exports --out /data/results --clinical-dir /data/clinical\n"
            "  spine-assess batch /shared/exports --out /shared/results --dask-scheduler tcp://10.0.0.5:8786\n"
            "\nclinical files with --clinical-dir D: D/<StudyInstanceUID>.yaml, or D/<study folder>.yaml where\n"
            "<study folder> is the study's folder relative to ROOT (e.g. D/site1/study07.yaml for\n"
            "ROOT/site1/study07); without them, a clinical.yaml inside the study's own folder is used.\n"
            "Details: docs/batch.md"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("root", metavar="ROOT", type=Path, help="folder holding the studies (searched in all sub-folders)")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder (one sub-folder per study)")
    p.add_argument(
        "-j",
        "--jobs",
        type=int,
        default=1,
        metavar="N",
        help="studies processed at the same time (default 1; at most the number of CPU cores)",
    )
    p.add_argument(
        "--clinical-dir", type=Path, default=None, metavar="D", help="folder with one clinical file per study"
    )
    again = p.add_mutually_exclusive_group()
    again.add_argument(
        "--resume",
        action="store_true",
        help="continue an earlier batch into the same --out: keep finished studies whose files did not change",
    )
    again.add_argument("--force", action="store_true", help="run every study again, replacing earlier results")
    p.add_argument(
        "--retry-failed",
        action="store_true",
        help="with --resume, also run again the studies that failed last time (default: keep their error)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        metavar="S",
        help=f"stop a study after S seconds (default {DEFAULT_TIMEOUT_S:g}; 0 = no limit)",
    )
    p.add_argument(
        "--memory-limit",
        type=int,
        default=DEFAULT_MEMORY_LIMIT_MB,
        metavar="MB",
        help=f"stop a study whose worker uses more memory than this (default {DEFAULT_MEMORY_LIMIT_MB}; 0 = no limit)",
    )
    add_outputs(p)
    add_anchor(
        p,
        "level-count correction applied to EVERY study (see spine-assess run --help); rarely right for a batch",
    )
    add_config_dir(p)
    p.add_argument(
        "--dask-scheduler",
        default=None,
        metavar="tcp://HOST:PORT",
        help="run the studies on a Dask cluster instead of this computer (see docs/batch.md); -j is then ignored",
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from pipeline.batch.executor import make_executor
    from pipeline.batch.ledger import batch_lock
    from pipeline.batch.plan import options_salt, plan_batch
    from pipeline.batch.runner import BatchSettings, Mode, StopRequest, check_folders, prepare_out_dir, run_batch
    from pipeline.batch.summary import format_end_screen
    from pipeline.run import load_pipeline_config

    t0 = time.monotonic()
    if args.jobs < 1:
        raise ConfigError(f"-j/--jobs must be at least 1, got {args.jobs}")
    if args.timeout < 0 or args.memory_limit < 0:
        raise ConfigError("--timeout and --memory-limit must be positive (0 = no limit)")
    if args.retry_failed and not args.resume:
        raise ConfigError("--retry-failed goes with --resume")
    outputs = outputs_option(args)
    anchor = anchor_option(args)  # refuse a bad anchor before any study starts
    root: Path = args.root
    if not root.is_dir():
        raise ConfigError(f"{root}: no such folder; give the folder that holds the studies")
    if args.clinical_dir is not None and not args.clinical_dir.is_dir():
        raise ConfigError(f"--clinical-dir {args.clinical_dir}: no such folder")
    check_folders(root, args.out)
    config = load_pipeline_config(args.config_dir)
    mode = Mode.RESUME if args.resume else Mode.FORCE if args.force else Mode.NEW
    prepare_out_dir(args.out, mode)
    with batch_lock(args.out):
        logger.info("looking for studies under %s ...", root)
        with ingest_quiet_unless_verbose(args.verbose):
            salt = options_salt(version=__version__, config_sha256=config.sha256, outputs=outputs, anchor=anchor)
            plan = plan_batch(root, ingest=config.ingest, salt=salt, clinical_dir=args.clinical_dir)
        if not plan.studies and not plan.unreadable:
            print(f"spine-assess: no studies found under {root} ({plan.n_files} files looked at)", file=sys.stderr)
            return 1
        worker_level = logging.DEBUG if args.verbose > 1 else logging.INFO if args.verbose else logging.WARNING
        executor = make_executor(workers=args.jobs, dask_scheduler=args.dask_scheduler, log_level=worker_level)
        label = (
            f"Dask {args.dask_scheduler}, {getattr(executor, 'capacity', '?')} worker thread(s)"
            if args.dask_scheduler
            else f"{args.jobs} worker process{'es' if args.jobs > 1 else ''}"
        )
        settings = BatchSettings(
            outputs=outputs,
            anchor=anchor,
            config_dir=config.config_dir.resolve(),
            config_sha256=config.sha256,
            timeout_s=args.timeout or None,
            memory_limit_mb=args.memory_limit or None,
        )
        stop = StopRequest()
        previous = {
            signal.SIGINT: signal.signal(signal.SIGINT, lambda signum, frame: stop.request(signum)),
            signal.SIGTERM: signal.signal(signal.SIGTERM, lambda signum, frame: stop.request(signum, now=True)),
        }
        try:
            result = run_batch(
                plan,
                args.out,
                executor=executor,
                settings=settings,
                mode=mode,
                retry_failed=args.retry_failed,
                progress_tty=False if args.quiet else None,
                stop=stop,
                workers_label=label,
            )
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    print(
        format_end_screen(
            result.rows,
            root=plan.root,
            out_root=args.out,
            elapsed_s=time.monotonic() - t0,
            workers=label,
            n_skipped_files=plan.n_skipped,
            interrupted=result.interrupted,
        )
    )
    return result.exit_code
