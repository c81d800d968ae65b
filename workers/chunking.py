"""Splitting a job's images into chunk tasks (kept free of heavy imports: the CLI reads it at start-up)."""

from __future__ import annotations

DEFAULT_CHUNK_SIZE = 32


def chunked(ids: list[int], size: int) -> list[list[int]]:
    return [ids[i : i + size] for i in range(0, len(ids), size)]
