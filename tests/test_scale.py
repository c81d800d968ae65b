"""Costs that follow the work, whatever the archive holds, on SQLite and PostgreSQL: query plans checked with
EXPLAIN (no image of the archive is scanned once per face or per image, and a run's own lookups read only
their own rows), exact counts on a generated archive, exported rows streamed, and SQLite's write-ahead log
bounded while readers hold snapshots. Archives here are small: plans are read, not timed."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import Engine, event, select, text
from sqlalchemy.orm import Session

import db.session
from db.incremental import plan_run
from db.models import Face, Image, Job, Model
from db.reads import annotated_content, archive_summary, export_rows, image_ids, job_summary
from db.records import FaceResult, ImageResult, ModelIdentity
from db.session import make_engine, upgrade
from db.writes import create_job, ensure_model, record_chunk
from fer_model.classes import CLASSES
from fer_model.files import under_roots
from tests.conftest import REPO_ROOT, fresh_postgres_database
from tests.test_sql_docs import example_queries

sys.path.insert(0, str(REPO_ROOT / "bench"))
from scale_archive import History, build_archive, part_root, synthetic_templates  # noqa: E402

MODEL = ModelIdentity("seed-flip", "0123456789ab", "0" * 64, {})
OTHER_MODEL = ModelIdentity("seed", "ba9876543210", "1" * 64, {})
TEMPLATES = 20
IMAGES = 6_000  # 3 jobs of 2,000 images, then the history's two jobs
ROOT = "/archive"
# The only indexes a lookup repeated per face or per image, or a run's own lookup, may read images by.
PER_ROW_INDEXES = {"ix_images_path_model", "ix_images_sha256_model", "images_pkey", "INTEGER PRIMARY KEY"}


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def archive(request, tmp_path_factory) -> Iterator[Engine]:
    """A generated archive with some history: re-annotated, failed and missing files, a second model version."""
    with _database(request.param, tmp_path_factory) as url:
        engine = make_engine(url)
        upgrade(engine)
        build_archive(engine, ROOT, synthetic_templates(TEMPLATES), IMAGES, MODEL,
                      History(reannotated=0.05, other_model=0.1, failed=0.02, missing=0.02, seed=3), OTHER_MODEL)
        yield engine
        engine.dispose()


@contextmanager
def _database(kind: str, tmp_path_factory) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('scale') / 'fer.db'}"
    else:
        with fresh_postgres_database() as url:
            yield url


# --- reading plans ------------------------------------------------------------------------------------

@contextmanager
def statements(engine: Engine) -> Iterator[list[tuple[str, object]]]:
    """The SELECT statements (with their parameters) the code runs meanwhile."""
    seen: list[tuple[str, object]] = []

    def record(connection, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def plan_problems(engine: Engine, statement: str, parameters: object = None, bounded: bool = False) -> list[str]:
    """How the statement reads `images` in a way whose cost grows with the archive: a full scan, or a search by
    another index than a path's, a content's or an id's, done once per row of an outer loop (per face, per
    image). With ``bounded`` (a run's own lookups), such a read anywhere in the plan is a problem."""
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        if engine.dialect.name == "sqlite":
            views = " ".join(row[0] for row in cursor.execute("SELECT sql FROM sqlite_master WHERE type = 'view'"))
            cursor.execute("EXPLAIN QUERY PLAN " + statement, parameters or ())
            return _sqlite_problems(cursor.fetchall(), _images_aliases(statement + " " + views), bounded)
        cursor.execute("EXPLAIN (FORMAT JSON) " + statement, parameters or None)
        plan = cursor.fetchone()[0][0]["Plan"]
        return _postgres_problems(plan, False, bounded)
    finally:
        raw.close()


def _images_aliases(sql: str) -> set[str]:
    """The names `images` goes by in the SQL (SQLAlchemy's images_1, the views' latest, ...)."""
    import re

    return {"images", *re.findall(r"\bimages\s+AS\s+(\w+)", sql, flags=re.IGNORECASE)}


def _sqlite_problems(rows: list[tuple], aliases: set[str], bounded: bool) -> list[str]:
    children: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for node, parent, _, detail in rows:
        children[parent].append((node, detail))
    problems: list[str] = []

    def walk(parent: int, per_row: bool) -> None:
        loops = 0
        for node, detail in children[parent]:
            words = detail.split()
            if words[0] in ("SCAN", "SEARCH"):
                inner = per_row or loops > 0  # later loops of a join run once per row of the earlier ones
                loops += 1
                if words[1] in aliases and (inner or bounded):
                    index = detail.split(" INDEX ")[1].split()[0] if " INDEX " in detail else (
                        "INTEGER PRIMARY KEY" if "PRIMARY KEY" in detail else None)
                    if words[0] == "SCAN" or index not in PER_ROW_INDEXES:
                        problems.append(detail)
                walk(node, inner)
            else:
                walk(node, per_row or detail.startswith("CORRELATED"))

    walk(0, False)
    return problems


def _postgres_problems(node: dict, per_row: bool, bounded: bool) -> list[str]:
    problems = []
    index = node.get("Index Name")
    reads_images = node.get("Relation Name") == "images" or (index or "").startswith(("ix_images", "images_"))
    if reads_images and (per_row or bounded):
        if node["Node Type"] == "Seq Scan" or (index is not None and index not in PER_ROW_INDEXES):
            problems.append(f"{node['Node Type']} on images" + (f" using {index}" if index else ""))
    for child in node.get("Plans", []):
        relationship = child.get("Parent Relationship")
        once = relationship == "InitPlan" or child.get("Subplan Name", "").startswith("hashed")
        repeated = (relationship == "SubPlan" and not once) or (
            node["Node Type"] == "Nested Loop" and relationship == "Inner")
        problems += _postgres_problems(child, per_row or repeated, bounded)
    return problems


def all_problems(engine: Engine, captured: list[tuple[str, object]], bounded: bool = False) -> dict[str, list[str]]:
    found = {statement[:160]: plan_problems(engine, statement, parameters, bounded) for statement, parameters in captured}
    return {statement: problems for statement, problems in found.items() if problems}


# --- plans ----------------------------------------------------------------------------------------------

def test_the_views_and_documented_queries_read_each_file_by_index_not_by_scanning_the_archive(archive):
    dialect = archive.dialect.name
    queries = [sql for versions in example_queries().values() for kind, sql in versions if kind in ("any", dialect)]
    queries += ["SELECT COUNT(*) FROM latest_annotations", "SELECT COUNT(*) FROM face_annotations",
                "SELECT model, label, COUNT(*) FROM latest_annotations GROUP BY model, label"]
    problems = {sql[:120]: plan_problems(archive, sql) for sql in queries}
    assert {sql: found for sql, found in problems.items() if found} == {}


def test_reports_and_the_whole_archive_summary_seek_each_image_by_index(archive):
    with statements(archive) as captured:
        archive_summary(archive)
        job_summary(archive, 1)
        with export_rows(archive, 1, failed=False) as (_, rows):
            rows.fetchmany(10)
    assert len(captured) > 5
    assert all_problems(archive, captured) == {}


def test_the_archive_summary_sorts_nothing(archive):
    """Grouped by model version only: no sort of every annotated image (by path, or at all)."""
    with statements(archive) as captured:
        archive_summary(archive)
    sorts = []
    for statement, parameters in captured:
        if "FROM images" not in statement:
            continue
        raw = archive.raw_connection()
        try:
            cursor = raw.cursor()
            if archive.dialect.name == "sqlite":
                cursor.execute("EXPLAIN QUERY PLAN " + statement, parameters or ())
                sorts += [row[3] for row in cursor.fetchall() if "TEMP B-TREE" in row[3]]
            else:
                cursor.execute("EXPLAIN (FORMAT JSON) " + statement, parameters or None)
                sorts += _sorts_of_images(cursor.fetchone()[0][0]["Plan"])
        finally:
            raw.close()
    assert sorts == []


def _sorts_of_images(node: dict) -> list[str]:
    """Sort nodes that sort rows of images (not the few rows of an aggregate below them)."""
    found = []
    if node["Node Type"] in ("Sort", "Incremental Sort") and _reads_images_below(node):
        found.append(f"{node['Node Type']}: {node.get('Sort Key')}")
    return found + [sort for child in node.get("Plans", []) for sort in _sorts_of_images(child)]


def _reads_images_below(node: dict) -> bool:
    """Whether rows of images reach this node without passing through an aggregate."""
    return any(child.get("Relation Name") == "images" or (
        child["Node Type"] != "Aggregate" and _reads_images_below(child)) for child in node.get("Plans", []))


def test_run_planning_and_content_lookups_read_only_their_own_rows(archive):
    with Session(archive) as session:
        model_id = session.scalar(select(Model.id).where(Model.version == MODEL.version))
        digests = list(session.scalars(select(Image.sha256).where(Image.sha256.is_not(None)).distinct().limit(5)))
    with statements(archive) as captured:
        plan_run(archive, [f"{ROOT}/p01/b02"], [], model_id)
        annotated_content(archive, model_id, digests, [1, 2, 3])
    assert len(captured) >= 3
    assert all_problems(archive, captured, bounded=True) == {}


# --- results ----------------------------------------------------------------------------------------------

def test_run_planning_finds_exactly_the_files_under_its_roots(database_url):
    engine = make_engine(database_url)
    upgrade(engine)
    model_id = ensure_model(engine, MODEL)
    paths = ["/a/b", "/a/b/x.jpg", "/a/b/c/y.jpg", "/a/b/ü.jpg", "/a/b/%_.jpg", "/a/b-c/z.jpg", "/a/b0/w.jpg",
             "/a/bc/v.jpg", "/a/B/u.jpg", "/a/b.jpg", "/other/b/x.jpg"]
    job = create_job(engine, ["/"], {"model": MODEL.name}, paths)
    ids = image_ids(engine, job)
    record_chunk(engine, job, model_id, [ImageResult(i, "done", size=1, mtime=1.0, sha256="0" * 64) for i in ids])
    by_path = dict(zip(paths, ids))
    for roots in (["/a/b"], ["/a/b/"], ["/a/b", "/a/b/c"], ["/a/b/x.jpg"], ["/"], ["/a"], ["/a/b-c", "/other"]):
        expected = sorted(by_path[path] for path in paths if under_roots(path, roots))
        # Nothing was listed and the files do not exist: every annotated file under the roots is missing.
        assert sorted(plan_run(engine, roots, [], model_id).missing_ids) == expected, roots
    engine.dispose()


def test_report_export_views_and_jobs_agree_on_every_count(archive):
    truth = Truth(archive)
    with archive.connect() as connection:
        jobs = connection.execute(select(Job.id, Job.images_total, Job.images_done, Job.images_failed,
                                         Job.faces_found)).all()
        view_faces = Counter({(model, version, label): count for model, version, label, count in connection.execute(
            text("SELECT model, model_version, label, COUNT(*) FROM latest_annotations "
                 "GROUP BY model, model_version, label"))})
        view_images = dict(connection.execute(text(
            "SELECT model_version, COUNT(DISTINCT image_id) FROM latest_annotations GROUP BY model_version")).all())
        per_job_view = dict(connection.execute(text(
            "SELECT job_id, COUNT(*) FROM face_annotations GROUP BY job_id")).all())
    assert len(jobs) == 5
    for job in jobs:
        summary = job_summary(archive, job.id)
        with export_rows(archive, job.id, failed=False) as (_, rows):
            exported = sum(1 for _ in rows)
        faces = truth.job_faces[job.id]
        assert summary["faces"] == exported == per_job_view.get(job.id, 0) == job.faces_found == faces > 0
        assert summary["images"]["done"] == job.images_done == truth.job_status[job.id]["done"]
        assert summary["images"]["failed"] == job.images_failed == truth.job_status[job.id]["failed"]
        assert summary["images"]["total"] == job.images_total
    archive_report = archive_summary(archive)  # shown as one model version, with totals per version
    shown = archive_report["model"]["version"]
    assert archive_report["faces"] == sum(n for (version, _), n in truth.current_faces.items() if version == shown)
    assert archive_report["images"]["done"] == truth.current_images[shown]
    assert sum(model["faces"] for model in archive_report["models"]) == sum(truth.current_faces.values()) \
        == sum(view_faces.values())
    assert sum(model["images"] for model in archive_report["models"]) == sum(truth.current_images.values())
    for model in archive_report["models"]:
        version = model["version"]
        assert model["images"] == truth.current_images[version]
        assert model["images_with_faces"] == truth.with_faces[version] == view_images[version]
        for label in CLASSES:
            assert model["emotions"][label] == truth.current_faces[(version, label)] == view_faces.get(
                (model["name"], version, label), 0)
    assert {model["version"] for model in archive_report["models"]} == {MODEL.version, OTHER_MODEL.version}


class Truth:
    """The counts, worked out in Python from the raw rows."""

    def __init__(self, engine: Engine):
        with engine.connect() as connection:
            images = connection.execute(select(Image.id, Image.job_id, Image.path, Image.model_id, Image.status,
                                               Image.missing_at)).all()
            faces = connection.execute(select(Face.image_id, Face.model_id, Face.label)).all()
            versions = dict(connection.execute(select(Model.id, Model.version)).all())
        job_of = {image.id: image.job_id for image in images}
        self.job_faces = Counter(job_of[face.image_id] for face in faces)
        self.job_status: dict[int, Counter] = defaultdict(Counter)
        latest: dict[tuple[str, int], int] = {}
        for image in images:
            self.job_status[image.job_id][image.status] += 1
            if image.status == "done" and image.model_id is not None:
                key = (image.path, image.model_id)
                latest[key] = max(latest.get(key, 0), image.id)
        current = {image.id: image for image in images
                   if image.missing_at is None and latest.get((image.path, image.model_id)) == image.id}
        self.current_images = Counter(versions[image.model_id] for image in current.values())
        self.current_faces: Counter = Counter()
        with_faces = set()
        for face in faces:
            image = current.get(face.image_id)
            if image is not None and face.model_id == image.model_id:
                self.current_faces[(versions[face.model_id], face.label)] += 1
                with_faces.add(image.id)
        self.with_faces = Counter(versions[current[image_id].model_id] for image_id in with_faces)


def test_content_lookup_takes_the_newest_done_image_of_the_model_outside_the_chunk(database_url):
    engine = make_engine(database_url)
    upgrade(engine)
    model_id, other_id = ensure_model(engine, MODEL), ensure_model(engine, OTHER_MODEL)
    digest = "ab" * 32
    job = create_job(engine, ["/p"], {"model": MODEL.name}, [f"/p/{name}.jpg" for name in "abcdef"])
    a, b, c, d, e, f = image_ids(engine, job)
    faces = [FaceResult(index, 1, 2, 30, 30, 0.9, [0.1, 0.1, 0.1, 0.4, 0.1, 0.1, 0.1], "happy", 0.4) for index in (0, 1)]
    record_chunk(engine, job, model_id, [ImageResult(a, "done", width=10, height=10, sha256=digest, faces=faces[:1]),
                                         ImageResult(b, "done", width=20, height=20, sha256=digest, faces=faces)])
    record_chunk(engine, job, model_id, [ImageResult(c, "failed", error="x", sha256=digest)])
    record_chunk(engine, job, other_id, [ImageResult(d, "done", width=40, height=40, sha256=digest)])
    found = annotated_content(engine, model_id, [digest, "cd" * 32], [e, f])
    assert list(found) == [digest]
    assert found[digest]["image_id"] == b and found[digest]["width"] == 20 and len(found[digest]["faces"]) == 2
    assert annotated_content(engine, model_id, [digest], [b, e])[digest]["image_id"] == a
    assert annotated_content(engine, model_id, [digest], [a, b]) == {}
    assert annotated_content(engine, other_id, [digest], [])[digest]["image_id"] == d
    engine.dispose()


def test_export_streams_its_rows_from_a_server_side_cursor_on_postgresql(archive):
    """SQLite's cursor reads rows as they are fetched; PostgreSQL's client cursor would load them all first."""
    import psycopg

    with export_rows(archive, 1, failed=False) as (_, rows):
        assert rows.context.execution_options.get("stream_results") is True
        assert isinstance(rows.cursor, psycopg.ServerCursor) == (archive.dialect.name == "postgresql")
        assert len(rows.fetchmany(100)) == 100


# --- SQLite's write-ahead log -----------------------------------------------------------------------------

def test_the_sqlite_write_ahead_log_stays_bounded_while_readers_hold_snapshots(tmp_path, monkeypatch):
    """Two readers that always hold a snapshot (as busy detection processes, or a long export, do) keep SQLite
    from starting its log again; the writer's own checkpoints still keep it under the limit."""
    limit = 2**20
    monkeypatch.setattr(db.session, "WAL_CHECKPOINT_BYTES", limit)
    path = tmp_path / "fer.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    model_id = ensure_model(engine, MODEL)
    job = create_job(engine, ["/p"], {"model": MODEL.name}, [f"/p/{index:05d}.jpg" for index in range(1600)])
    ids = image_ids(engine, job)
    stop = threading.Event()
    readers = [threading.Thread(target=_hold_snapshots, args=(f"sqlite:///{path}", stop, delay)) for delay in (0, 0.01)]
    for reader in readers:
        reader.start()
    face = FaceResult(0, 1, 2, 30, 30, 0.9, [0.1, 0.1, 0.1, 0.4, 0.1, 0.1, 0.1], "happy", 0.4)
    largest = 0
    try:
        for start in range(0, len(ids), 32):
            record_chunk(engine, job, model_id, [ImageResult(image_id, "done", sha256=f"{image_id:064x}", faces=[face])
                                                 for image_id in ids[start : start + 32]])
            largest = max(largest, os.path.getsize(f"{path}-wal"))
    finally:
        stop.set()
        for reader in readers:
            reader.join()
        engine.dispose()
    assert largest < 2 * limit, f"the log reached {largest / 2**20:.1f} MB"


def _hold_snapshots(url: str, stop: threading.Event, delay: float) -> None:
    time.sleep(delay)
    engine = make_engine(url)
    while not stop.is_set():
        with engine.connect() as connection:
            rows = connection.exec_driver_sql("SELECT id FROM images")
            rows.fetchone()  # an open statement keeps its snapshot
            time.sleep(0.02)
            rows.close()
    engine.dispose()


def test_a_large_job_is_recorded_in_batches_that_keep_the_log_bounded(tmp_path, monkeypatch):
    import db.writes

    limit = 2**20
    monkeypatch.setattr(db.session, "WAL_CHECKPOINT_BYTES", limit)
    monkeypatch.setattr(db.writes, "JOB_BATCH", 2000)
    path = tmp_path / "fer.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    sizes: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            sizes.append(os.path.getsize(f"{path}-wal") if os.path.exists(f"{path}-wal") else 0)
            time.sleep(0.002)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        job = create_job(engine, ["/photos"], {"model": MODEL.name},
                         [f"/photos/2024/{index // 1000:02d}/holiday-{index:06d}.jpg" for index in range(16_000)])
    finally:
        stop.set()
        watcher.join()
    assert len(image_ids(engine, job)) == 16_000
    assert max(sizes) < 2 * limit, f"the log reached {max(sizes) / 2**20:.1f} MB"
    engine.dispose()


def test_a_job_whose_recording_stops_part_way_is_not_left_behind(tmp_path, monkeypatch):
    import db.writes

    monkeypatch.setattr(db.writes, "JOB_BATCH", 100)
    engine = make_engine(f"sqlite:///{tmp_path / 'fer.db'}")
    upgrade(engine)
    batches = []

    def interrupted_after_two_batches(engine: Engine) -> None:
        batches.append(1)
        if len(batches) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(db.writes, "checkpoint_if_large", interrupted_after_two_batches)
    with pytest.raises(KeyboardInterrupt):
        create_job(engine, ["/p"], {"model": MODEL.name}, [f"/p/{index:04d}.jpg" for index in range(1000)])
    with engine.connect() as connection:
        assert connection.execute(text("SELECT COUNT(*) FROM jobs")).scalar() == 0
        assert connection.execute(text("SELECT COUNT(*) FROM images")).scalar() == 0
    engine.dispose()
