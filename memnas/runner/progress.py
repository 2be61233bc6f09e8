"""A one-line live progress display for the terminal: done / failed / best so far."""

from __future__ import annotations

import sys
import time
from typing import Mapping, TextIO

from memnas.records import TrialStatus, is_supernet


class Progress:
    """Prints ``[####....] 12/20 done | 1 failed | best accuracy=0.91 | 34s``.

    On a terminal the line is redrawn in place; otherwise one line is printed per update.
    """

    def __init__(self, total: int, stream: TextIO | None = None, width: int = 24,
                 min_interval: float | None = None) -> None:
        self.total = total
        self.stream = stream or sys.stderr
        self.width = width
        self.start = time.monotonic()
        self.tty = getattr(self.stream, "isatty", lambda: False)()
        # Hundreds of short trials a second would otherwise spend their time printing.
        self.min_interval = (0.1 if self.tty else 1.0) if min_interval is None else min_interval
        self._shown = float("-inf")
        self._held: tuple[int, int, str] | None = None

    def update(self, done: int, failed: int, best: str = "") -> None:
        """Redraws the line with ``done`` finished trials of which ``failed`` failed.

        At most one line per ``min_interval`` seconds (0.1 s on a terminal, 1 s
        otherwise); the line of the last trial, and the last one held back when the
        display is closed, are always shown.
        """
        now = time.monotonic()
        if done < self.total and now - self._shown < self.min_interval:
            self._held = (done, failed, best)
            return
        self._shown, self._held = now, None
        frac = done / self.total if self.total else 1.0
        filled = int(round(frac * self.width))
        bar = "#" * filled + "." * (self.width - filled)
        line = (f"[{bar}] {done}/{self.total} done | {failed} failed"
                f"{' | best ' + best if best else ''} | {time.monotonic() - self.start:.0f}s")
        if self.tty:
            self.stream.write("\r" + line + "\033[K")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        """Shows a line held back, then ends the line on a terminal."""
        if self._held is not None:
            self._shown = float("-inf")
            self.update(*self._held)
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


class Tally:
    """Finished and failed trials and the best value of the first objective so far,
    shown on a `Progress` line when there is one.

    Args:
      objectives: the experiment's ``{name: "max" | "min"}``.
      progress: the line to update, or None.
    """

    def __init__(self, objectives: Mapping[str, str], progress: Progress | None = None) -> None:
        self.name, self.direction = next(iter(objectives.items()))
        self.progress = progress
        self.finished = self.failed = 0
        self.spent = 0.0          # budget spent by finished trials (multi-fidelity)
        self.best: float | None = None

    def count(self, status: str, values: Mapping[str, float]) -> None:
        """Counts a finished trial of ``status`` with these metric and cost values; a
        supernet run's values are no candidate's, so they are never the best."""
        self.finished += 1
        self.spent += float(values.get("budget_spent", 0.0) or 0.0)
        if status == TrialStatus.FAILED:
            self.failed += 1
            return
        if status == TrialStatus.INFEASIBLE or values.get("constraint_violation"):
            return                    # never the best: it breaks the constraints
        v = None if is_supernet(values) else values.get(self.name)
        if v is not None and (self.best is None or (v > self.best if self.direction == "max"
                                                    else v < self.best)):
            self.best = v

    def show(self) -> None:
        """Redraws the progress line, if any."""
        if self.progress is not None:
            best = "" if self.best is None else f"{self.name}={self.best:.4g}"
            self.progress.update(self.finished, self.failed, best)
