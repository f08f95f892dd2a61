"""Numbered steps with their time: readable on a terminal and in a CI log alike (one plain line per event, no redraws)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console


class Steps:
    def __init__(self, total: int, console: Console | None = None) -> None:
        self.total = total
        self.n = 0
        self.console = console or Console(soft_wrap=True, highlight=False)

    @contextmanager
    def step(self, what: str) -> Iterator[None]:
        self.n += 1
        self.console.print(f"[bold]==> [{self.n}/{self.total}] {what}[/bold]")
        start = time.monotonic()
        try:
            yield
        except BaseException:
            self.console.print(f"[red]<== [{self.n}/{self.total}] {what}: failed after {time.monotonic() - start:.1f} s[/red]")
            raise
        self.console.print(f"<== [{self.n}/{self.total}] {what}: done in {time.monotonic() - start:.1f} s")

    def note(self, line: str) -> None:
        self.console.print(f"    {line}")
