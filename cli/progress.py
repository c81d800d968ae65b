"""Progress shown on the terminal: bars for local runs and queued jobs, a spinner for one long step."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from cli.output import console, error_console


def progress_bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
        console=console, transient=True,
    )


class BarProgress:
    """A library run's progress on a rich progress bar, shown from the first ``start`` (a run that stops before
    it has work leaves no trace on the terminal)."""

    def __init__(self, bar: Progress):
        self.bar = bar
        self.task = None
        self.shown = False

    def start(self, total: int, description: str) -> None:
        if not self.shown:
            self.bar.start()
            self.shown = True
        self.task = self.bar.add_task(description, total=total)

    def advance(self, images: int, description: str) -> None:
        self.bar.update(self.task, advance=images, description=description)

    def set_completed(self, images: int) -> None:
        self.bar.update(self.task, completed=images)

    def warn(self, message: str) -> None:
        self.bar.console.print(message, markup=False)

    def close(self) -> None:
        if self.shown:
            self.bar.stop()


@contextmanager
def run_progress() -> Iterator[BarProgress]:
    """A progress bar for a run, removed at the end of the block."""
    progress = BarProgress(progress_bar())
    try:
        yield progress
    finally:
        progress.close()


class SpinnerProgress:
    """A one-step piece of work (building an HTML page) as a spinner on stderr, shown from ``start`` until ``close``."""

    def __init__(self) -> None:
        self.status = None

    def start(self, total: int, description: str) -> None:
        self.status = error_console.status(description)
        self.status.start()

    def advance(self, images: int, description: str) -> None:
        pass

    def close(self) -> None:
        if self.status is not None:
            self.status.stop()


@contextmanager
def spinner() -> Iterator[SpinnerProgress]:
    progress = SpinnerProgress()
    try:
        yield progress
    finally:
        progress.close()
