"""`fer query` on real SQLite and PostgreSQL: rows in three formats, and read-only for real.

Writes are refused by the database itself (not only by the keyword check): the tests send
statements that start with SELECT or WITH and write anyway, and call the database layer
without the keyword check, then compare the whole database before and after.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from cli.main import fer
from db import query as query_module
from db.models import Face, Image, Job, Model
from db.query import QueryRefused, run_read_only_query
from db.session import make_engine, upgrade

AWKWARD_PATH = "/photos/[bold]x[/bold] 'quoted' & <b>.jpg"


@pytest.fixture
def database_url(database_url):
    """conftest's empty SQLite and PostgreSQL databases, with a little data."""
    _populate(database_url)
    return database_url


def _populate(url: str) -> None:
    """The schema, one job with a done image (two faces, an awkward path) and a failed one."""
    engine = make_engine(url)
    upgrade(engine)
    with Session(engine) as session:
        job = Job(roots=["/photos"], options={"model": "seed"}, status="finished", images_total=2, images_done=1,
                  images_failed=1, faces_found=2)
        model = Model(name="seed", version="abc123", file_sha256="0" * 64, metrics={"val": {"accuracy": 0.64}})
        image = Image(job=job, path=AWKWARD_PATH, status="done", width=640, height=480, mtime=1_600_000_000.0)
        failed = Image(job=job, path="/photos/notes.jpg", status="failed", error="not an image")
        probabilities = dict(p_angry=0.1, p_disgust=0.0, p_fear=0.1, p_happy=0.6, p_neutral=0.1, p_sad=0.05, p_surprise=0.05)
        faces = [Face(image=image, model=model, face_index=index, x=10 * index, y=5, w=40, h=40, detector_score=None,
                      label="happy", confidence=0.6, **probabilities) for index in range(2)]
        session.add_all([job, model, image, failed, *faces])
        session.commit()
    engine.dispose()


def _snapshot(url: str) -> dict:
    """Every table's rows and the schema, to prove a refused statement changed nothing."""
    engine = make_engine(url)
    inspector = inspect(engine)
    names = sorted(inspector.get_table_names())
    with engine.connect() as connection:
        state = {name: sorted(map(repr, connection.execute(text(f'SELECT * FROM "{name}"')).all())) for name in names}
        state["views"] = sorted(inspector.get_view_names())
        if engine.dialect.name == "sqlite":
            state["user_version"] = connection.execute(text("PRAGMA user_version")).scalar()
    engine.dispose()
    return state


def _run(*arguments: str):
    return CliRunner().invoke(fer, ["query", *arguments])


def test_table_csv_and_json_give_the_same_rows(database_url):
    sql = "SELECT path, face_index, label, confidence, x FROM face_annotations ORDER BY face_index"
    as_json = _run(sql, "--format", "json", "--db", database_url)
    assert as_json.exit_code == 0, as_json.output
    records = json.loads(as_json.output)
    assert records == [
        {"path": AWKWARD_PATH, "face_index": 0, "label": "happy", "confidence": 0.6, "x": 0},
        {"path": AWKWARD_PATH, "face_index": 1, "label": "happy", "confidence": 0.6, "x": 10},
    ]
    as_csv = _run(sql, "--format", "csv", "--db", database_url)
    assert as_csv.exit_code == 0, as_csv.output
    rows = list(csv.reader(io.StringIO(as_csv.output)))
    assert rows[0] == ["path", "face_index", "label", "confidence", "x"]
    assert rows[1:] == [[AWKWARD_PATH, "0", "happy", "0.6", "0"], [AWKWARD_PATH, "1", "happy", "0.6", "10"]]
    as_table = _run("SELECT path, face_index FROM face_annotations ORDER BY face_index", "--db", database_url)
    assert as_table.exit_code == 0, as_table.output
    # rich markup in the data is printed literally, not interpreted
    assert "[bold]x[/bold]" in as_table.output and "2 rows" in as_table.output


def test_json_values_of_every_type(database_url):
    sql = "SELECT created_at, roots, finished_at, images_total FROM jobs"
    result = _run(sql, "--format", "json", "--db", database_url)
    assert result.exit_code == 0, result.output
    [record] = json.loads(result.output)
    assert record["created_at"].startswith("20") and record["finished_at"] is None and record["images_total"] == 2
    # JSON columns: parsed by PostgreSQL's driver, JSON text on SQLite
    assert record["roots"] in (["/photos"], '["/photos"]')


def test_empty_result_prints_the_columns(database_url):
    result = _run("SELECT path, error FROM images WHERE status = 'nothing'", "--format", "csv", "--db", database_url)
    assert result.exit_code == 0 and result.output.strip() == "path,error"
    result = _run("SELECT path FROM images WHERE status = 'nothing'", "--format", "json", "--db", database_url)
    assert result.exit_code == 0 and json.loads(result.output) == []


WRITES = [
    "DELETE FROM faces",
    "UPDATE images SET status = 'pending'",
    "INSERT INTO models (name, version, file_sha256, metrics) VALUES ('x', 'y', 'z', '{}')",
    "DROP TABLE faces",
    "CREATE TABLE extra (a INTEGER)",
    "  -- a comment first\n delete from faces",
    # These start like reads: only the database can refuse them.
    "WITH doomed AS (SELECT 1) DELETE FROM faces",
    "SELECT 1; DELETE FROM faces",
    "SELECT 1;DROP TABLE faces;",
]


@pytest.mark.parametrize("sql", WRITES)
def test_writes_are_refused_and_change_nothing(database_url, sql):
    before = _snapshot(database_url)
    result = _run(sql, "--db", database_url)
    assert result.exit_code == 1, result.output
    assert "refused" in result.output and "Traceback" not in result.output
    assert _snapshot(database_url) == before


@pytest.mark.parametrize("sql", [
    "DELETE FROM faces",
    "UPDATE images SET status = 'pending'",
    "CREATE TABLE extra (a INTEGER)",
])
def test_the_database_itself_refuses_writes(database_url, sql):
    """Below the keyword check: the read-only connection refuses the write."""
    before = _snapshot(database_url)
    url = make_url(database_url)
    run = query_module._run_on_sqlite if url.get_backend_name() == "sqlite" else query_module._run_on_postgresql
    with pytest.raises(QueryRefused, match="read-only"):
        run(sql, url)
    assert _snapshot(database_url) == before


def test_sqlite_pragmas_that_write_and_attach_are_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 'fer.db'}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    before = _snapshot(url)
    attached = tmp_path / "attached.db"
    for sql in ("PRAGMA user_version = 7", "PRAGMA query_only = OFF", "PRAGMA journal_mode = DELETE"):
        with pytest.raises(QueryRefused):
            run_read_only_query(sql, url)
    with pytest.raises(QueryRefused):  # a read-only main database would still let ATTACH create a file
        query_module._run_on_sqlite(f"ATTACH DATABASE '{attached}' AS other", make_url(url))
    assert not attached.exists()
    assert _snapshot(url) == before
    # Introspection still works.
    columns = run_read_only_query("PRAGMA table_info(faces)", url)
    assert "p_happy" in [row[1] for row in columns.rows]


def test_postgresql_statements_that_write_from_a_read_are_refused(postgres_url):
    database_url = postgres_url
    _populate(database_url)
    before = _snapshot(database_url)
    for sql in (
        "WITH gone AS (DELETE FROM faces RETURNING id) SELECT COUNT(*) FROM gone",
        "EXPLAIN ANALYZE DELETE FROM faces",
        "SELECT nextval('faces_id_seq')",
    ):
        result = _run(sql, "--db", database_url)
        assert result.exit_code == 1 and "read-only" in result.output, (sql, result.output)
    # The database's own words name the wrong statement ("cannot execute SELECT in a read-only transaction").
    result = _run("WITH gone AS (DELETE FROM faces RETURNING id) SELECT COUNT(*) FROM gone", "--db", database_url)
    assert result.output == ("Error: refused: fer query is read-only: writes are refused, and this statement would "
                             "write\n")
    assert _snapshot(database_url) == before


def test_reads_that_look_unusual_still_run(database_url):
    for sql in (
        "  -- count the faces\n  SELECT COUNT(*) AS n FROM faces;",
        "WITH f AS (SELECT * FROM faces) SELECT COUNT(*) AS n FROM f",
        "SELECT COUNT(*) AS n FROM images WHERE path LIKE '%&%'",
    ):
        result = run_read_only_query(sql, database_url)
        assert result.columns == ["n"] and result.rows[0][0] in (1, 2), sql


@pytest.mark.parametrize(("sql", "message"), [
    ("SELECT * FROM no_such_table", "no_such_table"),
    ("SELEC 1", "SELEC"),
    ("", "empty query"),
    ("   ;  ", "empty query"),
])
def test_bad_sql_is_a_clear_error(database_url, sql, message):
    result = _run(sql, "--db", database_url)
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output


def test_missing_sqlite_database_is_an_error_and_is_not_created(tmp_path):
    missing = tmp_path / "nowhere" / "fer.db"
    result = _run("SELECT 1", "--db", f"sqlite:///{missing}")
    assert result.exit_code == 1 and "no database at" in result.output
    assert not missing.exists() and not missing.parent.exists()


def test_unreachable_postgresql_is_an_error_without_the_password():
    result = _run("SELECT 1", "--db", "postgresql+psycopg://fer:s3cret@127.0.0.1:1/fer")
    assert result.exit_code == 1 and "cannot connect" in result.output
    assert "s3cret" not in result.output and "Traceback" not in result.output


def test_default_database_comes_from_the_environment(database_url, monkeypatch):
    monkeypatch.setenv("FER_DATABASE_URL", database_url)
    result = _run("SELECT COUNT(*) AS faces FROM faces", "--format", "csv")
    assert result.exit_code == 0 and result.output.splitlines() == ["faces", "2"]


def test_a_sqlite_file_being_written_elsewhere_is_not_disturbed(tmp_path):
    """WAL database with another connection open (as while a job runs): the query reads, the writer goes on."""
    url = f"sqlite:///{tmp_path / 'fer.db'}"
    engine = make_engine(url)
    upgrade(engine)
    with Session(engine) as session:
        session.add(Job(status="running"))
        session.commit()
    with engine.connect() as writer:
        writer.execute(text("UPDATE jobs SET status = 'finishing'"))  # uncommitted: not seen by the query
        assert run_read_only_query("SELECT status FROM jobs", url).rows == [("running",)]
        writer.execute(text("UPDATE jobs SET status = 'finished'"))
        writer.commit()
    assert run_read_only_query("SELECT status FROM jobs", url).rows == [("finished",)]
    engine.dispose()
    assert not Path(str(tmp_path / "fer.db") + "-journal").exists()

