"""Reading jobs and annotation results back: work lists, job options, summaries and reports."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, Engine, Row, bindparam, case, func, select, text, union_all

from db.models import ENDED_STATUSES, DatabaseIdentity, Face, Image, Job, Model, as_utc
from db.scopes import ModelChoice, Scope, archive_scope, choose_model, current_annotation, job_scope, runs_scope
from db.session import connected
from fer_model.classes import CLASSES


def image_ids(engine: Engine, job_id: int, status: str | None = "pending") -> list[int]:
    query = select(Image.id).where(Image.job_id == job_id).order_by(Image.id)
    if status:
        query = query.where(Image.status == status)
    with engine.connect() as connection:
        return list(connection.scalars(query))


def pending_paths(bind: Engine | Connection, job_id: int, ids: Sequence[int]) -> list[tuple[int, str]]:
    """The (id, path) of those images of the chunk that still need work; done ones, and those of a job that
    failed or was cancelled, are skipped."""
    query = (
        select(Image.id, Image.path)
        .join(Job, Job.id == Image.job_id)
        .where(Image.job_id == job_id, Image.id.in_(list(ids)), Image.status == "pending")
        .where(Job.status.not_in(ENDED_STATUSES))
        .order_by(Image.id)
    )
    with connected(bind) as connection:
        return [(row.id, row.path) for row in connection.execute(query)]


# Content hashes looked up by one statement.
CONTENT_BATCH = 64


@lru_cache(maxsize=CONTENT_BATCH)
def _newest_of_contents(count: int):
    """One statement for ``count`` hashes (bound as d0, d1, ...): for each, its newest done image by the model
    outside the excluded ids, one seek at the end of its range of ix_images_sha256_model whatever the archive
    holds. Built once per count; each lookup only binds values."""
    branches = [
        select(Image.id, Image.sha256, Image.width, Image.height, Image.taken_at)
        .where(Image.sha256 == bindparam(f"d{index}"), Image.model_id == bindparam("model_id"),
               Image.status == "done", Image.id.not_in(bindparam("excluded", expanding=True)))
        .order_by(Image.id.desc())
        .limit(1)
        .subquery(f"c{index}")
        for index in range(count)
    ]
    return union_all(*(select(branch) for branch in branches))


# PostgreSQL plans such a union for longer than it runs it (12 ms against 1 ms for 32 hashes): there the hashes
# go in as one array, each looked up by the same seek in a LATERAL subquery.
_NEWEST_OF_CONTENTS_POSTGRESQL = text("""
SELECT newest.id, newest.sha256, newest.width, newest.height, newest.taken_at
FROM unnest(CAST(:digests AS text[])) AS wanted(sha256)
CROSS JOIN LATERAL (
    SELECT images.id, images.sha256, images.width, images.height, images.taken_at FROM images
    WHERE images.sha256 = wanted.sha256 AND images.model_id = :model_id AND images.status = 'done'
      AND images.id <> ALL(CAST(:excluded AS integer[]))
    ORDER BY images.id DESC LIMIT 1) AS newest
""")


_FACES_OF = (
    select(Face.__table__)
    .where(Face.image_id.in_(bindparam("image_ids", expanding=True)), Face.model_id == bindparam("model_id"))
    .order_by(Face.image_id, Face.face_index)
)


def annotated_content(bind: Engine | Connection, model_id: int, digests: Sequence[str],
                      exclude_ids: Sequence[int]) -> dict[str, dict[str, Any]]:
    """For each content hash this model has annotated before: that image's id, width, height, photo date and
    faces (rows).

    The latest successful annotation wins; images in ``exclude_ids`` (the chunk itself) don't count.
    The hashes are looked up in batches of CONTENT_BATCH, one index seek each, then the faces of all the
    images found in one statement.
    """
    wanted = sorted(set(digests))
    if not wanted:
        return {}
    excluded = list(exclude_ids) or [0]  # ids start at 1
    sources: dict[str, dict[str, Any]] = {}
    with connected(bind) as connection:
        for start in range(0, len(wanted), CONTENT_BATCH):
            batch = wanted[start : start + CONTENT_BATCH]
            if connection.dialect.name == "postgresql":
                found = connection.execute(_NEWEST_OF_CONTENTS_POSTGRESQL,
                                           {"digests": batch, "model_id": model_id, "excluded": excluded})
            else:
                values = {f"d{index}": digest for index, digest in enumerate(batch)}
                found = connection.execute(_newest_of_contents(len(batch)),
                                           {**values, "model_id": model_id, "excluded": excluded})
            for row in found:
                sources[row.sha256] = {"image_id": row.id, "width": row.width, "height": row.height,
                                       "taken_at": row.taken_at, "faces": []}
        by_image = {source["image_id"]: source for source in sources.values()}
        if by_image:
            for row in connection.execute(_FACES_OF, {"image_ids": list(by_image), "model_id": model_id}).mappings():
                by_image[row["image_id"]]["faces"].append(dict(row))
    return sources


def status_counts(connection: Connection, job_ids: Sequence[int]) -> dict[str, int]:
    query = select(Image.status, func.count()).where(Image.job_id.in_(list(job_ids))).group_by(Image.status)
    return dict(connection.execute(query).all())


def _image_counts(statuses: dict[str, int]) -> dict[str, int]:
    return {
        "total": sum(statuses.values()),
        "done": statuses.get("done", 0),
        "failed": statuses.get("failed", 0),
        "pending": statuses.get("pending", 0),
    }


def database_identity(engine: Engine) -> str | None:
    """This database's identity (created by the migrations), or None on a database without one."""
    with engine.connect() as connection:
        return connection.scalar(select(DatabaseIdentity.id).order_by(DatabaseIdentity.created_at).limit(1))


def stored_job_options(engine: Engine, job_id: int) -> dict[str, Any] | None:
    """The options a job was submitted with (model, detector, allowed roots, chunk size), or None: no such job."""
    with engine.connect() as connection:
        row = connection.execute(select(Job.options).where(Job.id == job_id)).first()
    return None if row is None else dict(row.options)


def latest_job_id(engine: Engine) -> int | None:
    with engine.connect() as connection:
        return connection.scalar(select(func.max(Job.id)))


def job_summary(engine: Engine, job_id: int) -> dict[str, Any] | None:
    """The report of one job: counts by status, faces by emotion, the model(s) used."""
    with engine.connect() as connection:
        job = connection.execute(select(Job).where(Job.id == job_id)).first()
        if job is None:
            return None
        statuses = status_counts(connection, [job_id])
        emotions = dict(
            connection.execute(
                select(Face.label, func.count()).join(Image).where(Image.job_id == job_id).group_by(Face.label)
            ).all()
        )
        with_faces = connection.scalar(
            select(func.count(func.distinct(Face.image_id))).join(Image).where(Image.job_id == job_id)
        ) or 0
        models = connection.execute(
            select(Model.name, Model.version).where(
                Model.id.in_(select(Image.model_id).where(Image.job_id == job_id).distinct())
            )
        ).all()
        changes = _changes(connection, [job_id], job.images_unchanged, job.images_missing, job.images_unchanged_failed)
        failed = _failed_files(connection, job_scope(job_id))
    done = statuses.get("done", 0)
    model = {"name": models[0].name, "version": models[0].version} if len(models) == 1 else None
    return {
        "job": job.id,
        "status": job.status,
        "created_at": job.created_at.isoformat() if job.created_at else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "roots": job.roots,
        "images": _image_counts(statuses),
        "faces": sum(emotions.values()),
        "emotions": {name: int(emotions.get(name, 0)) for name in CLASSES},
        "images_with_faces": int(with_faces),
        "images_without_faces": int(done - with_faces),
        "model": model or {"name": job.options.get("model_name", job.options.get("model")),
                           "version": job.options.get("model_version")},
        "models": [{"name": m.name, "version": m.version} for m in models],
        "incremental": bool(job.options.get("incremental")),
        "changes": changes,
        "error": job.error,
        "files_skipped": int(job.files_skipped or 0),
        "failed_files": failed,
        "unlisted_folders": [{"path": path, "error": reason} for path, reason in job.unlisted_folders or []],
    }


def _changes(connection: Connection, job_ids: Sequence[int], unchanged: int, missing: int,
             unchanged_failed: int = 0) -> dict[str, int]:
    """What incremental runs found: new, changed, retried and copied files annotated, unchanged skipped (some
    of them failed before), missing marked."""
    kinds = dict(connection.execute(
        select(Image.change, func.count()).where(Image.job_id.in_(list(job_ids))).group_by(Image.change)
    ).all())
    copied = connection.scalar(
        select(func.count()).where(Image.job_id.in_(list(job_ids)), Image.linked_from_id.is_not(None))
    ) or 0
    return {
        "new": int(kinds.get("new", 0)),
        "changed": int(kinds.get("changed", 0)),
        "retried": int(kinds.get("retried", 0)),
        "copied": int(copied),
        "unchanged": int(unchanged),
        "unchanged_failed": int(unchanged_failed),
        "missing": int(missing),
    }


def since_summary(engine: Engine, since: dt.datetime, model: ModelChoice | None = None) -> dict[str, Any]:
    """What every job started at or after ``since`` added: images, and faces and emotions of ``model`` (default: the
    latest recorded), with totals per model version."""
    since = as_utc(since)  # stored times are UTC, and SQLite compares them as text
    model = model or choose_model(engine, None, None)
    with engine.connect() as connection:
        jobs = connection.execute(
            select(Job.id, Job.roots, Job.images_unchanged, Job.images_missing, Job.images_unchanged_failed)
            .where(Job.created_at >= since).order_by(Job.id)
        ).all()
        ids = [job.id for job in jobs]
        statuses = status_counts(connection, ids)
        per_model = connection.execute(
            select(Model.id, Model.name, Model.version, Face.label, func.count())
            .select_from(Face).join(Image, Image.id == Face.image_id).join(Model, Model.id == Face.model_id)
            .where(Image.job_id.in_(ids))
            .group_by(Model.id, Model.name, Model.version, Face.label)
        ).all()
        images_per_model = dict(connection.execute(
            select(Image.model_id, func.count()).where(Image.job_id.in_(ids), Image.status == "done")
            .group_by(Image.model_id)
        ).all())
        scope = runs_scope(ids, model.id)
        with_faces = _images_with_faces(connection, scope)
        changes = _changes(connection, ids, sum(j.images_unchanged for j in jobs), sum(j.images_missing for j in jobs),
                           sum(j.images_unchanged_failed or 0 for j in jobs))
        failed = _failed_files(connection, scope)
    models: dict[int, dict[str, Any]] = {}
    for model_id, name, version, label, count in per_model:
        entry = models.setdefault(model_id, {"name": name, "version": version, "images": int(images_per_model.get(model_id, 0)),
                                             "faces": 0, "emotions": {c: 0 for c in CLASSES}})
        entry["faces"] += count
        entry["emotions"][label] += count
    shown = models.get(model.id, {"faces": 0, "emotions": {c: 0 for c in CLASSES}})
    done = int(images_per_model.get(model.id, 0))
    return {
        "since": since.isoformat(),
        "jobs": ids,
        "roots": sorted({root for job in jobs for root in job.roots or []}),
        "images": _image_counts(statuses),
        "model": {"name": model.name, "version": model.version},
        "model_note": model.note,
        "faces": shown["faces"],
        "emotions": dict(shown["emotions"]),
        "images_with_faces": with_faces,
        "images_without_faces": done - with_faces,
        "models": list(models.values()),
        "changes": changes,
        "failed_files": failed,
    }


def _images_with_faces(connection: Connection, scope: Scope) -> int:
    return int(connection.scalar(
        select(func.count(func.distinct(Face.image_id))).join(Image, Image.id == Face.image_id)
        .where(scope.done, scope.faces)
    ) or 0)


def failed_images(connection: Connection, scope: Scope) -> list[Row]:
    """(path, error) of the scope's failed images, by path; sorted here: sorting in SQL can make the planner sort
    every image."""
    rows = connection.execute(select(Image.path, Image.error).where(scope.failed)).all()
    return sorted(rows, key=lambda row: row.path)


def _failed_files(connection: Connection, scope: Scope) -> list[dict[str, str]]:
    return [{"path": path, "error": error or ""} for path, error in failed_images(connection, scope)]


def breakdown(engine: Engine, scope: Scope | int, by: str) -> list[dict[str, Any]]:
    """Images, faces and faces per emotion for each folder, or each day (file modification date, UTC), of a report's
    scope (an int: that job)."""
    if by not in ("folder", "day"):
        raise ValueError(f"cannot break a report down by {by!r}")
    scope = job_scope(scope) if isinstance(scope, int) else scope
    query = (
        select(Image.id, Image.path, Image.mtime, Face.label)
        .outerjoin(Face, (Face.image_id == Image.id) & scope.faces)
        .where(scope.done)
    )
    groups: dict[str, dict[str, Any]] = {}
    seen: dict[str, set[int]] = {}
    with engine.connect() as connection:
        for image_id, path, mtime, label in connection.execute(query):
            if by == "folder":
                key = path.rsplit("/", 1)[0] or "/"
            else:
                key = dt.datetime.fromtimestamp(mtime, dt.timezone.utc).date().isoformat() if mtime else "unknown"
            group = groups.setdefault(key, {by: key, "images": 0, "faces": 0, **{name: 0 for name in CLASSES}})
            if image_id not in seen.setdefault(key, set()):
                seen[key].add(image_id)
                group["images"] += 1
            if label is not None:
                group["faces"] += 1
                group[label] += 1
    return [groups[key] for key in sorted(groups)]


def archive_summary(engine: Engine, model: ModelChoice | None = None) -> dict[str, Any]:
    """The whole archive: every file's latest annotation per model version (files since gone left out), with
    images, faces and emotions of ``model`` (default: the latest recorded), totals per model version, the files
    whose latest attempt failed, and the date of the last run."""
    model = model or choose_model(engine, None, None)
    scope = archive_scope(model.id)
    # One pass: each current image with its own faces (or none), grouped by model only (a handful of groups),
    # emotions counted in columns, so nothing is sorted. An image's faces are numbered from 0, so an image is
    # counted by its row without a face or by its face 0.
    first_face = Face.face_index == 0
    counts = [
        func.sum(case((Face.id.is_(None) | first_face, 1), else_=0)),
        func.sum(case((first_face, 1), else_=0)),
        *(func.sum(case((Face.label == name, 1), else_=0)) for name in CLASSES),
    ]
    with engine.connect() as connection:
        latest = connection.execute(select(Job.id, Job.created_at).order_by(Job.id.desc()).limit(1)).first()
        per_model = {row[0]: row[1:] for row in connection.execute(
            select(Image.model_id, *counts)
            .outerjoin(Face, (Face.image_id == Image.id) & (Face.model_id == Image.model_id))
            .where(current_annotation()).group_by(Image.model_id)
        )}
        names = {row.id: row for row in connection.execute(select(Model.id, Model.name, Model.version))}
        failed = _failed_files(connection, scope)
        roots = sorted({root for (job_roots,) in connection.execute(select(Job.roots)) for root in job_roots or []})
    models: dict[int, dict[str, Any]] = {}
    for model_id, (count, with_faces, *labels) in sorted(per_model.items()):
        emotions = {name: int(value or 0) for name, value in zip(CLASSES, labels)}
        models[model_id] = {"name": names[model_id].name, "version": names[model_id].version, "images": int(count),
                            "images_with_faces": int(with_faces or 0), "faces": sum(emotions.values()),
                            "emotions": emotions}
    shown = models.get(model.id, {"images": 0, "images_with_faces": 0, "faces": 0,
                                  "emotions": {name: 0 for name in CLASSES}})
    return {
        "archive": True,
        "latest_job": latest.id if latest else None,
        "last_run": as_utc(latest.created_at).isoformat() if latest else None,
        "roots": roots,
        "model": {"name": model.name, "version": model.version},
        "model_note": model.note,
        "images": {"total": shown["images"] + len(failed), "done": shown["images"], "failed": len(failed),
                   "pending": 0},
        "faces": shown["faces"],
        "emotions": dict(shown["emotions"]),
        "images_with_faces": shown["images_with_faces"],
        "images_without_faces": shown["images"] - shown["images_with_faces"],
        "models": list(models.values()),
        "failed_files": failed,
    }


EXPORT_BATCH = 2000


@contextmanager
def export_rows(engine: Engine, job_id: int | None, failed: bool,
                archive: ModelChoice | None = None) -> Iterator[tuple[list[str], Iterable[Sequence[Any]]]]:
    """The columns and rows `fer export` writes: a job's faces (the face_annotations view), or its failed files;
    with ``archive`` (and no job), the whole archive: each file's latest faces by that model version (the
    latest_annotations view), or the files whose latest attempt failed."""
    if failed:  # a list the size of the report's failures, read at once
        scope = archive_scope(archive.id) if archive is not None else job_scope(job_id)
        with engine.connect() as connection:
            rows = failed_images(connection, scope)
        yield ["path", "error"], rows
        return
    parameters: dict[str, Any] = {"job": job_id}
    if archive is not None:
        query = text("SELECT * FROM latest_annotations WHERE model = :name AND model_version = :version "
                     "ORDER BY path, face_index")
        parameters = {"name": archive.name, "version": archive.version}
    else:
        query = text("SELECT * FROM face_annotations WHERE job_id = :job ORDER BY path, face_index")
    # Streamed: a server-side cursor on PostgreSQL (SQLite's cursor reads as it goes), so memory stays flat.
    with engine.connect().execution_options(stream_results=True, yield_per=EXPORT_BATCH) as connection:
        result = connection.execute(query, parameters)
        yield list(result.keys()), result
