"""The replay's progress bar: rich, on stderr, with events/s and ETA (or nothing)."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        return Text(rate_text(task.speed))


def rate_text(speed: float | None) -> str:
    return f"{speed:,.0f} events/s" if speed else "- events/s"


class Bar:
    def __init__(self, total: int, *, enabled: bool) -> None:
        self.progress: Progress | None = None
        if not enabled:
            return
        self.progress = Progress(
            "replay",
            BarColumn(),
            MofNCompleteColumn(),
            RateColumn(),
            TimeElapsedColumn(),
            "eta",
            TimeRemainingColumn(),
            console=Console(file=sys.stderr),
            refresh_per_second=4,
        )
        self.progress.start()
        self.task = self.progress.add_task("replay", total=total)

    def advance(self, n: int) -> None:
        if self.progress is not None:
            self.progress.advance(self.task, n)

    def update(self, completed: int) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=completed)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
