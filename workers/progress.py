"""How the library reports progress: to an object the caller passes in, a do-nothing one by default."""

from __future__ import annotations

from typing import Protocol


class RunProgress(Protocol):
    """A run's progress: ``start`` once the work is known, ``advance`` as images are done."""

    def start(self, total: int, description: str) -> None: ...

    def advance(self, images: int, description: str) -> None: ...


class FollowProgress(Protocol):
    """Following a queued job: its size, how many images are done, and a warning when it does not move."""

    def start(self, total: int, description: str) -> None: ...

    def set_completed(self, images: int) -> None: ...

    def warn(self, message: str) -> None: ...


class Progress(RunProgress, FollowProgress, Protocol):
    """Both: a call that may run a job here or follow it on the workers (retry, submit and wait)."""


class NoProgress:
    """Progress that goes nowhere: the default of every library call that reports progress."""

    def start(self, total: int, description: str) -> None:
        pass

    def advance(self, images: int, description: str) -> None:
        pass

    def set_completed(self, images: int) -> None:
        pass

    def warn(self, message: str) -> None:
        pass


NO_PROGRESS = NoProgress()
