"""A one-line live progress display for the terminal: done / failed / best so far."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Prints ``[####....] 12/20 done | 1 failed | best accuracy=0.91 | 34s``.

    On a terminal the line is redrawn in place; otherwise one line is printed per update.
    """

    def __init__(self, total: int, stream: TextIO | None = None, width: int = 24) -> None:
        self.total = total
        self.stream = stream or sys.stderr
        self.width = width
        self.start = time.monotonic()
        self.tty = getattr(self.stream, "isatty", lambda: False)()

    def update(self, done: int, failed: int, best: str = "") -> None:
        """Redraws the line with ``done`` finished trials of which ``failed`` failed."""
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
        """Ends the line on a terminal."""
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
