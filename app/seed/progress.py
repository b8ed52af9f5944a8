"""Progress of a long command on stderr: one line rewritten in place on a terminal, one line
per step in a log (a captured stderr has no use for carriage returns: they glued every step
onto one line)."""

from __future__ import annotations

import sys
from typing import TextIO


class Progress:
    def __init__(self, label: str, total: int, stream: TextIO | None = None) -> None:
        self.label = label
        self.total = total
        self.stream = stream or sys.stderr
        self.terminal = self.stream.isatty()

    def step(self, done: int) -> None:
        line = f"{self.label} {done}/{self.total}"
        if self.terminal:
            end = "\n" if done >= self.total else ""
            print(f"\r{line}", end=end, file=self.stream, flush=True)
        else:
            print(line, file=self.stream, flush=True)
