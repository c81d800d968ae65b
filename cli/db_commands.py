"""`fer db ...`: create and migrate the results database."""

from __future__ import annotations

import click

from cli.output import console, fail

DB_HELP = ("Database URL, e.g. sqlite:////srv/fer/fer.db or postgresql+psycopg://user@dbhost/fer "
           "(default: $FER_DATABASE_URL, else a SQLite file in the user's data directory).")


@click.group()
def db() -> None:
    """Create and migrate the results database."""


def upgraded_engine(url: str | None):
    """An engine on an up-to-date schema; on failure, one clear line and exit 1."""
    from sqlalchemy.exc import SQLAlchemyError

    from db.session import DatabaseError, make_engine
    from db.session import upgrade as run_upgrade

    try:
        engine = make_engine(url)
    except DatabaseError as error:
        fail(str(error))
    try:
        run_upgrade(engine)
    except (SQLAlchemyError, OSError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        fail(
            f"database {engine.url.render_as_string(hide_password=True)} is unreachable or cannot upgrade: "
            f"{type(error).__name__}: {first_line}"
        )
    return engine


def existing_engine(url: str | None):
    """Like upgraded_engine, for commands that only read: a database must exist and hold the fer-pipeline schema.

    A missing SQLite file, or any database without the schema (a mistyped URL), is an error and is left
    as it was: nothing is created there. An older fer-pipeline schema is brought up to date.
    """
    check_fer_database(url)
    return upgraded_engine(url)


def check_fer_database(url: str | None) -> None:
    """Stop with one line unless the database exists and holds a fer-pipeline schema; writes nothing."""
    import sqlite3

    from sqlalchemy.exc import SQLAlchemyError

    from db.session import DatabaseError, database_url, known_revision, parse_database_url, sqlite_path, stored_revision

    try:
        resolved = parse_database_url(database_url(url))
    except DatabaseError as error:
        fail(str(error))
    shown = resolved.render_as_string(hide_password=True)
    path = sqlite_path(resolved)
    if path is not None and not path.is_file():
        fail(f"no database at {path.resolve()}: annotate something first (`fer annotate PATH`) or give --db")
    try:
        revision = stored_revision(resolved)
    except sqlite3.DatabaseError as error:
        if "not a database" not in str(error):
            fail(f"cannot read the database {shown}: {error}")
        revision = None
    except (SQLAlchemyError, OSError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        fail(f"database {shown} is unreachable: {type(error).__name__}: {first_line}")
    if revision is None:
        fail(f"not a fer-pipeline database: {shown} has no fer-pipeline schema (nothing was changed); "
             "run `fer db upgrade` to create one there")
    if not known_revision(revision):
        fail(f"not a fer-pipeline database this version knows: {shown} is at schema revision {revision!r} "
             "(nothing was changed); is it another program's, or from a newer fer-pipeline?")


@db.command()
@click.option("--db", "url", help=DB_HELP)
def upgrade(url: str | None) -> None:
    """Bring the database schema up to date (safe to run at any time)."""
    from db.session import current_revision

    engine = upgraded_engine(url)
    console.print(f"Database {engine.url.render_as_string(hide_password=True)} is at revision {current_revision(engine)}")
