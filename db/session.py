"""Database URLs, engines and migrations.

Every function takes its database URL explicitly; the command line chooses it (`--db`, else
`FER_DATABASE_URL`, else `default_database_url()`: a SQLite file in the user's data directory).
"""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError, ProgrammingError
from sqlalchemy.pool import NullPool

from fer_model.files import data_home

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


class DatabaseError(Exception):
    """The database URL is wrong, the database cannot be reached, or its schema is not the one this version needs."""


def default_database_url() -> str:
    return f"sqlite:///{data_home() / 'fer.db'}"


EXAMPLE_URLS = "e.g. sqlite:////srv/fer/fer.db (a file) or postgresql+psycopg://user@dbhost/fer"
SUPPORTED_BACKENDS = ("sqlite", "postgresql")


def _masked_text(text: str) -> str:
    """A URL as typed, with any password replaced (for URLs too broken to parse)."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", text)


def parse_database_url(url: str) -> URL:
    """The URL, checked: a SQLite or PostgreSQL URL whose driver is installed. DatabaseError says what is wrong."""
    text = url.strip()
    if "://" not in text:
        hint = f"sqlite:///{os.path.abspath(os.path.expanduser(text))}" if text else "sqlite:////srv/fer/fer.db"
        raise DatabaseError(f"database URL {_masked_text(text)!r} is not a URL: for a SQLite file write {hint} "
                            f"({EXAMPLE_URLS})")
    try:
        resolved = make_url(text)
    except (ArgumentError, ValueError):
        raise DatabaseError(f"database URL {_masked_text(text)!r} is not a valid URL ({EXAMPLE_URLS})") from None
    shown = resolved.render_as_string(hide_password=True)
    try:
        dialect = resolved.get_dialect()
    except NoSuchModuleError:
        raise DatabaseError(f"database URL {shown!r}: unknown kind of database {resolved.drivername!r}; "
                            f"fer-pipeline stores results in SQLite or PostgreSQL ({EXAMPLE_URLS})") from None
    if resolved.get_backend_name() not in SUPPORTED_BACKENDS:
        raise DatabaseError(f"database URL {shown!r}: {resolved.get_backend_name()} is not supported; "
                            f"fer-pipeline stores results in SQLite or PostgreSQL ({EXAMPLE_URLS})")
    if resolved.drivername == "postgresql":
        resolved = resolved.set(drivername="postgresql+psycopg")
        dialect = resolved.get_dialect()
    try:
        dialect.import_dbapi()
    except ImportError as error:
        raise DatabaseError(f"database URL {shown!r}: its driver ({error.name or error}) is not installed; "
                            f"the installed ones are sqlite and postgresql+psycopg ({EXAMPLE_URLS})") from None
    return resolved


def sqlite_path(url: URL) -> Path | None:
    """The file of a SQLite URL (None for other databases and in-memory SQLite)."""
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(url.database).expanduser()


def make_engine(url: str) -> Engine:
    """An engine on the database (not yet connected); DatabaseError when the URL is wrong."""
    resolved = parse_database_url(url)
    if resolved.get_backend_name() == "sqlite":
        if resolved.database and resolved.database != ":memory:":
            Path(resolved.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(resolved, connect_args={"timeout": 60})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(resolved, pool_pre_ping=True)


# SQLite's write-ahead log: once a write leaves it larger than this, it is checkpointed into the database and
# truncated (`checkpoint_if_large`). SQLite's own checkpoints (every 1,000 pages) copy the log into the database
# but can start it again from the beginning only at a moment when no reader is using it, which a run whose
# processes read all the time may never leave; the log then grows by every page written.
WAL_CHECKPOINT_BYTES = 32 * 2**20
# How long such a checkpoint waits for readers to finish with the log before trying again after a later write.
WAL_CHECKPOINT_WAIT_MS = 2000
BUSY_TIMEOUT_MS = 60000


@contextmanager
def connected(bind: Engine | Connection) -> Iterator[Connection]:
    """A connection for a few reads: ``bind`` itself when it is one (the caller's, for several lookups in a
    row), else one from the engine for the block."""
    if isinstance(bind, Connection):
        yield bind
    else:
        with bind.connect() as connection:
            yield connection


@cache
def engine_for(url: str) -> Engine:
    """This process's engine (connection pool) on the database at ``url``: made once, shared by the library
    and the chunk work. A forked process calls ``engine_for.cache_clear()`` first (its parent's pool is not its own)."""
    return make_engine(url)


def _sqlite_pragmas(connection, _record) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    # With WAL, NORMAL syncs at checkpoints instead of at every commit: a power cut can lose the last chunks
    # written (their images are pending again; `fer retry` redoes them), never corrupt the database.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA journal_size_limit={WAL_CHECKPOINT_BYTES}")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.close()


def checkpoint_if_large(engine: Engine) -> None:
    """After a write on SQLite: when the write-ahead log has passed WAL_CHECKPOINT_BYTES, copy it into the
    database and truncate it, waiting up to WAL_CHECKPOINT_WAIT_MS for readers of older snapshots to finish
    (if they have not, the next write tries again). Nothing on other databases."""
    path = sqlite_path(engine.url)
    if path is None:
        return
    try:
        if os.path.getsize(f"{path}-wal") < WAL_CHECKPOINT_BYTES:
            return
    except OSError:
        return
    with engine.connect() as connection:
        connection.exec_driver_sql(f"PRAGMA busy_timeout={WAL_CHECKPOINT_WAIT_MS}")
        try:
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").all()
        finally:
            connection.exec_driver_sql(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")


def alembic_config(engine: Engine) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply every migration up to `revision`.

    A database already at the newest migration is told by one query, without loading alembic and every
    migration script (about a second of CPU, paid by every command otherwise).
    """
    if revision == "head" and current_revision(engine) == newest_revision():
        return
    from alembic import command

    command.upgrade(alembic_config(engine), revision)


@cache
def newest_revision() -> str:
    """The revision of the newest migration script, read from its file: scripts are numbered NNNN_*.py and
    follow one another in that order (tests/test_db.py checks that this is alembic's head)."""
    newest = max((MIGRATIONS_DIR / "versions").glob("[0-9][0-9][0-9][0-9]_*.py"))
    found = re.search(r"^revision = ['\"]([^'\"]+)['\"]", newest.read_text(), flags=re.MULTILINE)
    return found.group(1) if found else ""


def current_revision(engine: Engine) -> str | None:
    """The revision recorded in the database (None when it has none yet), in one query, without alembic."""
    try:
        with engine.connect() as connection:
            return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except (OperationalError, ProgrammingError):
        return None  # no alembic_version table: a new database


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config(None)).get_current_head()  # type: ignore[arg-type]


def known_revision(revision: str) -> bool:
    """True when ``revision`` is one of this version's migrations."""
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    try:
        return ScriptDirectory.from_config(alembic_config(None)).get_revision(revision) is not None  # type: ignore[arg-type]
    except CommandError:
        return False


def revision_without_writing(url: URL) -> str | None:
    """The schema revision recorded in the database (None: no fer-pipeline schema), read without writing
    anything: no schema, journal mode or leftover file is created. SQLAlchemy errors say the server is unreachable."""
    path = sqlite_path(url)
    if path is not None:
        with read_only_sqlite(path) as connection:
            has_table = connection.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'").fetchone()
            return connection.execute("SELECT version_num FROM alembic_version").fetchone()[0] if has_table else None
    engine = create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": 15})
    try:
        with engine.connect() as connection:
            if not inspect(connection).has_table("alembic_version"):
                return None
            return connection.scalar(text("SELECT version_num FROM alembic_version"))
    finally:
        engine.dispose()


@contextmanager
def read_only_sqlite(path: Path, timeout: float = 60) -> Iterator[sqlite3.Connection]:
    """A read-only connection to the SQLite file at ``path`` that leaves no trace.

    Reading a database in WAL mode creates its -wal and -shm files, and a read-only connection
    cannot remove them when it closes. When they did not exist before, a plain connection is
    opened and closed afterwards: SQLite removes them when the last connection closes (a writer
    working meanwhile keeps them). Nothing in the database changes.
    """
    companions = [path.with_name(path.name + suffix) for suffix in ("-wal", "-shm")]
    existed = any(companion.exists() for companion in companions)
    connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=timeout)
    try:
        yield connection
    finally:
        connection.close()
        if not existed and any(companion.exists() for companion in companions):
            _close_last(path)


def _close_last(path: Path) -> None:
    try:
        tidy = sqlite3.connect(f"{path.resolve().as_uri()}?mode=rw", uri=True, timeout=1)
    except sqlite3.Error:
        return  # not writable here: the files stay, as with any read-only reader
    try:
        tidy.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
    except sqlite3.Error:
        pass
    finally:
        tidy.close()
