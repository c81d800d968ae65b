"""The library as the commands use it: the Archive their options and the environment point at, and library
errors as one-line errors with their exit codes.

The command line is the one place that reads `FER_DATABASE_URL` and `FER_BROKER_URL`; below it
the settings travel as arguments.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from cli.output import EXIT_INTERRUPTED, EXIT_NOT_STARTED, fail
from workers.jobs.errors import Interrupted, NotStarted, PipelineError
from workers.queue.broker_url import DEFAULT_BROKER_URL

if TYPE_CHECKING:
    from workers.archive import Archive

DB_HELP = ("Database URL, e.g. sqlite:////srv/fer/fer.db or postgresql+psycopg://user@dbhost/fer "
           "(default: $FER_DATABASE_URL, else a SQLite file in the user's data directory).")
BROKER_HELP = ("Celery broker URL, e.g. redis://queue-host:6379/0 (default: $FER_BROKER_URL, "
               "else redis://localhost:6379/0).")


def database_url(option: str | None) -> str:
    """--db, else $FER_DATABASE_URL, else the SQLite file in the user's data directory."""
    from db.session import default_database_url  # SQLAlchemy loads only in commands that open a database

    return option or os.environ.get("FER_DATABASE_URL") or default_database_url()


def broker_url(option: str | None) -> str:
    """--broker, else $FER_BROKER_URL, else redis://localhost:6379/0."""
    return option or os.environ.get("FER_BROKER_URL") or DEFAULT_BROKER_URL


@contextmanager
def archive_of(db_option: str | None, broker_option: str | None = None) -> Iterator[Archive]:
    """The Archive the command's --db and --broker (else the environment) point at, closed after the block; a
    library error in the block ends the command in one line."""
    from workers.archive import Archive  # the library (SQLAlchemy, the models) loads only in commands that use it

    with library_errors(), Archive(database_url(db_option), broker_url(broker_option)) as archive:
        yield archive


@contextmanager
def library_errors() -> Iterator[None]:
    """A library error ends the command with its message and exit code (75: not started, 130: interrupted)."""
    try:
        yield
    except PipelineError as error:
        code = EXIT_NOT_STARTED if isinstance(error, NotStarted) else EXIT_INTERRUPTED if isinstance(error, Interrupted) else 1
        fail(str(error), exit_code=code)
