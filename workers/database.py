"""The results database as the library opens it: this process's engine on an up-to-date schema, and for calls
that only read, only where a fer-pipeline schema already exists (nothing is created elsewhere)."""

from __future__ import annotations

import sqlite3

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from db.session import (DatabaseError, engine_for, known_revision, parse_database_url, revision_without_writing,
                        sqlite_path, upgrade)
from workers.jobs.errors import PipelineError


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else ""


def upgraded_engine(url: str) -> Engine:
    """This process's engine on the database at ``url``, its schema created or migrated to this version's."""
    try:
        engine = engine_for(url)
    except DatabaseError as error:
        raise PipelineError(str(error)) from None
    try:
        upgrade(engine)
    except (SQLAlchemyError, OSError) as error:
        raise PipelineError(
            f"database {engine.url.render_as_string(hide_password=True)} is unreachable or cannot upgrade: "
            f"{type(error).__name__}: {_first_line(error)}"
        ) from None
    return engine


def check_fer_database(url: str) -> None:
    """Refuse, without writing anything there, a database that does not exist or holds no fer-pipeline schema
    this version knows (a mistyped URL)."""
    try:
        resolved = parse_database_url(url)
    except DatabaseError as error:
        raise PipelineError(str(error)) from None
    shown = resolved.render_as_string(hide_password=True)
    path = sqlite_path(resolved)
    if path is not None and not path.is_file():
        raise PipelineError(f"no database at {path.resolve()}: annotate something first (`fer annotate PATH`) or "
                            "give --db")
    try:
        revision = revision_without_writing(resolved)
    except sqlite3.DatabaseError as error:
        if "not a database" not in str(error):
            raise PipelineError(f"cannot read the database {shown}: {error}") from None
        revision = None
    except (SQLAlchemyError, OSError) as error:
        raise PipelineError(f"database {shown} is unreachable: {type(error).__name__}: {_first_line(error)}") from None
    if revision is None:
        raise PipelineError(f"not a fer-pipeline database: {shown} has no fer-pipeline schema (nothing was changed); "
                            "run `fer db upgrade` to create one there")
    if not known_revision(revision):
        raise PipelineError(f"not a fer-pipeline database this version knows: {shown} is at schema revision "
                            f"{revision!r} (nothing was changed); is it another program's, or from a newer "
                            "fer-pipeline?")

