"""docs/sql.md against real databases: every example query runs, on SQLite and on PostgreSQL, with
real annotation results, and gives what the same question asked through the ORM gives; the
documented schema is the schema."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import inspect, select
from sqlalchemy.orm import Session

from cli.main import fer
from db.models import Base, Face, Image, Job, Model
from db.query import QueryResult, run_read_only_query
from db.session import make_engine
from fer_model.classes import CLASSES
from fer_model.registry import default_model_name
from tests.archives import EMPTY_FILE, FAILED_IN_ARCHIVE, IMAGES_IN_ARCHIVE, NOT_AN_IMAGE, annotate
from tests.conftest import REPO_ROOT, fresh_postgres_database

SQL_DOC = REPO_ROOT / "docs" / "sql.md"
DIALECTS = ("sqlite", "postgresql")
DIALECT_MARKERS = {"-- SQLite": "sqlite", "-- PostgreSQL": "postgresql"}


def example_queries() -> dict[str, list[tuple[str, str]]]:
    """{heading: [(dialect or 'any', sql), ...]} for every ```sql block under '## Example queries'."""
    examples = SQL_DOC.read_text().split("## Example queries", 1)[1]
    queries: dict[str, list[tuple[str, str]]] = {}
    for section in re.split(r"^### ", examples, flags=re.MULTILINE)[1:]:
        heading = section.splitlines()[0].strip()
        for sql in re.findall(r"^```sql\n(.*?)^```", section, flags=re.MULTILINE | re.DOTALL):
            first_line = sql.splitlines()[0].strip()
            queries.setdefault(heading, []).append((DIALECT_MARKERS.get(first_line, "any"), sql))
    return queries


def documented_columns() -> dict[str, list[str]]:
    """{table or view: [column, ...]} from the tables under '## Schema'."""
    schema = SQL_DOC.read_text().split("## Schema", 1)[1].split("## Example queries", 1)[0]
    columns: dict[str, list[str]] = {}
    for section in re.split(r"^### ", schema, flags=re.MULTILINE)[1:]:
        name = re.match(r"`(\w+)`", section).group(1)
        columns[name] = re.findall(r"^\| `(\w+)` \|", section, flags=re.MULTILINE)
    return columns


# --- the databases, each holding a real annotation run over the sample archive ---------------------

@pytest.fixture(scope="module")
def postgres_annotated(sample_archive):
    with fresh_postgres_database() as url:
        annotate(sample_archive, url)
        yield url
        make_engine(url).dispose()


@pytest.fixture(params=[pytest.param(dialect, marks=pytest.mark.slow) for dialect in DIALECTS])
def database(request) -> tuple[str, str]:
    """(dialect, url) of an annotated database (both annotate the real photos)."""
    fixture = "annotated_sqlite" if request.param == "sqlite" else "postgres_annotated"
    return request.param, request.getfixturevalue(fixture)


# --- what each query must give, computed from the ORM -----------------------------------------------

class Facts:
    """The latest job's images and faces, read through the ORM."""

    def __init__(self, url: str):
        engine = make_engine(url)
        with Session(engine) as session:
            self.job_id = session.scalar(select(Job.id).order_by(Job.id.desc()).limit(1))
            self.images = session.execute(select(Image).where(Image.job_id == self.job_id)).all()
            self.faces = session.execute(
                select(Face, Image.path, Image.mtime).join(Image).where(Image.job_id == self.job_id)
            ).all()
            self.models = session.execute(select(Model)).all()
        engine.dispose()

    def faces_by_path(self) -> Counter[str]:
        return Counter(face.path for face in self.faces)


def _dicts(result: QueryResult) -> list[dict]:
    return [dict(zip(result.columns, row)) for row in result.rows]


def _number(value) -> float:
    return float(value)


def check_jobs(result: QueryResult, facts: Facts) -> None:
    assert {"id", "status", "images_total", "faces_found"} <= set(result.columns)
    rows = _dicts(result)
    assert rows[0]["id"] == facts.job_id and rows[0]["status"] == "finished"
    assert rows[0]["images_total"] == IMAGES_IN_ARCHIVE and rows[0]["images_failed"] == FAILED_IN_ARCHIVE
    assert rows[0]["faces_found"] == len(facts.faces) > 0


def check_emotion_share(result: QueryResult, facts: Facts) -> None:
    rows = _dicts(result)
    expected = Counter(face.Face.label for face in facts.faces)
    assert {row["label"]: row["faces_labelled"] for row in rows} == dict(expected)
    assert sum(_number(row["share_percent"]) for row in rows) == pytest.approx(100, abs=0.5)
    for row in rows:
        confidences = [face.Face.confidence for face in facts.faces if face.Face.label == row["label"]]
        assert _number(row["mean_confidence"]) == pytest.approx(sum(confidences) / len(confidences), abs=0.0006)


def check_whole_archive_emotions(result: QueryResult, facts: Facts) -> None:
    assert result.columns == ["model", "model_version", "label", "faces"]
    rows = _dicts(result)
    assert {row["label"]: row["faces"] for row in rows} == dict(Counter(face.Face.label for face in facts.faces))
    assert {(row["model"], row["model_version"]) for row in rows} == {(m.Model.name, m.Model.version) for m in facts.models}


def check_happiest_folders(result: QueryResult, facts: Facts) -> None:
    labels_by_folder: dict[str, list[str]] = defaultdict(list)
    for face in facts.faces:
        labels_by_folder[os.path.dirname(face.path) + "/"].append(face.Face.label)
    expected = {
        folder: (len(labels), labels.count("happy"))
        for folder, labels in labels_by_folder.items() if len(labels) >= 3
    }
    rows = _dicts(result)
    assert len(rows) >= 2, "the sample archive has several folders with three faces or more"
    assert {row["folder"]: (row["faces_in_folder"], row["happy_faces"]) for row in rows} == expected
    percents = [_number(row["happy_percent"]) for row in rows]
    assert percents == sorted(percents, reverse=True)


def check_photos_with_several_faces(result: QueryResult, facts: Facts) -> None:
    expected = {path: count for path, count in facts.faces_by_path().items() if count > 1}
    rows = _dicts(result)
    assert {row["path"]: row["faces_in_photo"] for row in rows} == expected
    assert any(path.endswith("/family/group.jpg") for path in expected)


def check_emotion_share_per_month(result: QueryResult, facts: Facts) -> None:
    expected: dict[tuple[str, str], int] = Counter(
        (dt.datetime.fromtimestamp(face.mtime, dt.timezone.utc).strftime("%Y-%m"), face.Face.label) for face in facts.faces
    )
    rows = _dicts(result)
    assert {(row["month"], row["label"]): row["faces_labelled"] for row in rows} == dict(expected)
    months = {row["month"] for row in rows}
    assert {"2021-03", "2022-08"} <= months  # the dates the sample archive gave its files
    for month in months:
        assert sum(_number(row["share_percent"]) for row in rows if row["month"] == month) == pytest.approx(100, abs=0.5)


def check_low_confidence(result: QueryResult, facts: Facts) -> None:
    expected = sorted(
        ((face.Face.confidence, face.path, face.Face.face_index) for face in facts.faces if face.Face.confidence < 0.4)
    )[:100]
    rows = _dicts(result)
    assert rows, "the default model is unsure of some faces of the sample archive"
    assert [(row["path"], row["face_index"]) for row in rows] == [(path, index) for _, path, index in expected]
    assert {"label", "confidence", "x", "y", "w", "h"} <= set(result.columns)
    assert all(_number(row["confidence"]) < 0.4 for row in rows)


def check_failed_images(result: QueryResult, facts: Facts) -> None:
    rows = _dicts(result)
    assert {(Path(row["path"]).name, row["error"]) for row in rows} == {("empty.jpg", EMPTY_FILE), ("notes.jpg", NOT_AN_IMAGE)}


def check_failure_reasons(result: QueryResult, facts: Facts) -> None:
    rows = _dicts(result)
    assert {row["error"]: row["images_failed"] for row in rows} == {EMPTY_FILE: 1, NOT_AN_IMAGE: 1}
    assert all(Path(row["example_path"]).name in ("empty.jpg", "notes.jpg") for row in rows)


def check_faces_per_model(result: QueryResult, facts: Facts) -> None:
    rows = _dicts(result)
    assert {(row["name"], row["version"]) for row in rows} == {(model.Model.name, model.Model.version) for model in facts.models}
    assert rows[0]["name"] == default_model_name() and rows[0]["faces_labelled"] == len(facts.faces)
    assert rows[0]["images_with_faces"] == len(facts.faces_by_path())
    mean = sum(face.Face.confidence for face in facts.faces) / len(facts.faces)
    assert _number(rows[0]["mean_confidence"]) == pytest.approx(mean, rel=1e-6)


def check_photos_without_faces(result: QueryResult, facts: Facts) -> None:
    with_faces = set(facts.faces_by_path())
    expected = sorted(image.Image.path for image in facts.images
                      if image.Image.status == "done" and image.Image.path not in with_faces)
    rows = _dicts(result)
    assert sorted(row["path"] for row in rows) == expected  # (PostgreSQL's collation may order paths differently)
    assert any(path.endswith("/blank.png") for path in expected)
    assert all(row["width"] > 0 and row["height"] > 0 for row in rows)


def check_duplicates(result: QueryResult, facts: Facts) -> None:
    rows = _dicts(result)
    assert len(rows) == 1 and rows[0]["copies"] == 2
    assert Path(rows[0]["first_path"]).parent.name == "family" and Path(rows[0]["last_path"]).parent.name == "people"


def check_slowest(result: QueryResult, facts: Facts) -> None:
    rows = _dicts(result)
    durations = sorted((image.Image.duration_ms for image in facts.images if image.Image.status == "done"), reverse=True)
    assert [_number(row["duration_ms"]) for row in rows] == pytest.approx(durations[:10])
    assert len(rows) == 10


CHECKS: dict[str, Callable[[QueryResult, Facts], None]] = {
    "Jobs, newest first": check_jobs,
    "Share of each emotion": check_emotion_share,
    "Emotions over the whole archive, each file once": check_whole_archive_emotions,
    "Happiest folders": check_happiest_folders,
    "Photos with more than one face": check_photos_with_several_faces,
    "Share of each emotion per month": check_emotion_share_per_month,
    "Low-confidence faces to review": check_low_confidence,
    "Images that failed, and why": check_failed_images,
    "Failure reasons, most common first": check_failure_reasons,
    "Faces per model version": check_faces_per_model,
    "Photos where no face was found": check_photos_without_faces,
    "Duplicate photos": check_duplicates,
    "Slowest images": check_slowest,
}


def test_every_documented_query_has_a_check_and_runs_on_both_databases():
    queries = example_queries()
    assert len(queries) >= 8
    assert set(queries) == set(CHECKS), "a query was added to or removed from docs/sql.md: update CHECKS"
    for heading, blocks in queries.items():
        covered = {dialect for dialect, _ in blocks}
        assert covered == {"any"} or covered == set(DIALECTS), f"{heading!r}: one portable query, or one per database"


@pytest.mark.parametrize("heading", list(CHECKS))
def test_documented_query_gives_the_right_answer(database, heading):
    dialect, url = database
    facts = Facts(url)
    blocks = [sql for block_dialect, sql in example_queries()[heading] if block_dialect in ("any", dialect)]
    assert len(blocks) == 1
    # Through the library behind `fer query`: read-only, exactly as a user would run it.
    CHECKS[heading](run_read_only_query(blocks[0], url), facts)


def test_fer_query_prints_a_documented_query_as_json(database):
    _, url = database
    sql = example_queries()["Share of each emotion"][0][1]
    result = CliRunner().invoke(fer, ["query", sql, "--format", "json", "--db", url])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert sum(row["faces_labelled"] for row in rows) == len(Facts(url).faces)
    assert all(isinstance(row["share_percent"], float) for row in rows)


def test_documented_schema_is_the_schema(database):
    """Every table, view and column of the database is in docs/sql.md, and nothing else is."""
    _, url = database
    documented = documented_columns()
    engine = make_engine(url)
    inspector = inspect(engine)
    actual = {name: [column["name"] for column in inspector.get_columns(name)]
              for name in [*inspector.get_table_names(), *inspector.get_view_names()] if name != "alembic_version"}
    engine.dispose()
    undocumented = {name: sorted(set(columns) - set(documented.get(name, []))) for name, columns in actual.items()}
    stale = {name: sorted(set(columns) - set(actual.get(name, []))) for name, columns in documented.items()}
    assert not any(undocumented.values()), f"describe these in docs/sql.md: { {k: v for k, v in undocumented.items() if v} }"
    assert not any(stale.values()), f"docs/sql.md describes what is not in the schema: { {k: v for k, v in stale.items() if v} }"
    assert set(documented) - {"face_annotations", "latest_annotations"} == set(Base.metadata.tables)


def test_probability_columns_are_documented_for_every_class():
    documented = documented_columns()
    for table in ("faces", "face_annotations", "latest_annotations"):
        assert [f"p_{name}" for name in CLASSES] == [c for c in documented[table] if c.startswith("p_")]
