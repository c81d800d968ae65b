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
    """Like upgraded_engine, for commands that only read: a SQLite file that does not exist is an error, not created."""
    from db.session import DatabaseError, database_url, parse_database_url, sqlite_path

    try:
        path = sqlite_path(parse_database_url(database_url(url)))
    except DatabaseError as error:
        fail(str(error))
    if path is not None and not path.is_file():
        fail(f"no database at {path.resolve()}: annotate something first (`fer annotate PATH`) or give --db")
    return upgraded_engine(url)


@db.command()
@click.option("--db", "url", help=DB_HELP)
def upgrade(url: str | None) -> None:
    """Bring the database schema up to date (safe to run at any time)."""
    from db.session import current_revision

    engine = upgraded_engine(url)
    console.print(f"Database {engine.url.render_as_string(hide_password=True)} is at revision {current_revision(engine)}")
