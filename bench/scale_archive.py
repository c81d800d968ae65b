"""An annotated archive of any size, written straight into the project's schema (no detector, no model).

Each image is a copy of one of a few template photos, with the template's faces: the real results
of `fer annotate` over the shared photos (`templates_from_database`), or made-up faces for tests
(`synthetic_templates`). Image ``i`` is template ``i % T`` in folder ``i // T``; folders are grouped
as ``ROOT/pNN/bNN/sNN/`` (10 folders a batch, 10 batches a part) and each part is one finished job.
`link_tree` makes the matching files, hard links to the templates, so incremental runs find every
file unchanged.

Rows go in with the project's own tables: SQLAlchemy core inserts (executemany) on SQLite, COPY on
PostgreSQL, with their ids given, so faces need no read-back. Optional history for the tests:
re-annotated files (two done rows of one path), a second model version, failed images and files
marked missing.
"""

from __future__ import annotations

import datetime as dt
import os
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, insert, select, text

from db.models import Face, Image, Job, Model
from db.records import ModelIdentity
from fer_model.classes import CLASSES
from workers.vision.detector_names import DEFAULT_DETECTOR

FOLDERS_PER_BATCH = 10
BATCHES_PER_PART = 10
FOLDERS_PER_PART = FOLDERS_PER_BATCH * BATCHES_PER_PART
INSERT_ROWS = 20_000
FACE_COLUMNS = ("face_index", "x", "y", "w", "h", "detector_score", "label", "confidence",
                *(f"p_{name}" for name in CLASSES))
IMAGE_COLUMNS = ("id", "job_id", "path", "size", "mtime", "sha256", "width", "height", "status", "error",
                 "processed_at", "duration_ms", "model_id", "change", "linked_from_id", "missing_at", "taken_at")
FACE_TABLE_COLUMNS = ("id", "image_id", "model_id", *FACE_COLUMNS)
START = dt.datetime(2025, 1, 1, 2, 30, tzinfo=dt.timezone.utc)


@dataclass(frozen=True)
class Template:
    """One photo every copy of which has the same content and results."""

    name: str
    sha256: str
    size: int
    mtime: float
    width: int
    height: int
    taken_at: dt.datetime | None
    faces: tuple[dict[str, Any], ...]  # FACE_COLUMNS of each face
    source: str | None = None  # the file copies are hard links to


@dataclass
class History:
    """Extra rows that make the archive's history less tidy (each a share of the images, 0 to 1)."""

    reannotated: float = 0.0  # annotated again by a later job, the file changed in between
    other_model: float = 0.0  # also annotated by a second model version
    failed: float = 0.0  # failed in the later job (their earlier annotation stays the latest)
    missing: float = 0.0  # gone: marked missing by the later job
    seed: int = 0


@dataclass
class Archive:
    """What was written: the jobs (one per part, then the history job, if any) and the row counts."""

    root: str
    jobs: list[int] = field(default_factory=list)
    images: int = 0
    faces: int = 0
    folders: int = 0


def folder_of(root: str, folder: int) -> str:
    part, rest = divmod(folder, FOLDERS_PER_PART)
    batch, sub = divmod(rest, FOLDERS_PER_BATCH)
    return f"{root}/p{part:02d}/b{batch:02d}/s{sub:02d}"


def part_root(root: str, part: int) -> str:
    return f"{root}/p{part:02d}"


def synthetic_templates(count: int, seed: int = 0) -> list[Template]:
    """Made-up photos with 0-3 faces each (about 1.05 on average), for tests that need no files."""
    rng = random.Random(seed)
    templates = []
    for index in range(count):
        faces = []
        for face_index in range(rng.choices((0, 1, 2, 3), (0.05, 0.87, 0.06, 0.02))[0]):
            weights = [rng.random() for _ in CLASSES]
            total = sum(weights)
            probabilities = [weight / total for weight in weights]
            best = max(range(len(CLASSES)), key=probabilities.__getitem__)
            faces.append({"face_index": face_index, "x": 10 + 40 * face_index, "y": 20, "w": 60, "h": 60,
                          "detector_score": None, "label": CLASSES[best], "confidence": probabilities[best],
                          **{f"p_{name}": p for name, p in zip(CLASSES, probabilities)}})
        templates.append(Template(
            name=f"photo_{index:04d}.jpg", sha256=f"{index:064x}", size=10_000 + index, mtime=1.6e9 + 3600 * index,
            width=250, height=250, taken_at=dt.datetime(2020, 1 + index % 12, 1, 12) if index % 3 == 0 else None,
            faces=tuple(faces),
        ))
    return templates


def templates_from_database(engine: Engine, job_id: int) -> list[Template]:
    """The done images of a real run and their faces, as templates (their files must still be there)."""
    with engine.connect() as connection:
        images = connection.execute(
            select(Image.id, Image.path, Image.sha256, Image.width, Image.height, Image.taken_at)
            .where(Image.job_id == job_id, Image.status == "done").order_by(Image.path)
        ).all()
        faces: dict[int, list[dict[str, Any]]] = {}
        for row in connection.execute(select(Face.__table__).join(Image).where(Image.job_id == job_id)
                                      .order_by(Face.image_id, Face.face_index)).mappings():
            faces.setdefault(row["image_id"], []).append({column: row[column] for column in FACE_COLUMNS})
    templates = []
    for row in images:
        stat = os.stat(row.path)
        templates.append(Template(os.path.basename(row.path), row.sha256, stat.st_size, stat.st_mtime, row.width,
                                  row.height, row.taken_at, tuple(faces.get(row.id, ())), source=row.path))
    return templates


def link_tree(root: str | Path, templates: Sequence[Template], folders: int, first: int = 0) -> int:
    """Hard links to the templates' files for folders ``first`` .. ``folders - 1``; returns the links made.

    Existing links are kept, so a tree can grow."""
    made = 0
    for folder in range(first, folders):
        target = folder_of(str(root), folder)
        os.makedirs(target, exist_ok=True)
        for template in templates:
            path = f"{target}/{template.name}"
            if not os.path.lexists(path):
                os.link(template.source, path)
                made += 1
    return made


def build_archive(engine: Engine, root: str, templates: Sequence[Template], images: int, model: ModelIdentity,
                  history: History | None = None, other_model: ModelIdentity | None = None) -> Archive:
    """Write ``images`` done images (one job per part of FOLDERS_PER_PART folders) into an empty, upgraded database."""
    postgresql = engine.dialect.name == "postgresql"
    writer = _CopyWriter(engine) if postgresql else _InsertWriter(engine)
    archive = Archive(root=root, folders=-(-images // len(templates)))
    model_id = _model_row(engine, model)
    next_image = _next_id(engine, Image.id)
    next_face = _next_id(engine, Face.id)
    per_part = FOLDERS_PER_PART * len(templates)
    created = START
    for part_start in range(0, images, per_part):
        count = min(per_part, images - part_start)
        job_id = _job_row(engine, [part_root(root, part_start // per_part)], model, created)
        archive.jobs.append(job_id)
        image_rows, face_rows = [], []
        for index in range(part_start, part_start + count):
            template = templates[index % len(templates)]
            path = f"{folder_of(root, index // len(templates))}/{template.name}"
            image_rows.append(_image_row(next_image, job_id, path, template, model_id, created, "new"))
            for face in template.faces:
                face_rows.append((next_face, next_image, model_id, *(face[c] for c in FACE_COLUMNS)))
                next_face += 1
            next_image += 1
            if len(image_rows) >= INSERT_ROWS:
                writer.write(image_rows, face_rows)
                image_rows, face_rows = [], []
        writer.write(image_rows, face_rows)
        _finish_job(engine, job_id, created)
        created += dt.timedelta(days=1)
    if history is not None:
        other_id = _model_row(engine, other_model) if other_model is not None else None
        archive.jobs += _write_history(engine, writer, archive, templates, images, model, model_id,
                                       (other_model, other_id) if other_id is not None else None, history,
                                       next_image, next_face, created)
    writer.close()
    with engine.connect() as connection:
        archive.images = connection.scalar(select(func.count(Image.id)))
        archive.faces = connection.scalar(select(func.count(Face.id)))
    return archive


def _write_history(engine: Engine, writer, archive: Archive, templates: Sequence[Template], images: int,
                   model: ModelIdentity, model_id: int, other: tuple[ModelIdentity, int] | None, history: History,
                   next_image: int, next_face: int, created: dt.datetime) -> list[int]:
    """A later job over the whole archive (re-annotations, failures, missing marks), then one by another model."""
    rng = random.Random(history.seed)
    roots = [part_root(archive.root, part) for part in range(-(-archive.folders // FOLDERS_PER_PART))]
    job_id = _job_row(engine, roots, model, created)
    other_job = _job_row(engine, roots, other[0], created + dt.timedelta(hours=2)) if other else None
    image_rows, face_rows, missing, other_rows = [], [], [], []
    for index in range(images):
        template = templates[index % len(templates)]
        path = f"{folder_of(archive.root, index // len(templates))}/{template.name}"
        draw = rng.random()
        kinds = [("reannotated", history.reannotated), ("failed", history.failed), ("missing", history.missing)]
        kind, bound = None, 0.0
        for name, share in kinds:
            bound += share
            if draw < bound:
                kind = name
                break
        if kind == "missing":
            missing.append(index)
        elif kind is not None:
            failed = kind == "failed"
            row = _image_row(next_image, job_id, path, template, None if failed else model_id, created, "changed")
            if failed:
                row.update(status="failed", error="damaged or truncated image (synthetic)", width=None, height=None,
                           sha256=None, taken_at=None)
            else:
                for face in template.faces:
                    face_rows.append((next_face, next_image, model_id, *(face[c] for c in FACE_COLUMNS)))
                    next_face += 1
            image_rows.append(row)
            next_image += 1
        if other is not None and kind != "missing" and rng.random() < history.other_model:
            other_rows.append((path, template))
    for path, template in other_rows:
        image_rows.append(_image_row(next_image, other_job, path, template, other[1], created, "new"))
        for face in template.faces:
            face_rows.append((next_face, next_image, other[1], *(face[c] for c in FACE_COLUMNS)))
            next_face += 1
        next_image += 1
    writer.write(image_rows, face_rows)
    writer.flush()
    with engine.begin() as connection:
        for start in range(0, len(missing), 500):
            # The image ids of the base jobs are 1..images in archive order.
            ids = [index + 1 for index in missing[start : start + 500]]
            connection.execute(Image.__table__.update().where(Image.id.in_(ids)).values(missing_at=created))
        connection.execute(Job.__table__.update().where(Job.id == job_id).values(images_missing=len(missing)))
    _finish_job(engine, job_id, created)
    if other_job is None:
        return [job_id]
    _finish_job(engine, other_job, created + dt.timedelta(hours=2))
    return [job_id, other_job]


def _image_row(image_id: int, job_id: int, path: str, template: Template, model_id: int | None,
               created: dt.datetime, change: str) -> dict[str, Any]:
    return {"id": image_id, "job_id": job_id, "path": path, "size": template.size, "mtime": template.mtime,
            "sha256": template.sha256, "width": template.width, "height": template.height, "status": "done",
            "error": None, "processed_at": created, "duration_ms": 4.0, "model_id": model_id, "change": change,
            "linked_from_id": None, "missing_at": None, "taken_at": template.taken_at}


def _model_row(engine: Engine, model: ModelIdentity) -> int:
    from db.writes import ensure_model

    return ensure_model(engine, model)


def _next_id(engine: Engine, column) -> int:
    with engine.connect() as connection:
        return (connection.scalar(select(func.max(column))) or 0) + 1


def _job_row(engine: Engine, roots: list[str], model: ModelIdentity, created: dt.datetime) -> int:
    options = {"model": model.name, "model_name": model.name, "model_version": model.version, "detector": DEFAULT_DETECTOR,
               "min_face": 48, "chunk_size": 32, "incremental": True, "allowed_roots": roots}
    with engine.begin() as connection:
        return connection.execute(insert(Job).values(created_at=created, status="running", roots=roots,
                                                     options=options).returning(Job.id)).scalar_one()


def _finish_job(engine: Engine, job_id: int, created: dt.datetime) -> None:
    from db.writes import finish_job_if_complete

    finish_job_if_complete(engine, job_id)
    with engine.begin() as connection:
        connection.execute(Job.__table__.update().where(Job.id == job_id).values(finished_at=created + dt.timedelta(hours=1)))


class _InsertWriter:
    """SQLite: core inserts, executemany, one transaction per batch."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def write(self, image_rows: list[dict[str, Any]], face_rows: list[tuple]) -> None:
        if not image_rows:
            return
        with self.engine.begin() as connection:
            connection.execute(insert(Image), image_rows)
            if face_rows:
                connection.execute(insert(Face), [dict(zip(FACE_TABLE_COLUMNS, row)) for row in face_rows])

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class _CopyWriter:
    """PostgreSQL: COPY into the project's tables, then the id sequences moved past the ids given."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def write(self, image_rows: list[dict[str, Any]], face_rows: list[tuple]) -> None:
        if not image_rows:
            return
        raw = self.engine.raw_connection()
        try:
            cursor = raw.driver_connection.cursor()
            with cursor.copy(f"COPY images ({', '.join(IMAGE_COLUMNS)}) FROM STDIN") as copy:
                for row in image_rows:
                    copy.write_row(tuple(row[c] for c in IMAGE_COLUMNS))
            if face_rows:
                with cursor.copy(f"COPY faces ({', '.join(FACE_TABLE_COLUMNS)}) FROM STDIN") as copy:
                    for row in face_rows:
                        copy.write_row(row)
            raw.driver_connection.commit()
        finally:
            raw.close()
        self.flush()

    def flush(self) -> None:
        with self.engine.begin() as connection:
            for table in ("images", "faces"):
                connection.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                        f"(SELECT COALESCE(MAX(id), 1) FROM {table}))"))

    def close(self) -> None:
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("VACUUM ANALYZE images"))
            connection.execute(text("VACUUM ANALYZE faces"))
            connection.execute(text("VACUUM ANALYZE jobs"))


def iter_paths(root: str, templates: Sequence[Template], images: int) -> Iterator[str]:
    """The paths of the archive's images, in id order."""
    for index in range(images):
        yield f"{folder_of(root, index // len(templates))}/{templates[index % len(templates)].name}"
