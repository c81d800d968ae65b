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

JOB_STATUSES = ("pending", "running", "finished", "interrupted")
IMAGE_STATUSES = ("pending", "done", "failed")
PROBABILITY_COLUMNS = tuple(f"p_{name}" for name in CLASSES)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


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
        Index("ix_images_sha256", "sha256"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    path: Mapped[str] = mapped_column(Text)
    size: Mapped[int | None] = mapped_column(BigInteger)
    mtime: Mapped[float | None] = mapped_column(Float)
    sha256: Mapped[str | None] = mapped_column(String(64))
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    error: Mapped[str | None] = mapped_column(Text)
    processed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    duration_ms: Mapped[float | None] = mapped_column(Float)

    job: Mapped[Job] = relationship(back_populates="images")
    faces: Mapped[list[Face]] = relationship(back_populates="image", cascade="all, delete-orphan")


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


FACE_ANNOTATIONS_VIEW = """
CREATE VIEW face_annotations AS
SELECT images.path AS path, images.job_id AS job_id, faces.face_index AS face_index,
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
