"""`fer db ...`: create and migrate the results database."""

from __future__ import annotations

import click

from cli.library import DB_HELP, archive_of
from cli.output import console


@click.group()
def db() -> None:
    """Create and migrate the results database."""


@db.command()
@click.option("--db", "url", help=DB_HELP)
def upgrade(url: str | None) -> None:
    """Bring the database schema up to date (safe to run at any time)."""
    with archive_of(url) as archive:
        revision = archive.upgrade()
    console.print(f"Database {archive.shown_url} is at revision {revision}")
