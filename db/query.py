"""Run one read-only SQL query against the results database, for `fer query`.

Read-only is enforced by the database, not by inspecting the SQL:

- SQLite is opened with ``mode=ro`` and ``PRAGMA query_only``, and an authorizer allows
  only reads (a read-only main database does not stop ``ATTACH`` from creating a file); the
  -wal and -shm files that reading creates are removed afterwards (``read_only_sqlite``);
- PostgreSQL runs the query in a ``READ ONLY`` transaction on a session whose
  ``default_transaction_read_only`` is on.

One statement at a time is enforced by the drivers too: Python's sqlite3 refuses a second
statement, and on PostgreSQL the query is sent as a prepared statement, which cannot hold
two. The leading-keyword check below only turns an obvious mistake (``DELETE ...``) into a
clear message before connecting.
"""

from __future__ import annotations

import difflib
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL

from db.session import (DatabaseError, known_revision, parse_database_url, read_only_sqlite,
                        revision_without_writing)

READ_KEYWORDS = ("SELECT", "WITH", "VALUES", "TABLE", "EXPLAIN", "SHOW", "PRAGMA")
# Statements SQLite or PostgreSQL know that may write or change the session: refused as writes.
WRITE_KEYWORDS = frozenset({
    "INSERT", "UPDATE", "DELETE", "REPLACE", "UPSERT", "MERGE", "CREATE", "DROP", "ALTER", "TRUNCATE", "ATTACH",
    "DETACH", "VACUUM", "REINDEX", "ANALYZE", "ANALYSE", "GRANT", "REVOKE", "COPY", "BEGIN", "START", "COMMIT",
    "END", "ROLLBACK", "SAVEPOINT", "RELEASE", "SET", "RESET", "LOCK", "CALL", "DO", "COMMENT", "CLUSTER",
    "REFRESH", "DISCARD", "LISTEN", "NOTIFY", "UNLISTEN", "PREPARE", "EXECUTE", "DEALLOCATE", "DECLARE", "FETCH",
    "MOVE", "CLOSE", "CHECKPOINT", "LOAD", "SECURITY", "REASSIGN", "IMPORT", "ABORT",
})

# PRAGMAs that take an argument yet only read (schema introspection); any other PRAGMA may only be read.
INTROSPECTION_PRAGMAS = frozenset(
    {"table_info", "table_xinfo", "table_list", "index_list", "index_info", "index_xinfo", "foreign_key_list"}
)
SQLITE_READ_ACTIONS = frozenset({sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE})

# The database's own words name whatever statement it stopped at (PostgreSQL says "cannot execute SELECT in a
# read-only transaction" for a WITH ... DELETE), so the refusal says what happened instead.
WRITES_REFUSED = "fer query is read-only: writes are refused, and this statement would write"

_LEADING_NOISE = re.compile(r"(\s|--[^\n]*(\n|$)|/\*.*?\*/|\()*", re.DOTALL)
_FIRST_WORD = re.compile(r"[A-Za-z_]+")


class QueryError(Exception):
    """The query could not run: no database, a connection failure, an SQL error. The message says which."""


class QueryRefused(QueryError):
    """The query would write, or holds more than one statement."""


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]


def run_read_only_query(sql: str, url: str) -> QueryResult:
    """Run ``sql`` (one statement) read-only against the database at ``url``."""
    _check_leading_keyword(sql)
    try:
        resolved = parse_database_url(url)
    except DatabaseError as error:
        raise QueryError(str(error)) from None
    backend = resolved.get_backend_name()
    if backend == "sqlite":
        return _run_on_sqlite(sql, resolved)
    if backend == "postgresql":
        return _run_on_postgresql(sql, resolved)
    raise QueryError(f"fer query supports SQLite and PostgreSQL databases, not {backend}")


def _check_leading_keyword(sql: str) -> None:
    body = sql[_LEADING_NOISE.match(sql).end():]
    if not body.strip().strip(";").strip():
        raise QueryError("empty query")
    first = _FIRST_WORD.match(body)
    keyword = first.group(0).upper() if first else body.split(None, 1)[0]
    if keyword not in READ_KEYWORDS and keyword not in WRITE_KEYWORDS:
        close = difflib.get_close_matches(keyword, READ_KEYWORDS, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise QueryError(f"not valid SQL: a statement cannot start with {keyword}{hint}")
    if keyword not in READ_KEYWORDS:
        raise QueryRefused(
            f"fer query is read-only: it runs {', '.join(READ_KEYWORDS)} statements; this one starts with {keyword}"
        )


def _masked(url: URL) -> str:
    return url.render_as_string(hide_password=True)


def _check_schema(url: URL) -> None:
    """Refuse a database without the fer-pipeline schema (a mistyped URL), before running anything there."""
    try:
        revision = revision_without_writing(url)
    except sqlite3.DatabaseError as error:
        if "not a database" not in str(error):
            raise QueryError(f"cannot read {_masked(url)}: {error}") from None
        revision = None
    except Exception as error:  # noqa: BLE001 - SQLAlchemy and driver errors for an unreachable server
        raise QueryError(f"cannot connect to {_masked(url)}: {_first_line(error)}") from None
    if revision is None or not known_revision(revision):
        raise QueryError(f"not a fer-pipeline database: {_masked(url)} has no fer-pipeline schema (nothing was "
                         "changed); run `fer db upgrade` to create one there")


def _run_on_sqlite(sql: str, url: URL) -> QueryResult:
    if not url.database or url.database == ":memory:":
        raise QueryError("fer query needs a SQLite database file, not an in-memory database")
    path = Path(url.database).expanduser().resolve()
    if not path.is_file():
        raise QueryError(f"no database at {path}: annotate something first (`fer annotate PATH`) or give --db")
    _check_schema(url)
    try:
        with read_only_sqlite(path) as connection:
            return _query_sqlite(connection, sql)
    except sqlite3.Error as error:
        raise QueryError(f"cannot open {path}: {error}") from None


def _query_sqlite(connection: sqlite3.Connection, sql: str) -> QueryResult:
    try:
        connection.execute("PRAGMA query_only = ON")
        connection.set_authorizer(_sqlite_authorizer)
        cursor = connection.execute(sql)
        columns = [column[0] for column in cursor.description or ()]
        return QueryResult(columns, [tuple(row) for row in cursor.fetchall()])
    except sqlite3.ProgrammingError as error:
        if "one statement at a time" in str(error):
            raise QueryRefused("fer query runs one statement at a time") from None
        raise QueryError(str(error)) from None
    except ValueError as error:  # e.g. a NUL character in the SQL
        raise QueryError(str(error)) from None
    except sqlite3.Error as error:
        message = str(error)
        if "not authorized" in message or "readonly" in message:
            raise QueryRefused(WRITES_REFUSED) from None
        raise QueryError(message) from None


def _sqlite_authorizer(action: int, first: str | None, second: str | None, _database: str | None, _trigger: str | None) -> int:
    if action in SQLITE_READ_ACTIONS:
        return sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_PRAGMA and (second is None or (first or "").lower() in INTROSPECTION_PRAGMAS):
        return sqlite3.SQLITE_OK
    return sqlite3.SQLITE_DENY


def _run_on_postgresql(sql: str, url: URL) -> QueryResult:
    import psycopg

    _check_schema(url)
    conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        connection = psycopg.connect(conninfo, options="-c default_transaction_read_only=on", connect_timeout=15)
    except psycopg.Error as error:
        raise QueryError(f"cannot connect to {_masked(url)}: {_first_line(error)}") from None
    try:
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION READ ONLY")
            # A prepared statement holds exactly one command: the server refuses "SELECT 1; DELETE ...".
            cursor.execute(sql, prepare=True)
            columns = [column.name for column in cursor.description or ()]
            rows = [tuple(row) for row in cursor.fetchall()] if cursor.description else []
        return QueryResult(columns, rows)
    except psycopg.errors.ReadOnlySqlTransaction:
        raise QueryRefused(WRITES_REFUSED) from None
    except ValueError as error:
        raise QueryError(str(error)) from None
    except psycopg.Error as error:
        message = _first_line(error)
        if "multiple commands" in message:
            raise QueryRefused("fer query runs one statement at a time") from None
        raise QueryError(message) from None
    finally:
        connection.close()  # closing rolls the read-only transaction back


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
