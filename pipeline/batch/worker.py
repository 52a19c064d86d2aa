"""Worker process of the local executor: ``python -m pipeline.batch.worker FD`` (started by :mod:`.local`).

The parent talks to it over one socket (file descriptor ``FD``) with pickled messages:

- parent -> worker: first an init dict (``sys_path``, ``log_level``, ``threads``, ``parent_pid``,
  ``pdeathsig``), then ``(task_id, payload)`` per task where ``payload`` pickles ``(fn, task)``,
  and ``None`` to stop;
- worker -> parent: ``("start", task_id)`` when a task begins, then ``("done", task_id, outcome)``
  or ``("error", task_id, text)`` when the payload could not be unpickled.

The worker ignores Ctrl-C (the parent decides what happens to running studies), dies with its parent
(Linux ``PR_SET_PDEATHSIG`` plus a parent-pid watchdog), and uses ``threads`` threads for ITK / BLAS so
that N workers use N cores. It exits after a ``crashed`` outcome (e.g. MemoryError) so that the next
study starts in a clean process.
"""

from __future__ import annotations

import ctypes
import dataclasses
import logging
import os
import pickle
import resource
import signal
import sys
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_NOISY_LOGGERS = ("pynetdicom", "distributed", "highdicom", "PIL", "matplotlib", "openjpeg")


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB (Linux reports ru_maxrss in KiB)."""
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(kib / 1024.0 if sys.platform != "darwin" else kib / 1024.0 / 1024.0, 1)


def _die_with_parent(parent_pid: int, use_prctl: bool) -> None:
    if use_prctl and sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # pragma: no cover - exotic libc
            pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(4)

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent_pid:
                os._exit(4)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def _setup(init: dict[str, Any]) -> None:
    for p in init.get("sys_path", ()):
        if p not in sys.path:
            sys.path.append(p)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent(int(init["parent_pid"]), bool(init.get("pdeathsig", True)))
    logging.basicConfig(
        level=int(init.get("log_level", logging.WARNING)),
        format="%(asctime)s %(levelname)-7s [worker %(process)d] %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in _NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(max(logging.WARNING, int(init.get("log_level", logging.WARNING))))
    if int(init.get("log_level", logging.WARNING)) >= logging.WARNING:
        # a study's failure is reported once, by the parent (progress line, summary); the worker keeps its
        # ERROR records (unexpected exceptions with their traceback), and with -v everything
        logging.getLogger("pipeline.batch.task").setLevel(logging.ERROR)
    threads = init.get("threads")
    if threads:
        import SimpleITK as sitk

        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(int(threads))


def serve(conn: Connection) -> int:
    """Run tasks from ``conn`` until told to stop or the parent goes away; return the exit status."""
    from pipeline.batch.task import Status, TaskOutcome

    _setup(conn.recv())
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return 0
        if msg is None:
            return 0
        task_id, payload = msg
        try:
            fn, task = pickle.loads(payload)
        except Exception as exc:  # noqa: BLE001 - reported to the parent as this task's failure
            conn.send(("error", task_id, f"the worker cannot load the task ({type(exc).__name__}: {exc})"))
            continue
        conn.send(("start", task_id))
        t0 = time.perf_counter()
        try:
            outcome = fn(task)
        except BaseException as exc:  # noqa: BLE001 - fn should never raise; if it does, it is this task's crash
            outcome = TaskOutcome(task, Status.CRASHED, f"{type(exc).__name__}: {exc}", time.perf_counter() - t0)
        if isinstance(outcome, TaskOutcome):
            outcome = dataclasses.replace(outcome, worker_peak_rss_mb=peak_rss_mb())
        try:
            conn.send(("done", task_id, outcome))
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            text = f"the outcome cannot be sent back ({type(exc).__name__}: {exc})"
            conn.send(("done", task_id, TaskOutcome(task, Status.FAILED, text, time.perf_counter() - t0)))
        if getattr(outcome, "status", None) == Status.CRASHED:
            return 3


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    conn = Connection(int(args[0]))
    try:
        return serve(conn)
    finally:
        conn.close()


if __name__ == "__main__":
    sys.exit(main())
