"""Where a chunk's time went: seconds per stage, summed over its images (kept free of heavy imports)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass


@dataclass
class StageSeconds:
    """Where a chunk's time went, summed over its images."""

    hash: float = 0.0
    decode: float = 0.0
    detect: float = 0.0
    classify: float = 0.0
    write: float = 0.0

    @contextmanager
    def timing(self, stage: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            setattr(self, stage, getattr(self, stage) + time.perf_counter() - started)

    def add(self, other: dict[str, float]) -> None:
        for stage, seconds in other.items():
            setattr(self, stage, getattr(self, stage) + seconds)

    def as_dict(self) -> dict[str, float]:
        return {stage: round(seconds, 4) for stage, seconds in asdict(self).items()}
