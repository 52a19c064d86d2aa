"""``spine-assess listen``: the DICOM listener (:func:`pipeline.listener.serve`) until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from pipeline.cli.options import add_settings_file, add_spool

logger = logging.getLogger("pipeline.cli")


def add_parser(sub: argparse._SubParsersAction, one_line: str) -> None:
    p = sub.add_parser(
        "listen",
        help=one_line,
        description=(
            "Run the DICOM listener: the PACS (or a scanner) sends sagittal spine MRI studies to this AE title "
            "and port. Every image is saved to the spool folder before it is acknowledged. When no new image of a "
            "study has arrived for trigger.stable_seconds, the study is assessed and its DICOM SR and SEG are sent "
            "to the destinations in the configuration. Keeps running until Ctrl-C or SIGTERM; after a restart it "
            "carries on where it stopped. Check progress with 'spine-assess queue list'. Set-up and operations: "
            "docs/pacs.md."
        ),
    )
    add_settings_file(p, "listener settings", "listener.yaml")
    p.add_argument("--ae-title", default=None, metavar="AET", help="our AE title (overrides network.ae_title)")
    p.add_argument("--port", type=int, default=None, help="TCP port to listen on (overrides network.port)")
    add_spool(p, "spool folder (overrides storage.spool_dir)")
    p.set_defaults(handler=run)


def _listener_config(args: argparse.Namespace) -> object:
    from pipeline.listener import load_listener_config

    cfg = load_listener_config(args.config)
    return cfg.with_overrides(
        ae_title=getattr(args, "ae_title", None), port=getattr(args, "port", None), spool_dir=args.spool
    )


def run(args: argparse.Namespace) -> int:
    import pydicom.config

    from pipeline.listener import serve

    cfg = _listener_config(args)
    # Value validation warnings quote the offending value (a patient name, say) into the log: not in this service.
    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    stop = threading.Event()

    def _on_signal(signum: int, _frame: object) -> None:
        logger.info("signal %d: stopping the listener", signum)
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    serve(cfg, stop)  # type: ignore[arg-type]
    return 0
