"""Detect and classify faces in photos: the library API (`Archive`), the runs under it (`workers.pipeline`), the
Celery app and tasks, and the chunk work shared by Celery workers and local runs.

    from workers import Archive, JobOptions
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from workers.archive import Archive
    from workers.errors import Interrupted, NoSuchJob, NotStarted, PipelineError
    from workers.options import JobOptions
    from workers.progress import NoProgress

__all__ = ["Archive", "Interrupted", "JobOptions", "NoProgress", "NoSuchJob", "NotStarted", "PipelineError"]

_HOMES = {"Archive": "workers.archive", "JobOptions": "workers.options", "NoProgress": "workers.progress",
          "PipelineError": "workers.errors", "NotStarted": "workers.errors", "Interrupted": "workers.errors",
          "NoSuchJob": "workers.errors"}


def __getattr__(name: str):
    # Loaded on first use: the detection processes and `fer --help` import parts of workers and must not pay for
    # the library API's imports (SQLAlchemy, the model registry).
    if name in _HOMES:
        from importlib import import_module

        return getattr(import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'workers' has no attribute {name!r}")
