"""`fer db ...`: create and migrate the results database."""

from __future__ import annotations

import click

from cli.output import console, fail

DB_HELP = "Database URL (default: $FER_DATABASE_URL, else a SQLite file in the user's data directory)."


@click.group()
def db() -> None:
    """Create and migrate the results database."""


@db.command()
@click.option("--db", "url", help=DB_HELP)
def upgrade(url: str | None) -> None:
    """Bring the database schema up to date (safe to run at any time)."""
    from sqlalchemy.exc import SQLAlchemyError

    from db.session import current_revision, make_engine
    from db.session import upgrade as run_upgrade

    engine = make_engine(url)
    try:
        run_upgrade(engine)
        revision = current_revision(engine)
    except (SQLAlchemyError, OSError) as error:
        fail(f"cannot upgrade {engine.url.render_as_string(hide_password=True)}: {error.__class__.__name__}: {_first_line(error)}")
    console.print(f"Database {engine.url.render_as_string(hide_password=True)} is at revision {revision}")


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else ""
