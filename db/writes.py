"""Writing jobs and annotation results: jobs, chunks, status marks.

Every write is idempotent: recording a chunk again replaces that chunk's faces instead
of adding copies, and a job's counts are recomputed from its images, never incremented.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, delete, func, insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.incremental import RunPlan, model_id_for
from db.models import ENDED_STATUSES, Face, Image, Job, Model, utcnow
from db.overlap import RunStillGoing, overlapping_run
from db.reads import status_counts
from db.records import ImageResult, ModelIdentity
from db.session import checkpoint_if_large
from fer_model.classes import CLASSES


INSERT_BATCH = 1000
# PostgreSQL advisory lock taken while a job is recorded, so two runs starting at once cannot both
# miss each other (on SQLite the job's INSERT takes the database's write lock first).
JOB_START_LOCK = 0x66657231
# Image rows recorded per transaction when a job is created. SQLite's write-ahead log holds a whole
# transaction (about 350 bytes an image with its index entries), so a job of any size keeps it bounded.
JOB_BATCH = 50_000


@dataclass(frozen=True)
class Listing:
    """What listing the run's folders found besides image files: entries skipped, folders that could not be listed."""

    skipped: int = 0
    unlisted: list[tuple[str, str]] = field(default_factory=list)  # (folder, reason)


def create_job(engine: Engine, roots: Sequence[str], options: dict[str, Any], paths: Iterable[str]) -> int:
    """Record a full pass: the job and one pending image row per path."""
    return create_planned_job(engine, roots, options, RunPlan(to_annotate=[(path, None) for path in paths]))


def create_planned_job(
    engine: Engine, roots: Sequence[str], options: dict[str, Any], plan: RunPlan, schedule_id: int | None = None,
    listing: Listing | None = None,
) -> int:
    """Record the job, its pending images and the missing marks.

    Raises RunStillGoing (and records nothing) when an unfinished job over overlapping roots exists: the
    check runs inside the transaction that records the job row, so of two runs starting at once one is
    refused. The images then go in transactions of JOB_BATCH; a job whose recording stops part-way (an
    error, Ctrl-C) is deleted with the images recorded so far, so no job is left half-recorded.
    """
    listing = listing or Listing()
    with Session(engine) as session, session.begin():
        if engine.dialect.name == "postgresql":
            session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": JOB_START_LOCK})
        job = Job(
            roots=list(roots), options=options, status="pending", images_total=len(plan.to_annotate),
            images_unchanged=plan.unchanged, images_unchanged_failed=plan.unchanged_failed,
            images_missing=plan.missing_paths, schedule_id=schedule_id, files_skipped=listing.skipped,
            unlisted_folders=[list(item) for item in listing.unlisted] or None,
        )
        session.add(job)
        session.flush()  # the first write: on SQLite it waits for, then holds, the database's write lock
        running = overlapping_run(session.connection(), roots, exclude=job.id)
        if running is not None:
            raise RunStillGoing(*running)
        job_id = job.id
    try:
        rows = [{"job_id": job_id, "path": path, "status": "pending", "change": change} for path, change in plan.to_annotate]
        for first in range(0, len(rows), JOB_BATCH):
            last = min(first + JOB_BATCH, len(rows))
            with engine.begin() as connection:
                for start in range(first, last, INSERT_BATCH):
                    connection.execute(Image.__table__.insert(), rows[start : min(start + INSERT_BATCH, last)])
            checkpoint_if_large(engine)
        now = utcnow()
        with engine.begin() as connection:
            for start in range(0, len(plan.missing_ids), INSERT_BATCH):
                batch = plan.missing_ids[start : start + INSERT_BATCH]
                connection.execute(update(Image).where(Image.id.in_(batch)).values(missing_at=now))
    except BaseException:
        with engine.begin() as connection:
            connection.execute(delete(Job).where(Job.id == job_id))  # its images go with it (ON DELETE CASCADE)
        raise
    return job_id


def ensure_model(engine: Engine, identity: ModelIdentity) -> int:
    """The models row for this model file, created on first use (safe under concurrent workers)."""
    found = model_id_for(engine, identity.name, identity.version)
    if found is not None:
        return found
    row = {"name": identity.name, "version": identity.version, "file_sha256": identity.file_sha256, "metrics": identity.metrics}
    try:
        with engine.begin() as connection:
            connection.execute(insert(Model), [row])
    except IntegrityError:
        pass  # another worker created it first
    return model_id_for(engine, identity.name, identity.version)


def mark_running(engine: Engine, job_id: int) -> None:
    with engine.begin() as connection:
        connection.execute(update(Job).where(Job.id == job_id, Job.status == "pending").values(status="running"))


# One statement for every image of a chunk (executemany): built once, not once per image.
_images = Image.__table__
_WRITE_IMAGE = (
    update(_images)
    .where(_images.c.id == bindparam("b_id"), _images.c.job_id == bindparam("b_job"))
    .values({column: bindparam(column) for column in (
        "status", "error", "width", "height", "size", "mtime", "sha256", "taken_at", "processed_at", "duration_ms",
        "model_id", "linked_from_id")})
)


def record_chunk(engine: Engine, job_id: int, model_id: int, results: Sequence[ImageResult]) -> None:
    """Write a chunk's results in one transaction, replacing any earlier copy of them."""
    now = utcnow()
    with engine.begin() as connection:
        ids = [result.image_id for result in results]
        if not ids:
            return
        connection.execute(delete(Face).where(Face.image_id.in_(ids), Face.model_id == model_id))
        connection.execute(_WRITE_IMAGE, [
            {
                "b_id": result.image_id, "b_job": job_id, "status": result.status, "error": result.error,
                "width": result.width, "height": result.height, "size": result.size, "mtime": result.mtime,
                "sha256": result.sha256, "taken_at": result.taken_at, "processed_at": now,
                "duration_ms": result.duration_ms, "model_id": model_id if result.status == "done" else None,
                "linked_from_id": result.linked_from,
            }
            for result in results
        ])
        rows = [
            {
                "image_id": result.image_id,
                "model_id": model_id,
                "face_index": face.index,
                "x": face.x,
                "y": face.y,
                "w": face.w,
                "h": face.h,
                "detector_score": face.score,
                "label": face.label,
                "confidence": face.confidence,
                **{f"p_{name}": p for name, p in zip(CLASSES, face.probabilities)},
            }
            for result in results
            for face in result.faces
        ]
        if rows:
            connection.execute(Face.__table__.insert(), rows)
        pending = connection.scalar(
            select(Image.id).where(Image.job_id == job_id, Image.status == "pending").limit(1)
        )
    checkpoint_if_large(engine)
    if pending is None:  # the job's counts are refreshed once, when its last chunk is written
        finish_job_if_complete(engine, job_id)


def finish_job_if_complete(engine: Engine, job_id: int) -> bool:
    """Refresh the job's counts; mark it finished once no image is pending. Runs after the chunk commits."""
    with engine.begin() as connection:
        complete = _refresh_counts(connection, job_id).get("pending", 0) == 0
        if complete:  # a failed or cancelled job keeps its status and reason
            connection.execute(
                update(Job).where(Job.id == job_id, Job.status.not_in(ENDED_STATUSES)).values(status="finished", error=None)
            )
            connection.execute(update(Job).where(Job.id == job_id, Job.finished_at.is_(None)).values(finished_at=utcnow()))
        return complete


def _refresh_counts(connection: Connection, job_id: int) -> dict[str, int]:
    """Recount the job's images by status and its faces into the jobs row; returns the counts by status."""
    counts = status_counts(connection, [job_id])
    faces = connection.scalar(select(func.count(Face.id)).join(Image).where(Image.job_id == job_id)) or 0
    connection.execute(update(Job).where(Job.id == job_id).values(
        images_total=sum(counts.values()), images_done=counts.get("done", 0), images_failed=counts.get("failed", 0),
        faces_found=faces,
    ))
    return counts


def mark_job(engine: Engine, job_id: int, status: str, error: str | None = None, if_unfinished: bool = False) -> None:
    """Set a job's status and its reason (e.g. 'interrupted' when its submission was cut short, 'failed' with why);
    with ``if_unfinished``, only a job still pending or running changes."""
    values: dict[str, Any] = {"status": status, "error": error}
    if status in ENDED_STATUSES:
        values["finished_at"] = utcnow()
    statement = update(Job).where(Job.id == job_id)
    if if_unfinished:
        statement = statement.where(Job.status.in_(("pending", "running")))
    with engine.begin() as connection:
        connection.execute(statement.values(**values))
        _refresh_counts(connection, job_id)  # a run that stopped part-way counts what it did


def mark_cancelled(engine: Engine, job_id: int) -> str | None:
    """End a job that is pending, running or interrupted: its pending images will not be processed.

    Returns the status the job had (None: no such job). A finished job is left as it is.
    """
    with engine.begin() as connection:
        status = connection.scalar(select(Job.status).where(Job.id == job_id))
        if status in ("pending", "running", "interrupted", "failed"):
            connection.execute(
                update(Job).where(Job.id == job_id)
                .values(status="cancelled", error="cancelled with `fer cancel`", finished_at=utcnow())
            )
            _refresh_counts(connection, job_id)
    return status


def update_job_options(engine: Engine, job_id: int, changes: dict[str, Any]) -> dict[str, Any]:
    """Change some of a job's options (e.g. the detector that made it fail); returns the new options."""
    with engine.begin() as connection:
        options = dict(connection.scalar(select(Job.options).where(Job.id == job_id)) or {})
        options.update(changes)
        connection.execute(update(Job).where(Job.id == job_id).values(options=options))
    return options


def reopen_job(engine: Engine, job_id: int, include_failed: bool) -> list[int]:
    """Make a job runnable again and return the ids of the images that need work.

    Pending images (never queued, or queued and lost) are returned as they are; with
    ``include_failed``, failed images are reset to pending first (their error cleared).
    Done images are never touched, so nothing is counted twice.
    """
    with engine.begin() as connection:
        if include_failed:
            connection.execute(
                update(Image)
                .where(Image.job_id == job_id, Image.status == "failed")
                .values(status="pending", error=None, processed_at=None)
            )
        ids = list(connection.scalars(
            select(Image.id).where(Image.job_id == job_id, Image.status == "pending").order_by(Image.id)
        ))
        if ids:
            connection.execute(update(Job).where(Job.id == job_id).values(status="pending", finished_at=None, error=None))
    finish_job_if_complete(engine, job_id)
    return ids
