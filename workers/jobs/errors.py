"""The errors the library raises: their messages are written for people and say what to do."""

from __future__ import annotations

from collections.abc import Sequence


class PipelineError(Exception):
    """A call that cannot start or go on: bad input or settings, an unreachable server, a run that failed."""


class NotStarted(PipelineError):
    """Another run over overlapping folders is still going: job ``job_id`` over ``roots``."""

    def __init__(self, message: str, job_id: int, roots: Sequence[str] = ()):
        super().__init__(message)
        self.job_id = job_id
        self.roots = list(roots)


class Interrupted(PipelineError):
    """Ctrl-C or SIGTERM stopped the run; the job keeps what was finished."""


class NoSuchJob(PipelineError):
    """No job with that id, or no job at all yet."""
