"""Progress lines for long stages: ``extract: 120/3000 (4.0%) 24.7 items/s, ETA 1m57s``.

Lines go to stderr by default (so they land in the job log under ``ray job submit``), at most one
every ``every_s`` seconds plus a final line on :meth:`Progress.close`.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable


def progress_enabled(quiet: bool) -> bool:
    """False when the user asked for ``--quiet`` (or set ``DEEPGEN_QUIET=1``)."""
    return not quiet and os.environ.get("DEEPGEN_QUIET", "") not in ("1", "true", "yes")


def format_duration(seconds: float) -> str:
    """``42s``, ``1m57s``, ``2h03m``: short and fixed in shape."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def format_line(label: str, done: int, total: int, elapsed: float, unit: str = "items", start: int = 0) -> str:
    """One progress line; the rate and ETA count only the ``done - start`` items of this run."""
    rate = (done - start) / elapsed if elapsed > 0 else 0.0
    pct = f" ({100.0 * done / total:.1f}%)" if total > 0 else ""
    line = f"{label}: {done}/{total}{pct} {rate:.1f} {unit}/s"
    if total > 0 and done >= total:
        return f"{line}, done in {format_duration(elapsed)}"
    if rate > 0 and total > 0:
        return f"{line}, ETA {format_duration((total - done) / rate)}"
    return line


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class Progress:
    """Count finished items of a stage and print a rate/ETA line at most every ``every_s`` seconds."""

    def __init__(self, total: int, label: str, log: Callable[[str], None] | None = None, quiet: bool = False,
                 every_s: float = 5.0, unit: str = "items", start: int = 0):
        self.total, self.label, self.unit = int(total), label, unit
        self.log = log or _stderr
        self.enabled = progress_enabled(quiet)
        self.every_s = every_s
        self.done = self.start = int(start)  # items finished before this run (e.g. on resume): no rate credit
        self.t0 = self._last = time.perf_counter()
        self._closed = False

    def update(self, n: int = 1) -> None:
        """Record ``n`` more finished items; print a line when ``every_s`` has passed since the last one."""
        self.done += int(n)
        now = time.perf_counter()
        if self.enabled and now - self._last >= self.every_s:
            self._last = now
            self.log(self.line(now))

    def line(self, now: float | None = None) -> str:
        """The current progress line."""
        elapsed = (now or time.perf_counter()) - self.t0
        return format_line(self.label, self.done, self.total, elapsed, self.unit, self.start)

    def close(self) -> None:
        """Print the final line (once)."""
        if self._closed:
            return
        self._closed = True
        if self.enabled:
            self.log(self.line())

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
