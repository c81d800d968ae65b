"""What a report covers: one job, the runs since a date, or the whole archive, each seen through one model
version (the labels of two models are never added up).

A Scope is three SQL conditions that every report query (summaries, breakdowns, the HTML
report, exports) applies in the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, Engine, and_, select, true
from sqlalchemy.orm import aliased

from db.models import Face, Image, Model


@dataclass(frozen=True)
class Scope:
    done: ColumnElement[bool]  # the annotated images it counts (on images)
    faces: ColumnElement[bool]  # which of their faces it counts (on faces joined to images)
    failed: ColumnElement[bool]  # the failed images it lists (on images)


def job_scope(job_id: int) -> Scope:
    return Scope(
        done=and_(Image.job_id == job_id, Image.status == "done"),
        faces=true(),
        failed=and_(Image.job_id == job_id, Image.status == "failed"),
    )


def runs_scope(job_ids: Sequence[int], model_id: int | None) -> Scope:
    """The images the runs ``job_ids`` annotated with ``model_id``, and the ones they failed on."""
    ids = list(job_ids)
    return Scope(
        done=and_(Image.job_id.in_(ids), Image.status == "done", Image.model_id == model_id),
        faces=Face.model_id == model_id,
        failed=and_(Image.job_id.in_(ids), Image.status == "failed"),
    )


def current_annotation() -> ColumnElement[bool]:
    """True for the rows the whole-archive view counts: each file's newest done row per model version, while
    the file is there (as latest_annotations). "No newer done row" is one seek per image on SQLite
    (the path index) and a hash anti-join on PostgreSQL; neither sorts the archive."""
    newer = aliased(Image)
    superseded = (
        select(newer.id)
        .where(newer.path == Image.path, newer.model_id == Image.model_id, newer.status == "done", newer.id > Image.id)
        .exists()
    )
    return (Image.status == "done") & Image.model_id.is_not(None) & Image.missing_at.is_(None) & ~superseded


def latest_attempt_failed() -> ColumnElement[bool]:
    """True for the rows of the files whose latest attempt failed and that are still there (not missing):
    a failed row with no newer done or failed row of the same path."""
    newer = aliased(Image)
    superseded = (
        select(newer.id)
        .where(newer.path == Image.path, newer.status.in_(("done", "failed")), newer.id > Image.id)
        .exists()
    )
    return (Image.status == "failed") & Image.missing_at.is_(None) & ~superseded


def archive_scope(model_id: int | None) -> Scope:
    """Each file's latest annotation by ``model_id`` (files since gone left out), and the files whose latest
    attempt failed."""
    return Scope(
        done=and_(current_annotation(), Image.model_id == model_id),
        faces=Face.model_id == model_id,
        failed=latest_attempt_failed(),
    )


@dataclass(frozen=True)
class ModelChoice:
    """The model version a report shows, and why that one."""

    id: int | None
    name: str
    version: str | None
    note: str | None = None  # set when it is not the one asked for


class UnknownModel(Exception):
    """``--model`` names no model version that annotated anything in this database."""


def used_models(engine: Engine) -> list[tuple[int, str, str]]:
    """(id, name, version) of every model version recorded here, in the order they were first used."""
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(select(Model.id, Model.name, Model.version).order_by(Model.id))]


def choose_model(engine: Engine, wanted: str | None, identity: tuple[str, str] | None) -> ModelChoice:
    """The model version to show: ``wanted`` (a name, ``name@version`` or a version prefix), else the model
    ``identity`` (name, version: the default model's) when it annotated something here, else the latest used.

    A name with several versions here means the version ``identity`` names when it is among them, else the
    last one recorded. Raises UnknownModel when ``wanted`` matches nothing.
    """
    models = used_models(engine)
    if wanted:
        name, _, version = wanted.partition("@")
        matches = [m for m in models if (m[1] == name and m[2].startswith(version))
                   or (not version and m[2].startswith(name) and len(name) >= 6)]
        if not matches:
            listed = ", ".join(f"{n}@{v}" for _, n, v in models) or "none yet"
            raise UnknownModel(f"no model {wanted!r} has annotated anything in this database; recorded: {listed}")
        chosen = next((m for m in matches if identity and (m[1], m[2]) == identity), matches[-1])
        return ModelChoice(*chosen)
    if identity is not None:
        found = next((m for m in models if (m[1], m[2]) == identity), None)
        if found is not None:
            return ModelChoice(*found)
    if not models:
        return ModelChoice(None, identity[0] if identity else "default", identity[1] if identity else None)
    with engine.connect() as connection:
        last_used = connection.scalar(
            select(Image.model_id).where(Image.status == "done").order_by(Image.id.desc()).limit(1))
    latest = next((m for m in models if m[0] == last_used), models[-1])
    note = (f"the default model {identity[0]} {identity[1]} has annotated nothing here; showing {latest[1]} "
            f"{latest[2]}, the latest used" if identity else None)
    return ModelChoice(*latest, note=note)
