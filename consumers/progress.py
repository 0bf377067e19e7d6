"""A one-line progress bar on a terminal stream: events done, rate, time left. Redrawn at most 10 times a
second; on a stream that is not a terminal, one line every few seconds instead."""

from __future__ import annotations

import time
from typing import TextIO

__all__ = ["Progress"]


class Progress:
    def __init__(self, out: TextIO, label: str) -> None:
        self.out = out
        self.label = label
        self.started = time.monotonic()
        self.done = 0
        self.total: int | None = None
        self._last = 0.0
        self._tty = out.isatty()

    def update(self, done: int, total: int | None = None) -> None:
        self.done, self.total = done, total
        now = time.monotonic()
        if now - self._last < (0.1 if self._tty else 5.0):
            return
        self._last = now
        self._draw(now, final=False)

    def line(self, now: float | None = None) -> str:
        elapsed = max(1e-6, (now or time.monotonic()) - self.started)
        rate = self.done / elapsed
        text = f"{self.label}: {self.done:,}"
        if self.total:
            pct = 100 * self.done / self.total
            left = (self.total - self.done) / rate if rate > 0 else float("inf")
            eta = f"{left:,.0f}s left" if left != float("inf") else "? left"
            text += f"/{self.total:,} events ({pct:5.1f}%)  {rate:,.0f}/s  {eta}"
        else:
            text += f" events  {rate:,.0f}/s"
        return text

    def _draw(self, now: float, *, final: bool) -> None:
        text = self.line(now)
        if self._tty:
            self.out.write("\r\x1b[2K" + text + ("\n" if final else ""))
        else:
            self.out.write(text + "\n")
        self.out.flush()

    def close(self) -> None:
        self._draw(time.monotonic(), final=True)
