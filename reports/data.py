"""Everything the HTML report shows about a job, the runs since a date or the whole archive (a report's Scope),
read from the database alone (no photo is opened here)."""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, select

from db.models import Face, Image, Model
from db.reads import breakdown, failed_images, job_summary
from db.scopes import Scope, job_scope
from fer_model.classes import CLASSES
from reports.photo_dates import DateSource, photo_date
from reports.thumbnails import Box

FACES_PER_STRIP = 8
MAX_FAILURES_LISTED = 500
# Beyond this many months, emotions over time are shown per year.
MAX_MONTHS = 36
# Split names in models.metrics (the model card's) and what they are in FER2013 terms, preferred first.
ACCURACY_SPLITS = (("test", "FER2013 PrivateTest"), ("val", "FER2013 PublicTest"))


@dataclass(frozen=True)
class ModelInfo:
    name: str
    version: str | None
    accuracy: float | None = None
    accuracy_split: str | None = None


@dataclass(frozen=True)
class FaceRef:
    path: str
    label: str
    confidence: float
    box: Box


@dataclass(frozen=True)
class EmotionStrip:
    """The most and the least confident faces given one emotion."""

    label: str
    faces: int
    most_confident: list[FaceRef]
    least_confident: list[FaceRef]


@dataclass(frozen=True)
class PhotoDates:
    """Faces per emotion per period of the photos' dates; counts of photos by where their date came from."""

    unit: str
    rows: list[dict[str, Any]]
    sources: dict[DateSource, int]


@dataclass(frozen=True)
class FailedImage:
    path: str
    error: str


@dataclass(frozen=True)
class ReportData:
    summary: dict[str, Any]
    models: list[ModelInfo]
    folders: list[dict[str, Any]]
    dates: PhotoDates
    confidences: dict[str, list[float]]
    strips: list[EmotionStrip]
    failures: list[FailedImage]
    generated_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc))


def collect_report(engine: Engine, job_id: int, faces_per_strip: int = FACES_PER_STRIP) -> ReportData | None:
    """The report's data for ``job_id``, or None when there is no such job."""
    summary = job_summary(engine, job_id)
    if summary is None:
        return None
    return collect_scope_report(engine, summary, job_scope(job_id), faces_per_strip)


def collect_scope_report(engine: Engine, summary: dict[str, Any], scope: Scope,
                         faces_per_strip: int = FACES_PER_STRIP) -> ReportData:
    """The report's data for the images of ``scope``, under the headline ``summary`` (a job's, the runs since a
    date, or the whole archive's, from db.reads)."""
    return ReportData(
        summary=summary,
        models=_models(engine, scope, summary),
        folders=breakdown(engine, scope, "folder"),
        dates=_photo_dates(engine, scope),
        confidences=_confidences(engine, scope),
        strips=[_strip(engine, scope, label, summary["emotions"][label], faces_per_strip) for label in CLASSES],
        failures=_failures(engine, scope),
    )


def _models(engine: Engine, scope: Scope, summary: dict[str, Any]) -> list[ModelInfo]:
    used = select(Face.model_id).join(Image).where(scope.done, scope.faces).distinct()
    with engine.connect() as connection:
        rows = connection.execute(select(Model).where(Model.id.in_(used)).order_by(Model.name, Model.version)).all()
    if not rows:  # no faces yet: name the model the job asked for
        return [ModelInfo(name=str(summary["model"]["name"]), version=summary["model"]["version"])]
    return [ModelInfo(row.name, row.version, *_accuracy(row.metrics or {})) for row in rows]


def _accuracy(metrics: dict[str, Any]) -> tuple[float | None, str | None]:
    for split, description in ACCURACY_SPLITS:
        accuracy = (metrics.get(split) or {}).get("accuracy")
        if isinstance(accuracy, (int, float)):
            return float(accuracy), description
    return None, None


def _photo_dates(engine: Engine, scope: Scope) -> PhotoDates:
    query = (
        select(Image.id, Image.taken_at, Image.mtime, Face.label)
        .join(Face, Face.image_id == Image.id)
        .where(scope.done, scope.faces)
    )
    dates: dict[int, dt.datetime | None] = {}
    sources: Counter[DateSource] = Counter()
    faces_by_day: dict[dt.date, Counter[str]] = defaultdict(Counter)
    with engine.connect() as connection:
        for image_id, taken_at, mtime, label in connection.execute(query):
            if image_id not in dates:
                dates[image_id], source = photo_date(taken_at, mtime)
                sources[source] += 1
            if dates[image_id] is not None:
                faces_by_day[dates[image_id].date()][label] += 1
    months = {(day.year, day.month) for day in faces_by_day}
    unit = "year" if len(months) > MAX_MONTHS else "month"
    periods: dict[str, Counter[str]] = defaultdict(Counter)
    for day, labels in faces_by_day.items():
        periods[f"{day.year:04d}" if unit == "year" else f"{day.year:04d}-{day.month:02d}"].update(labels)
    rows = [
        {"period": period, "faces": sum(labels.values()), **{name: labels.get(name, 0) for name in CLASSES}}
        for period, labels in sorted(periods.items())
    ]
    return PhotoDates(unit, rows, {source: sources.get(source, 0) for source in ("exif", "file", "unknown")})


def _confidences(engine: Engine, scope: Scope) -> dict[str, list[float]]:
    by_label: dict[str, list[float]] = {name: [] for name in CLASSES}
    query = select(Face.label, Face.confidence).join(Image).where(scope.done, scope.faces)
    with engine.connect() as connection:
        for label, confidence in connection.execute(query):
            by_label.setdefault(label, []).append(float(confidence))
    return by_label


def _strip(engine: Engine, scope: Scope, label: str, faces: int, size: int) -> EmotionStrip:
    base = (
        select(Face.id, Image.path, Face.label, Face.confidence, Face.x, Face.y, Face.w, Face.h)
        .join(Image)
        .where(scope.done, scope.faces, Face.label == label)
    )
    with engine.connect() as connection:
        most = connection.execute(base.order_by(Face.confidence.desc(), Face.id).limit(size)).all()
        shown = [row.id for row in most]
        least = connection.execute(
            base.where(Face.id.not_in(shown)).order_by(Face.confidence.asc(), Face.id).limit(size)
        ).all()
    return EmotionStrip(label, faces, [_face_ref(row) for row in most], [_face_ref(row) for row in least])


def _face_ref(row: Any) -> FaceRef:
    return FaceRef(row.path, row.label, float(row.confidence), Box(row.x, row.y, row.w, row.h))


def _failures(engine: Engine, scope: Scope) -> list[FailedImage]:
    with engine.connect() as connection:
        failed = failed_images(connection, scope)[:MAX_FAILURES_LISTED]
    return [FailedImage(path, error or "(no message)") for path, error in failed]
