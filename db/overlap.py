"""Runs that must not overlap: an unfinished job over any of the same files blocks another.

Two runs overlap when a root of one is a root of the other or lies inside it, in either
direction (`/archive` and `/archive/2024`), compared after resolving symbolic links.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence

from sqlalchemy import Connection, func, select

from db.incremental import STALE_AFTER
from db.models import Image, Job, as_utc, utcnow
from fer_model.files import under_roots

UNFINISHED_STATUSES = ("pending", "running")


class RunStillGoing(Exception):
    """An unfinished, recently active job covers some of the same files."""

    def __init__(self, job_id: int, roots: Sequence[str]):
        super().__init__(f"job {job_id} over {', '.join(roots)} is still running")
        self.job_id = job_id
        self.roots = list(roots)


def roots_overlap(ours: Sequence[str], theirs: Sequence[str]) -> bool:
    """True when a root of one list is a root of the other or lies inside one, in either direction."""
    mine = [os.path.realpath(root) for root in ours]
    others = [os.path.realpath(root) for root in theirs]
    return any(under_roots(a, [b]) or under_roots(b, [a]) for a in mine for b in others)


def overlapping_run(connection: Connection, roots: Sequence[str], exclude: int | None = None,
                    now: dt.datetime | None = None) -> tuple[int, list[str]] | None:
    """(id, roots) of an unfinished job over roots overlapping ``roots`` and active within FER_STALE_RUN_HOURS,
    if any; a job with no progress for longer is taken as dead."""
    now = now or utcnow()
    jobs = connection.execute(
        select(Job.id, Job.roots, Job.created_at).where(Job.status.in_(UNFINISHED_STATUSES)).order_by(Job.id.desc())
    ).all()
    for job in jobs:
        if job.id == exclude or not roots_overlap(roots, job.roots or []):
            continue
        last_activity = connection.scalar(select(func.max(Image.processed_at)).where(Image.job_id == job.id))
        active = max(as_utc(t) for t in (job.created_at, last_activity) if t is not None)
        if now - active < STALE_AFTER:
            return job.id, list(job.roots)
    return None
