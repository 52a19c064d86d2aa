"""Batch progress: a one-line bar on a terminal, plain log lines otherwise (cron, CI, redirected output).

On a terminal (``stream.isatty()``) the bar shows studies done / total, how many failed, how many are
running, the elapsed time and an ETA (remaining studies x elapsed / studies finished in this run), and is
redrawn in place; a study that does not succeed gets its own line above the bar. Log records written to
the same stream while the bar is shown first clear the bar (a logging filter), so lines never mix.
Elsewhere each finished study is one log line of the ``pipeline.batch`` logger:
``[12/40] ok      site1/study07 (3.4 s)  ETA 2:10``.
"""

from __future__ import annotations

import logging
import shutil
import sys
import time
from typing import TextIO

logger = logging.getLogger("pipeline.batch")


def _clock(s: float) -> str:
    s = max(0, int(round(s)))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


class _ClearBar(logging.Filter):
    def __init__(self, progress: Progress) -> None:
        super().__init__()
        self.progress = progress

    def filter(self, record: logging.LogRecord) -> bool:
        self.progress.clear()
        return True


class Progress:
    """Progress of ``total`` studies (``already_done`` of them kept from an earlier run)."""

    def __init__(
        self, total: int, *, already_done: int = 0, stream: TextIO | None = None, tty: bool | None = None
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(tty if tty is not None else getattr(self.stream, "isatty", lambda: False)())
        self.total = total
        self.done = already_done
        self.failed = 0
        self.running = 0
        self._run_done = 0  # finished in this run (for the ETA)
        self._t0 = time.monotonic()
        self._shown = False
        self._last_draw = 0.0
        self._filters: list[tuple[logging.Handler, _ClearBar]] = []
        self.note = ""

    def __enter__(self) -> Progress:
        if self.tty:
            for h in logging.getLogger().handlers:
                if getattr(h, "stream", None) is self.stream:
                    f = _ClearBar(self)
                    h.addFilter(f)
                    self._filters.append((h, f))
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.tty:
            self.draw(force=True)
            if self._shown:
                self.stream.write("\n")
                self.stream.flush()
                self._shown = False
        for h, f in self._filters:
            h.removeFilter(f)
        self._filters.clear()

    # ------------------------------------------------------------------ events
    def study_done(self, name: str, status: str, runtime_s: float, error: str | None = None) -> None:
        self.done += 1
        self._run_done += 1
        if status != "ok":
            self.failed += 1
        text = f"[{self.done}/{self.total}] {status:<7} {name} ({runtime_s:.1f} s)" + (f": {error}" if error else "")
        eta = self.eta_s()
        if not self.tty and eta is not None and self.done < self.total:
            text += f"  ETA {_clock(eta)}"
        if self.tty:
            if status != "ok":
                self.line(text, warning=True)
            self.draw(force=True)
        elif status == "ok":
            logger.info("%s", text)
        else:
            logger.warning("%s", text)

    def line(self, text: str, *, warning: bool = False) -> None:
        """A message above the bar (or a log line without a terminal)."""
        if self.tty:
            self.clear()
            self.stream.write(text + "\n")
            self.stream.flush()
            self.draw(force=True)
        else:
            logger.log(logging.WARNING if warning else logging.INFO, "%s", text)

    def tick(self) -> None:
        if self.tty:
            self.draw()

    # ------------------------------------------------------------------ drawing
    def eta_s(self) -> float | None:
        if self._run_done == 0:
            return None
        elapsed = time.monotonic() - self._t0
        return (self.total - self.done) * elapsed / self._run_done

    def render(self, width: int) -> str:
        elapsed = time.monotonic() - self._t0
        eta = self.eta_s()
        tail = (
            f" {self.done}/{self.total}  failed {self.failed}  running {self.running}  "
            f"{_clock(elapsed)}  ETA {_clock(eta) if eta is not None else '--'}"
            + (f"  {self.note}" if self.note else "")
        )
        bar_w = max(10, min(40, width - len(tail) - 3))
        filled = int(bar_w * self.done / self.total) if self.total else bar_w
        return f"[{'#' * filled}{'.' * (bar_w - filled)}]{tail}"[: max(20, width - 1)]

    def draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_draw < 0.2:
            return
        self._last_draw = now
        width = shutil.get_terminal_size((100, 20)).columns
        self.stream.write("\r\x1b[2K" + self.render(width))
        self.stream.flush()
        self._shown = True

    def clear(self) -> None:
        if self._shown:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()
            self._shown = False
