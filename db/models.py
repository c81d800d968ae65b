"""The annotation results schema: SQLAlchemy 2.0 typed declarative models.

Unique constraints make every write idempotent: an image appears once per job, a face
once per image, model and face index, so a redelivered task cannot add a second copy.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from fer_model.classes import CLASSES

# failed: the run stopped on an error (jobs.error says which); cancelled: `fer cancel` ended it.
JOB_STATUSES = ("pending", "running", "finished", "interrupted", "failed", "cancelled")
# A job in one of these is over: its pending images are not processed until `fer retry` reopens it.
ENDED_STATUSES = ("failed", "cancelled")
IMAGE_STATUSES = ("pending", "done", "failed")
# Why an incremental run annotated an image: never seen under its path, seen with another size or time, or
# unchanged since its latest attempt failed and tried again (--retry-failed).
IMAGE_CHANGES = ("new", "changed", "retried")
PROBABILITY_COLUMNS = tuple(f"p_{name}" for name in CLASSES)
# Paths compare byte by byte on both databases (PostgreSQL's "C" collation is SQLite's default), so the files
# under a folder are one index range whatever the database's locale, and paths sort alike everywhere.
PATH_TYPE = Text().with_variant(Text(collation="C"), "postgresql")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def as_utc(moment: dt.datetime) -> dt.datetime:
    """An aware UTC time; a naive one is taken as UTC (SQLite returns stored times without their zone)."""
    return moment.astimezone(dt.timezone.utc) if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[str]: JSON}


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    roots: Mapped[list[str]] = mapped_column(default=list)
    options: Mapped[dict[str, Any]] = mapped_column(default=dict)
    images_total: Mapped[int] = mapped_column(default=0)
    images_done: Mapped[int] = mapped_column(default=0)
    images_failed: Mapped[int] = mapped_column(default=0)
    faces_found: Mapped[int] = mapped_column(default=0)
    # Incremental runs: files skipped as already annotated, and files found gone since the last run.
    images_unchanged: Mapped[int] = mapped_column(default=0)
    images_missing: Mapped[int] = mapped_column(default=0)
    # Of the unchanged files, those whose latest attempt failed on their content (not retried: --retry-failed).
    images_unchanged_failed: Mapped[int] = mapped_column(default=0)
    schedule_id: Mapped[int | None] = mapped_column(ForeignKey("schedules.id", ondelete="SET NULL"))
    # Why the job failed, was interrupted or cancelled (one line); null otherwise.
    error: Mapped[str | None] = mapped_column(Text)
    # Entries found while listing that are not image files to annotate (folders named *.jpg, links not followed, loops).
    files_skipped: Mapped[int] = mapped_column(default=0)
    # Folders that could not be listed (permission denied), as [[path, reason], ...]: their files were not annotated.
    unlisted_folders: Mapped[list[Any] | None] = mapped_column(JSON)

    images: Mapped[list[Image]] = relationship(back_populates="job", cascade="all, delete-orphan")


class Model(Base):
    __tablename__ = "models"
    __table_args__ = (UniqueConstraint("name", "version", name="uq_models_name_version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    version: Mapped[str] = mapped_column(String(64))
    file_sha256: Mapped[str] = mapped_column(String(64))
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Image(Base):
    __tablename__ = "images"
    __table_args__ = (
        UniqueConstraint("job_id", "path", name="uq_images_job_path"),
        Index("ix_images_job_status", "job_id", "status"),
        # A file's or a content's latest annotation by a model is one index seek (the newest id at the end of
        # its range), and the files under a folder are one range of paths.
        Index("ix_images_path_model", "path", "model_id", "status", "id"),
        Index("ix_images_sha256_model", "sha256", "model_id", "status", "id"),
        Index("ix_images_model_status", "model_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    path: Mapped[str] = mapped_column(PATH_TYPE)
    size: Mapped[int | None] = mapped_column(BigInteger)
    mtime: Mapped[float | None] = mapped_column(Float)
    sha256: Mapped[str | None] = mapped_column(String(64))
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    error: Mapped[str | None] = mapped_column(Text)
    processed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    duration_ms: Mapped[float | None] = mapped_column(Float)
    # The model that annotated the image (also for images without faces).
    model_id: Mapped[int | None] = mapped_column(ForeignKey("models.id"))
    # Incremental runs: 'new', 'changed' or 'retried'; NULL for a full pass (--reannotate).
    change: Mapped[str | None] = mapped_column(String(16))
    # Set when the file's content had been annotated before (moved, renamed or duplicated):
    # its faces were copied from that image instead of being computed again.
    linked_from_id: Mapped[int | None] = mapped_column(ForeignKey("images.id", ondelete="SET NULL"))
    # When a later incremental run found the file gone; its results are kept.
    missing_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    # When the photo was taken: its EXIF capture date (camera local time, no zone); null when it has none.
    # Read with the pixels, so reports never open the photo again.
    taken_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=False))

    job: Mapped[Job] = relationship(back_populates="images")
    faces: Mapped[list[Face]] = relationship(back_populates="image", cascade="all, delete-orphan")


class DatabaseIdentity(Base):
    """One row: this database's identity, created by the migrations. Every task message carries it and
    a worker connected to another database refuses the task."""

    __tablename__ = "database_identity"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Schedule(Base):
    """A nightly (daily) incremental run over one folder, started by Celery beat."""

    __tablename__ = "schedules"

    id: Mapped[int] = mapped_column(primary_key=True)
    root: Mapped[str] = mapped_column(Text)
    at: Mapped[str] = mapped_column(String(5))  # HH:MM, local time in `timezone`
    timezone: Mapped[str] = mapped_column(String(64))
    options: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_run_on: Mapped[str | None] = mapped_column(String(10))  # local date (YYYY-MM-DD) of the last start
    last_job_id: Mapped[int | None] = mapped_column(Integer)


class Face(Base):
    __tablename__ = "faces"
    __table_args__ = (
        UniqueConstraint("image_id", "model_id", "face_index", name="uq_faces_image_model_index"),
        Index("ix_faces_label", "label"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"))
    face_index: Mapped[int] = mapped_column(Integer)
    x: Mapped[int] = mapped_column(Integer)
    y: Mapped[int] = mapped_column(Integer)
    w: Mapped[int] = mapped_column(Integer)
    h: Mapped[int] = mapped_column(Integer)
    detector_score: Mapped[float | None] = mapped_column(Float)
    label: Mapped[str] = mapped_column(String(16))
    confidence: Mapped[float] = mapped_column(Float)
    p_angry: Mapped[float] = mapped_column(Float)
    p_disgust: Mapped[float] = mapped_column(Float)
    p_fear: Mapped[float] = mapped_column(Float)
    p_happy: Mapped[float] = mapped_column(Float)
    p_neutral: Mapped[float] = mapped_column(Float)
    p_sad: Mapped[float] = mapped_column(Float)
    p_surprise: Mapped[float] = mapped_column(Float)

    image: Mapped[Image] = relationship(back_populates="faces")
    model: Mapped[Model] = relationship()


# The face columns and joins both views share.
_FACE_COLUMNS = """\
       faces.x AS x, faces.y AS y, faces.w AS w, faces.h AS h,
       faces.label AS label, faces.confidence AS confidence,
       faces.p_angry AS p_angry, faces.p_disgust AS p_disgust, faces.p_fear AS p_fear,
       faces.p_happy AS p_happy, faces.p_neutral AS p_neutral, faces.p_sad AS p_sad,
       faces.p_surprise AS p_surprise,
       models.name AS model, models.version AS model_version
FROM faces
JOIN images ON images.id = faces.image_id
JOIN models ON models.id = faces.model_id
"""

FACE_ANNOTATIONS_VIEW = """
CREATE VIEW face_annotations AS
SELECT images.path AS path, images.job_id AS job_id, faces.face_index AS face_index,
""" + _FACE_COLUMNS

# The latest annotation of each file per model version: a file annotated by several runs
# (incremental re-runs, retries, --reannotate) counts once. "No newer done row of the same path and
# model" is one index seek per face on SQLite (ix_images_path_model), and a hash anti-join on
# PostgreSQL; neither sorts the archive.
LATEST_ANNOTATIONS_VIEW = """
CREATE VIEW latest_annotations AS
SELECT images.path AS path, images.job_id AS job_id, images.id AS image_id, images.processed_at AS processed_at,
       faces.face_index AS face_index,
""" + _FACE_COLUMNS + """WHERE images.missing_at IS NULL AND images.status = 'done' AND images.model_id = faces.model_id
  AND NOT EXISTS (SELECT 1 FROM images AS newer
                  WHERE newer.path = images.path AND newer.model_id = faces.model_id AND newer.status = 'done'
                    AND newer.id > images.id)
"""
