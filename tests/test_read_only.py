"""Read-only commands (`status`, `report`, `export`, `query`, `schedule list`) write nothing anywhere:
pointed at a database without the fer-pipeline schema (a mistyped URL) they say so in one line, exit 1
and leave it as it was, on PostgreSQL and SQLite alike; on a SQLite results database they leave no
-wal or -shm file behind."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.orm import Session

from cli.main import fer
from db.models import Job
from db.session import make_engine, upgrade
from tests.conftest import REPO_ROOT

READ_ONLY_COMMANDS = [["status"], ["report"], ["report", "--all"], ["export", "-o", "{tmp}/faces.csv"],
                      ["query", "SELECT 1"], ["schedule", "list"]]
NOT_OURS = "not a fer-pipeline database: {url} has no fer-pipeline schema (nothing was changed); " \
           "run `fer db upgrade` to create one there"


def _schema(url: str) -> tuple[list[str], list[str]]:
    engine = create_engine(url)
    inspector = inspect(engine)
    names = sorted(inspector.get_table_names()), sorted(inspector.get_view_names())
    engine.dispose()
    return names


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _refused(command: list[str], url: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(fer, [part.format(tmp=tmp_path) for part in command] + ["--db", url])
    assert result.exit_code == 1, (command, result.output)
    assert result.output == f"Error: {NOT_OURS.format(url=url)}\n", (command, result.output)


def test_read_only_commands_leave_a_postgresql_database_without_the_schema_untouched(postgres_url, tmp_path):
    engine = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text("CREATE TABLE someone_elses (id integer)"))
    engine.dispose()
    for command in READ_ONLY_COMMANDS:
        _refused(command, postgres_url, tmp_path)
    assert _schema(postgres_url) == (["someone_elses"], [])
    assert not (tmp_path / "faces.csv").exists()


@pytest.mark.parametrize("kind", ["empty file", "another program's database"])
def test_read_only_commands_leave_a_sqlite_file_without_the_schema_untouched(kind, tmp_path):
    path = tmp_path / "other.db"
    if kind == "empty file":
        path.touch()
    else:
        connection = sqlite3.connect(path)
        connection.execute("CREATE TABLE notes (body TEXT)")
        connection.execute("PRAGMA journal_mode=WAL")
        connection.commit()
        connection.close()
    before = _digest(path)
    for command in READ_ONLY_COMMANDS:
        _refused(command, f"sqlite:///{path}", tmp_path)
    assert _digest(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.db"]


@pytest.fixture
def results_db(tmp_path) -> Path:
    """A fer-pipeline SQLite database (WAL mode) with one job, closed: no -wal or -shm file beside it."""
    path = tmp_path / "fer.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    with Session(engine) as session:
        session.add(Job(roots=["/photos"], options={"model": "default"}, status="finished"))
        session.commit()
    engine.dispose()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fer.db"]
    return path


@pytest.mark.parametrize("command", [
    ["query", "SELECT id, status FROM jobs"],
    *(pytest.param(command, marks=pytest.mark.slow)  # guards: these never left the files
      for command in (["status"], ["report"], ["export", "-o", "{tmp}/out/faces.csv"])),
])
def test_read_only_commands_leave_no_wal_or_shm_file_behind(command, results_db, tmp_path):
    (tmp_path / "out").mkdir()
    arguments = [part.format(tmp=tmp_path) for part in command] + ["--db", f"sqlite:///{results_db}"]
    completed = subprocess.run([sys.executable, "-m", "cli.main", *arguments], cwd=REPO_ROOT, capture_output=True,
                               text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert sorted(p.name for p in results_db.parent.iterdir() if p.is_file()) == ["fer.db"]


def test_query_in_process_leaves_no_wal_or_shm_file_and_keeps_a_writer_s(results_db):
    from db.query import run_read_only_query

    url = f"sqlite:///{results_db}"
    assert run_read_only_query("SELECT COUNT(*) FROM jobs", url).rows == [(1,)]
    assert sorted(p.name for p in results_db.parent.iterdir()) == ["fer.db"]
    engine = make_engine(url)
    with engine.connect() as writer:  # a run in progress holds the database open
        writer.execute(text("SELECT 1 FROM jobs")).all()
        assert run_read_only_query("SELECT COUNT(*) FROM jobs", url).rows == [(1,)]
        assert (results_db.parent / "fer.db-wal").exists()  # still the writer's
        writer.execute(text("UPDATE jobs SET status = 'running'"))
        writer.commit()
    engine.dispose()
    assert run_read_only_query("SELECT status FROM jobs", url).rows == [("running",)]
