"""Detect and classify faces in photos: the library API (`Archive`) and the runs under it (`workers.pipeline`).

Below them, each sub-package holds one part: `jobs` (options, files, recording a job), `chunks` (a chunk's work,
here or in a worker), `queue` (Celery), `vision` (photos and face detection), `serving` (the emotion model).

    from workers import Archive, JobOptions
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from workers.archive import Archive
    from workers.jobs.errors import Interrupted, NoSuchJob, NotStarted, PipelineError
    from workers.jobs.options import JobOptions
    from workers.progress import NoProgress

__all__ = ["Archive", "Interrupted", "JobOptions", "NoProgress", "NoSuchJob", "NotStarted", "PipelineError"]

_HOMES = {"Archive": "workers.archive", "JobOptions": "workers.jobs.options", "NoProgress": "workers.progress",
          **dict.fromkeys(("PipelineError", "NotStarted", "Interrupted", "NoSuchJob"), "workers.jobs.errors")}


def __getattr__(name: str):
    # Loaded on first use: the detection processes and `fer --help` import parts of workers and must not pay for
    # the library API's imports (SQLAlchemy, the model registry).
    if name in _HOMES:
        from importlib import import_module

        return getattr(import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'workers' has no attribute {name!r}")
