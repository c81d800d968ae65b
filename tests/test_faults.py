"""Faults in the distributed deployment, against the real Redis and PostgreSQL on this machine.

Each test runs a real job, breaks something in the middle, and checks that the job
still finishes with every image annotated exactly once. Every test restores the
service it disturbed.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import redis
from click.testing import CliRunner
from PIL import Image
from sqlalchemy import create_engine, func, select, text

from cli.main import fer
from cli.output import EXIT_PARTIAL
from db.models import Face, Job
from db.models import Image as ImageRow
from db.session import make_engine
from tests.conftest import REPO_ROOT, annotate_json

# Real photos, real servers or whole benchmark runs: the full suite (`make test`), not the fast lane.
pytestmark = pytest.mark.slow

JOB_TIMEOUT = 240


class PrivateRedis:
    """A redis-server of these tests' own, on a free port, so stopping it touches nobody else's queue."""

    def __init__(self, folder: Path):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.folder = folder
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.folder)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        _wait(self.is_up, 30, f"private redis-server on port {self.port} did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
        self.process = None

    def is_up(self) -> bool:
        try:
            return bool(redis.Redis.from_url(self.url).ping())
        except redis.ConnectionError:
            return False


@pytest.fixture(scope="module")
def private_redis(tmp_path_factory) -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is required for the fault tests (apt-get install redis-server)")
    server = PrivateRedis(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def fault_archive(tmp_path_factory, photos_dir) -> Path:
    root = tmp_path_factory.mktemp("faults")
    for photo in sorted(photos_dir.glob("*.jpg"))[:40]:
        shutil.copy(photo, root / photo.name)
    return root


@pytest.fixture
def broker(monkeypatch, private_redis) -> Iterator[str]:
    if not private_redis.is_up():
        private_redis.start()
    redis.Redis.from_url(private_redis.url).flushdb()
    monkeypatch.setenv("FER_BROKER_URL", private_redis.url)
    yield private_redis.url
    if not private_redis.is_up():
        private_redis.start()
    redis.Redis.from_url(private_redis.url).flushdb()


def _wait(condition, timeout: float, message: str, poll: float = 0.3) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(poll)
    pytest.fail(message)


@contextmanager
def worker(database: str, log: Path, *, concurrency: int = 1, pool: str = "solo", env: dict | None = None):
    environment = {**os.environ, "FER_DATABASE_URL": database, "PYTHONUNBUFFERED": "1",
                   "FER_VISIBILITY_TIMEOUT": "10", **(env or {})}
    handle = open(log, "a")
    process = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "worker", "--concurrency", str(concurrency), "--pool", pool,
         "--loglevel", "INFO", "--db", database],
        cwd=REPO_ROOT, env=environment, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        _wait(lambda: "ready" in log.read_text() or process.poll() is not None, 120, "worker not ready:\n" + log.read_text())
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        handle.close()


def _submit(archive: Path, database: str, *extra: str) -> int:
    result = CliRunner().invoke(fer, ["submit", str(archive), "--db", database, "--chunk-size", "2", *extra])
    assert result.exit_code == 0, result.output
    return int(re.search(r"Job (\d+) queued", result.output).group(1))


def _counts(database: str, job: int) -> dict[str, int]:
    engine = make_engine(database)
    with engine.connect() as connection:
        rows = connection.execute(
            select(ImageRow.status, func.count()).where(ImageRow.job_id == job).group_by(ImageRow.status)
        ).all()
    engine.dispose()
    return dict(rows)


def _job_status(database: str, job: int) -> str:
    engine = make_engine(database)
    with engine.connect() as connection:
        status = connection.scalar(select(Job.status).where(Job.id == job))
    engine.dispose()
    return status


def _wait_until_some_done(database: str, job: int) -> None:
    _wait(lambda: _counts(database, job).get("done", 0) >= 2, 120, "no image finished")


def _wait_finished(database: str, job: int, log: Path) -> None:
    _wait(lambda: _job_status(database, job) == "finished", JOB_TIMEOUT,
          f"job {job} did not finish: {_counts(database, job)}\n{log.read_text()[-3000:]}", poll=1)


def _assert_exactly_once(database: str, job: int, images: int) -> None:
    """Every image has one row and a terminal status; no face is stored twice."""
    engine = make_engine(database)
    with engine.connect() as connection:
        statuses = dict(connection.execute(
            select(ImageRow.status, func.count()).where(ImageRow.job_id == job).group_by(ImageRow.status)
        ).all())
        paths = connection.scalar(select(func.count(func.distinct(ImageRow.path))).where(ImageRow.job_id == job))
        duplicates = connection.execute(
            select(Face.image_id, Face.model_id, Face.face_index, func.count())
            .join(ImageRow).where(ImageRow.job_id == job)
            .group_by(Face.image_id, Face.model_id, Face.face_index).having(func.count() > 1)
        ).all()
        faces = connection.scalar(select(func.count(Face.id)).join(ImageRow).where(ImageRow.job_id == job))
        job_faces = connection.scalar(select(Job.faces_found).where(Job.id == job))
    engine.dispose()
    assert statuses == {"done": images}
    assert paths == images and duplicates == [] and faces == job_faces and faces >= images * 0.9


def _database_ready(url: str) -> str:
    result = CliRunner().invoke(fer, ["db", "upgrade", "--db", url])
    assert result.exit_code == 0, result.output
    return url


def test_sigkill_of_a_pool_process_mid_job_loses_nothing(fault_archive, postgres_url, broker, tmp_path):
    database, log = _database_ready(postgres_url), tmp_path / "worker.log"
    with worker(database, log, concurrency=2, pool="prefork") as process:
        job = _submit(fault_archive, database)
        _wait_until_some_done(database, job)
        children = subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True).stdout.split()
        assert children, "prefork worker has no pool processes"
        os.kill(int(children[0]), signal.SIGKILL)
        _wait_finished(database, job, log)
    _assert_exactly_once(database, job, 40)


def test_sigkill_of_a_whole_worker_then_retry_completes_the_job(fault_archive, postgres_url, broker, tmp_path):
    database, log = _database_ready(postgres_url), tmp_path / "worker.log"
    with worker(database, log) as process:
        job = _submit(fault_archive, database)
        _wait_until_some_done(database, job)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert _job_status(database, job) != "finished"
    with worker(database, tmp_path / "worker2.log"):
        retried = CliRunner().invoke(fer, ["retry", str(job), "--db", database, "--wait"])
        assert retried.exit_code == 0, retried.output
        _wait_finished(database, job, tmp_path / "worker2.log")
    _assert_exactly_once(database, job, 40)


def test_redis_restart_mid_job_workers_reconnect_and_retry_requeues_the_lost_queue(
    fault_archive, postgres_url, broker, private_redis, tmp_path
):
    database, log = _database_ready(postgres_url), tmp_path / "worker.log"
    with worker(database, log) as process:
        job = _submit(fault_archive, database)
        _wait_until_some_done(database, job)
        private_redis.stop()
        _wait(lambda: not private_redis.is_up(), 20, "Redis did not stop")
        private_redis.start()
        assert process.poll() is None, "the worker died with the broker:\n" + log.read_text()[-3000:]
        # Redis keeps nothing on disk here, so the queued chunks are gone: retry queues what is pending.
        retried = CliRunner().invoke(fer, ["retry", str(job), "--db", database])
        assert retried.exit_code == 0, retried.output
        _wait_finished(database, job, log)
    _assert_exactly_once(database, job, 40)


def test_postgres_connections_dropped_mid_job_are_retried(fault_archive, postgres_url, broker, tmp_path):
    database, log = _database_ready(postgres_url), tmp_path / "worker.log"
    name = database.rsplit("/", 1)[1]
    admin = create_engine("postgresql+psycopg://postgres@127.0.0.1:5432/test", isolation_level="AUTOCOMMIT")
    terminated = 0
    with worker(database, log, concurrency=2, pool="prefork"):
        job = _submit(fault_archive, database)
        _wait_until_some_done(database, job)
        for _ in range(3):
            with admin.connect() as connection:
                terminated += len(connection.execute(
                    text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE datname = :name AND pid <> pg_backend_pid()"),
                    {"name": name},
                ).all())
            time.sleep(0.5)
        _wait_finished(database, job, log)
    admin.dispose()
    assert terminated >= 1
    _assert_exactly_once(database, job, 40)


def test_interrupted_submit_is_marked_and_retry_finishes_it(postgres_url, broker, tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    Image.fromarray(np.full((24, 24), 128, np.uint8)).save(folder / "0000.png")
    for number in range(1, 3000):
        os.link(folder / "0000.png", folder / f"{number:04d}.png")
    database = _database_ready(postgres_url)
    environment = {**os.environ, "FER_BROKER_URL": broker, "PYTHONUNBUFFERED": "1"}
    submit = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "submit", str(folder), "--db", database, "--chunk-size", "1"],
        cwd=REPO_ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    queue = redis.Redis.from_url(broker)
    _wait(lambda: queue.llen("celery") >= 20 or submit.poll() is not None, 120, "submit queued nothing")
    submit.send_signal(signal.SIGTERM)
    _, error = submit.communicate(timeout=60)
    assert submit.returncode == 130, error
    assert "interrupted while queueing job" in error and "fer retry" in error and "Traceback" not in error
    job = int(error.split("queueing job ")[1].split(";")[0])
    assert _job_status(database, job) == "interrupted"
    assert 0 < queue.llen("celery") < 3000
    assert _counts(database, job) == {"pending": 3000}

    queue.delete("celery")  # the queued part is lost too; retry must take care of everything
    result = CliRunner().invoke(fer, ["retry", str(job), "--local", "--chunk-size", "500", "--processes", "1",
                                      "--db", database])
    assert result.exit_code == 0, result.output
    assert f"Job {job}: 3,000 images to process" in result.output
    assert _job_status(database, job) == "finished" and _counts(database, job) == {"done": 3000}


def test_retry_failed_reprocesses_only_the_failed_images(tmp_path, photos_dir):
    folder = tmp_path / "photos"
    folder.mkdir()
    good = sorted(photos_dir.glob("*.jpg"))[:2]
    for photo in good:
        shutil.copy(photo, folder / photo.name)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    database = f"sqlite:///{tmp_path / 'fer.db'}"
    runner = CliRunner()
    job = annotate_json(folder, database, exit_code=EXIT_PARTIAL)["job"]  # broken.jpg failed
    assert _counts(database, job) == {"done": 2, "failed": 1}

    nothing = runner.invoke(fer, ["retry", str(job), "--local", "--db", database])
    assert nothing.exit_code == EXIT_PARTIAL and "nothing to do" in nothing.output  # broken.jpg still failed

    shutil.copy(good[0], folder / "broken.jpg")  # the user repairs the file
    again = runner.invoke(fer, ["retry", str(job), "--failed", "--local", "--db", database])
    assert again.exit_code == 0, again.output
    assert "1 image to process" in again.output
    assert _counts(database, job) == {"done": 3} and _job_status(database, job) == "finished"


def test_retry_of_an_unknown_job_and_without_a_broker_are_clear_errors(tmp_path, monkeypatch):
    database = _database_ready(f"sqlite:///{tmp_path / 'fer.db'}")
    result = CliRunner().invoke(fer, ["retry", "99", "--db", database])
    assert result.exit_code == 1 and "no job 99" in result.output
    monkeypatch.setenv("FER_BROKER_URL", "redis://:s3cret-password@127.0.0.1:1/0")
    folder = tmp_path / "p"
    folder.mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / "a.png")
    result = CliRunner().invoke(fer, ["submit", str(folder), "--db", database])
    assert result.exit_code == 1 and "cannot reach the broker" in result.output
    assert "s3cret-password" not in result.output  # credentials are never echoed


def test_a_worker_on_another_database_leaves_the_chunks_queued_and_status_says_why(fault_archive, postgres_url,
                                                                                  broker, tmp_path):
    database = _database_ready(postgres_url)
    elsewhere = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    log = tmp_path / "wrong-worker.log"
    with worker(elsewhere, log, env={"FER_REFUSED_TASK_PAUSE": "1"}):
        job = _submit(fault_archive, database, "--chunk-size", "20")
        _wait(lambda: "refused" in log.read_text(), 60, "the worker did not refuse:\n" + log.read_text()[-3000:])
        waited = subprocess.run(
            [sys.executable, "-m", "cli.main", "status", str(job), "--wait", "--timeout", "6", "--db", database],
            cwd=REPO_ROOT, env={**os.environ, "FER_NO_WORKER_SECONDS": "2"}, capture_output=True, text=True,
            timeout=120,
        )
        assert waited.returncode == 75, waited.stderr
        said = " ".join((waited.stdout + waited.stderr).split())
        assert f"Job {job} is not moving: a worker connected to another database refused this job's tasks" in said
        assert f"Error: job {job} has not finished after 6 s: a worker connected to another database refused" in said
        assert "point that worker's FER_DATABASE_URL (or --db) here" in said
        assert _job_status(database, job) == "pending"
    # The worker is fixed (a worker on the job's database starts): the chunks were kept, no `fer retry` needed.
    fixed = tmp_path / "worker.log"
    with worker(database, fixed):
        _wait_finished(database, job, fixed)
    _assert_exactly_once(database, job, 40)
