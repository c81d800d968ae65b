"""The annotation pipeline end to end: local on SQLite, distributed on Redis + PostgreSQL."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import redis
from click.testing import CliRunner
from PIL import Image
from sqlalchemy import select, text

from cli.main import fer
from cli.output import EXIT_PARTIAL
from db.models import Face
from db.models import Image as ImageRow
from db.session import make_engine
from fer_model.registry import default_model_name
from tests.conftest import REPO_ROOT, annotate_json
from workers.jobs.options import JobOptions

# Real photos, real servers or whole benchmark runs: the full suite (`make test`), not the fast lane.
pytestmark = pytest.mark.slow

BROKER_URL = os.environ.get("FER_TEST_BROKER_URL", "redis://127.0.0.1:6379/11")
PHOTOS_IN_TEST = 12


@pytest.fixture(scope="module")
def archive(tmp_path_factory, photos_dir) -> Path:
    """Real photos, a blank image (no face), and a file that is not an image."""
    root = tmp_path_factory.mktemp("archive")
    (root / "people").mkdir()
    for photo in sorted(photos_dir.glob("*.jpg"))[:PHOTOS_IN_TEST]:
        shutil.copy(photo, root / "people" / photo.name)
    Image.fromarray(np.full((120, 160, 3), 200, np.uint8)).save(root / "blank.png")
    (root / "notes.jpg").write_text("this is not a picture")
    return root


def _face_rows(url: str) -> list[tuple]:
    engine = make_engine(url)
    with engine.connect() as connection:
        rows = connection.execute(
            select(ImageRow.path, Face.face_index, Face.x, Face.y, Face.w, Face.h, Face.label,
                   *[getattr(Face, f"p_{c}") for c in ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")])
            .join(ImageRow).order_by(ImageRow.path, Face.face_index)
        ).all()
    engine.dispose()
    return [(Path(r[0]).name, *r[1:7], *(round(p, 4) for p in r[7:])) for r in rows]


def _statuses(url: str) -> dict[str, tuple[str, str | None]]:
    engine = make_engine(url)
    with engine.connect() as connection:
        rows = connection.execute(select(ImageRow.path, ImageRow.status, ImageRow.error)).all()
    engine.dispose()
    return {Path(path).name: (status, error) for path, status, error in rows}


@pytest.fixture(scope="module")
def local_run(archive, tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('local') / 'fer.db'}"
    return url, annotate_json(archive, url, "--chunk-size", "5", exit_code=EXIT_PARTIAL)  # notes.jpg is not a picture


def test_local_annotation_gives_every_image_one_terminal_status(local_run):
    url, report = local_run
    statuses = _statuses(url)
    assert len(statuses) == PHOTOS_IN_TEST + 2
    assert {status for status, _ in statuses.values()} <= {"done", "failed"}
    assert statuses["notes.jpg"] == ("failed", "not an image, or a format this tool does not read")
    assert statuses["blank.png"][0] == "done"
    assert report["status"] == "finished"
    assert report["images"] == {"total": PHOTOS_IN_TEST + 2, "done": PHOTOS_IN_TEST + 1, "failed": 1, "pending": 0}


def test_report_counts_match_the_tables_and_probabilities_sum_to_one(local_run):
    url, report = local_run
    faces = _face_rows(url)
    assert report["faces"] == len(faces) >= PHOTOS_IN_TEST - 1
    assert sum(report["emotions"].values()) == len(faces)
    photos_with_faces = {row[0] for row in faces}
    assert report["images_without_faces"] == PHOTOS_IN_TEST + 1 - len(photos_with_faces)
    assert "blank.png" not in photos_with_faces
    for row in faces:
        assert sum(row[7:]) == pytest.approx(1.0, abs=1e-3)
    assert report["model"]["name"] == default_model_name() and report["model"]["version"]


def test_rerunning_a_finished_chunk_changes_nothing(local_run):
    """A redelivered task finds its images done and writes nothing; a forced rewrite replaces, never duplicates."""
    from db.reads import image_ids
    from workers.chunks.work import process_chunk

    url, report = local_run
    engine = make_engine(url)
    before = _face_rows(url)
    ids = image_ids(engine, report["job"], status=None)
    assert process_chunk(url, report["job"], ids, JobOptions(model="default", allowed_roots=("/",)))["images"] == 0
    with engine.begin() as connection:
        connection.execute(text("UPDATE images SET status = 'pending' WHERE job_id = :job"), {"job": report["job"]})
    options = JobOptions(model="default", allowed_roots=tuple(report["roots"]))
    process_chunk(url, report["job"], ids, options)
    assert _face_rows(url) == before
    engine.dispose()


def test_export_writes_one_row_per_face(local_run, tmp_path):
    url, report = local_run
    out = tmp_path / "faces.jsonl"
    result = CliRunner().invoke(fer, ["export", str(report["job"]), "--format", "jsonl", "-o", str(out), "--db", url])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == report["faces"]
    assert {"path", "x", "y", "w", "h", "label", "confidence", "p_happy", "model"} <= set(lines[0])


@pytest.fixture
def broker():
    client = redis.Redis.from_url(BROKER_URL)
    try:
        client.ping()
    except redis.ConnectionError as error:
        pytest.fail(f"Redis at {BROKER_URL} is required for this test: {error}")
    client.flushdb()
    yield BROKER_URL
    client.flushdb()


def test_distributed_run_matches_the_local_one(archive, local_run, postgres_url, broker, monkeypatch, tmp_path):
    monkeypatch.setenv("FER_BROKER_URL", broker)
    environment = {**os.environ, "FER_BROKER_URL": broker, "FER_DATABASE_URL": postgres_url, "PYTHONUNBUFFERED": "1"}
    upgrade = CliRunner().invoke(fer, ["db", "upgrade", "--db", postgres_url])
    assert upgrade.exit_code == 0, upgrade.output
    logs = [open(tmp_path / f"worker{i}.log", "w") for i in range(2)]
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "cli.main", "worker", "--concurrency", "1", "--pool", "solo", "--loglevel", "WARNING",
             "--db", postgres_url],
            cwd=REPO_ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT,
        )
        for log in logs
    ]
    try:
        result = CliRunner().invoke(fer, ["submit", str(archive), "--db", postgres_url, "--chunk-size", "3"])
        assert result.exit_code == 0, result.output
        job = int(re.search(r"Job (\d+) queued", result.output).group(1))
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            status = CliRunner().invoke(fer, ["report", str(job), "--format", "json", "--db", postgres_url])
            if json.loads(status.output)["status"] == "finished":
                break
            assert all(w.poll() is None for w in workers), "a worker died: " + (tmp_path / "worker0.log").read_text()
            time.sleep(1)
        else:
            pytest.fail("job did not finish in time; worker log:\n" + (tmp_path / "worker0.log").read_text())
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            w.wait(timeout=30)
        for log in logs:
            log.close()
    local_url, _ = local_run
    assert _face_rows(postgres_url) == _face_rows(local_url)
    assert _statuses(postgres_url) == _statuses(local_url)


def test_submit_without_a_broker_says_what_to_do(archive, monkeypatch, tmp_path):
    monkeypatch.setenv("FER_BROKER_URL", "redis://127.0.0.1:1/0")
    result = CliRunner().invoke(fer, ["submit", str(archive), "--db", f"sqlite:///{tmp_path / 'x.db'}"])
    assert result.exit_code == 1
    assert "cannot reach the broker" in result.output and "fer annotate" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["annotate", "{missing}"], "no such file or directory"),
        (["annotate", "{empty}"], "no images found"),
        (["annotate", "{archive}", "--detector", "nope"], "unknown detector 'nope'"),
        (["annotate", "{archive}", "--db", "postgresql://nobody@127.0.0.1:1/none"], "is unreachable"),
        (["report", "--db", "sqlite:///{tmp}/new.db"], "no jobs yet"),
        (["export", "42", "-o", "{tmp}/out.csv"], "no job 42"),
        (["status", "42"], "no job 42"),
    ],
)
def test_pipeline_errors_are_clear(archive, tmp_path, arguments, message):
    (tmp_path / "empty").mkdir()
    values = {"missing": str(tmp_path / "missing"), "empty": str(tmp_path / "empty"), "archive": str(archive), "tmp": str(tmp_path)}
    arguments = [a.format(**values) for a in arguments]
    if "--db" not in arguments:
        arguments += ["--db", f"sqlite:///{tmp_path / 'fer.db'}"]
    if arguments[0] in ("report", "export", "status"):  # they only read: the database must exist
        assert CliRunner().invoke(fer, ["db", "upgrade", *arguments[arguments.index("--db"):]]).exit_code == 0
    result = CliRunner().invoke(fer, arguments)
    assert result.exit_code == 1, result.output
    assert message in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("by", ["folder", "day"])
def test_report_breakdowns_add_up(local_run, by, tmp_path):
    url, report = local_run
    out = tmp_path / "report.csv"
    result = CliRunner().invoke(fer, ["report", str(report["job"]), "--by", by, "--format", "json", "--db", url])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)["rows"]
    assert sum(row["faces"] for row in rows) == report["faces"]
    assert sum(row["images"] for row in rows) == report["images"]["done"]
    if by == "folder":
        assert {Path(row["folder"]).name for row in rows} == {"people", Path(report["roots"][0]).name}
    result = CliRunner().invoke(fer, ["report", str(report["job"]), "--by", by, "--format", "csv", "-o", str(out), "--db", url])
    assert result.exit_code == 0 and out.read_text().startswith(by)


def test_workers_refuse_paths_outside_the_allowed_roots(local_run, tmp_path, monkeypatch):
    from db.reads import image_ids
    from db.writes import create_job
    from workers.chunks.work import process_chunk

    url, report = local_run
    engine = make_engine(url)
    inside = Path(report["roots"][0]) / "blank.png"
    job = create_job(engine, [str(tmp_path)], {}, [str(inside)])
    process_chunk(url, job, image_ids(engine, job), JobOptions(model="default", allowed_roots=(str(tmp_path),)))
    monkeypatch.setenv("FER_ALLOWED_ROOTS", str(tmp_path))
    job2 = create_job(engine, [report["roots"][0]], {}, [str(inside)])
    process_chunk(url, job2, image_ids(engine, job2), JobOptions(model="default", allowed_roots=tuple(report["roots"])))
    with engine.connect() as connection:
        rows = connection.execute(select(ImageRow.job_id, ImageRow.status, ImageRow.error).where(ImageRow.job_id.in_([job, job2]))).all()
    engine.dispose()
    assert sorted(rows) == [(job, "failed", "refused: path is outside the allowed roots"),
                            (job2, "failed", "refused: path is outside the allowed roots")]


def test_annotate_finds_faces_in_at_least_95_percent_of_the_photos(photos_dir, tmp_path):
    """Acceptance run: every photo in ../shared/data/photos holds a face."""
    url = f"sqlite:///{tmp_path / 'fer.db'}"
    report = annotate_json(photos_dir, url)
    assert report["images"]["total"] == report["images"]["done"] == 1000
    assert report["images_with_faces"] / report["images"]["total"] >= 0.95


def test_a_job_smaller_than_a_chunk_still_runs_on_every_process(photos_dir, tmp_path, monkeypatch):
    import workers.chunks.local

    folder = tmp_path / "three"
    folder.mkdir()
    for photo in sorted(photos_dir.glob("*.jpg"))[:3]:
        shutil.copy(photo, folder / photo.name)
    processes = []
    run_chunks = workers.chunks.local.run_chunks

    def counting(database_url, job_id, chunks, options, process_count, **kwargs):
        processes.append((len(chunks), process_count))
        return run_chunks(database_url, job_id, chunks, options, process_count, **kwargs)

    monkeypatch.setattr(workers.chunks.local, "run_chunks", counting)
    report = annotate_json(folder, f"sqlite:///{tmp_path / 'fer.db'}", "--processes", "2")
    assert report["images"]["done"] == 3
    assert processes == [(1, 2)]  # one chunk of three images, two detection processes
