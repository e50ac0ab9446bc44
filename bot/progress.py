"""A small progress bar for command-line tools, drawn on a terminal only.

On a terminal the bar is redrawn in place on stderr, and lines printed through
:meth:`ProgressBar.print` appear above it. Elsewhere (pipes, files, CI logs) no bar
is drawn and printed lines pass through unchanged, so output stays one line per item.
"""

from __future__ import annotations

import shutil
import sys
from typing import TextIO

_BAR_WIDTH = 24


class ProgressBar:
    """A bar that shows how many of a known number of items are done."""

    def __init__(self, *, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self._line = ""

    def show(self, done: int, total: int, label: str = "") -> None:
        """Draw the bar at ``done`` of ``total`` items, followed by ``label``."""
        if not self.enabled or total <= 0:
            return
        filled = _BAR_WIDTH * min(done, total) // total
        bar = "#" * filled + "-" * (_BAR_WIDTH - filled)
        columns = shutil.get_terminal_size((80, 20)).columns
        self._line = f"[{bar}] {done}/{total} {label}"[: max(columns - 1, 10)]
        self._write("\r\x1b[K" + self._line)

    def print(self, line: str, *, file: TextIO | None = None) -> None:
        """Print a line above the bar (or just print it when no bar is drawn)."""
        self._write("\r\x1b[K" if self.enabled else "")
        print(line, file=file or sys.stdout, flush=True)
        if self._line:
            self._write(self._line)

    def close(self) -> None:
        """Erase the bar, leaving the printed lines."""
        self._line = ""
        self._write("\r\x1b[K" if self.enabled else "")

    def _write(self, text: str) -> None:
        if text:
            self.stream.write(text)
            self.stream.flush()
