"""Runs over overlapping folders: while one is unfinished, no other run over any of the same files starts,
whether it is a local run, a submitted job or a schedule, and whichever folder holds the other."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner
from sqlalchemy import func, select, update

from cli.main import fer
from cli.output import EXIT_NOT_STARTED
from db.models import Image, Job
from db.overlap import RunStillGoing, roots_overlap
from db.schedules import add_schedule
from db.session import make_engine, upgrade
from db.writes import create_job
from workers.queue.scheduling import start_due_runs

BROKER_URL = os.environ.get("FER_TEST_BROKER_URL", "redis://127.0.0.1:6379/11")


def test_roots_overlap_when_one_holds_the_other_in_either_direction(tmp_path):
    archive, sub = str(tmp_path / "archive"), str(tmp_path / "archive" / "sub")
    assert roots_overlap([archive], [archive]) and roots_overlap([archive], [sub]) and roots_overlap([sub], [archive])
    assert roots_overlap([str(tmp_path / "other"), sub], [archive])
    assert not roots_overlap([str(tmp_path / "archive-2")], [archive])  # a name that starts alike is another folder
    assert not roots_overlap([str(tmp_path / "a" / "x")], [str(tmp_path / "a" / "y")])
    (tmp_path / "archive" / "sub").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "archive" / "sub")
    assert roots_overlap([str(tmp_path / "link")], [archive])  # compared once links are resolved


@pytest.fixture
def archive(tmp_path, photos_dir) -> Path:
    root = tmp_path / "archive"
    (root / "sub").mkdir(parents=True)
    photos = sorted(photos_dir.glob("*.jpg"))
    shutil.copy(photos[0], root / "top.jpg")
    shutil.copy(photos[1], root / "sub" / "inner.jpg")
    return root


def _running_job(url: str, roots: list[str]) -> int:
    """A job over ``roots`` that another process is running."""
    engine = make_engine(url)
    upgrade(engine)
    job = create_job(engine, roots, {"model": "default", "allowed_roots": roots}, [])
    with engine.begin() as connection:
        connection.execute(update(Job).where(Job.id == job).values(status="running"))
    engine.dispose()
    return job


def _jobs(url: str) -> int:
    engine = make_engine(url)
    with engine.connect() as connection:
        count = connection.scalar(select(func.count(Job.id)))
    engine.dispose()
    return count


@pytest.mark.parametrize(("running", "started"), [("archive", "archive/sub"), ("archive/sub", "archive"),
                                                  ("archive", "archive/sub/inner.jpg")])
@pytest.mark.parametrize("mode", ["--incremental", "--reannotate"])
def test_a_local_run_overlapping_an_unfinished_one_does_not_start(archive, tmp_path, running, started, mode):
    url = f"sqlite:///{tmp_path / 'fer.db'}"
    job = _running_job(url, [str(tmp_path / running)])
    result = CliRunner().invoke(fer, ["annotate", str(tmp_path / started), mode, "--db", url, "--processes", "1"])
    assert result.exit_code == EXIT_NOT_STARTED, result.output
    line = " ".join(result.output.split())
    assert line.startswith(f"Error: not started: job {job} over {tmp_path / running} is still running, and this run's "
                           "folders overlap it")
    assert f"`fer cancel {job}`" in line and "Traceback" not in result.output
    assert _jobs(url) == 1


def test_a_job_overlapping_an_unfinished_one_is_never_recorded(tmp_path, database_url):
    """The check also runs in the transaction that records a job, so two runs starting together cannot both pass."""
    engine = make_engine(database_url)
    upgrade(engine)
    first = create_job(engine, [str(tmp_path / "archive")], {}, [str(tmp_path / "archive" / "a.jpg")])
    with pytest.raises(RunStillGoing) as refused:
        create_job(engine, [str(tmp_path / "archive" / "sub")], {}, [str(tmp_path / "archive" / "sub" / "b.jpg")])
    assert refused.value.job_id == first
    with engine.connect() as connection:
        assert connection.scalar(select(func.count(Job.id))) == 1
        assert connection.scalar(select(func.count(Image.id))) == 1
    # A job with no progress for longer than FER_STALE_RUN_HOURS blocks nothing.
    with engine.begin() as connection:
        long_ago = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=2)
        connection.execute(update(Job).where(Job.id == first).values(created_at=long_ago))
    create_job(engine, [str(tmp_path / "archive" / "sub")], {}, [])
    with engine.connect() as connection:
        assert connection.scalar(select(func.count(Job.id))) == 2
    engine.dispose()


def test_a_schedule_over_a_folder_inside_a_running_job_does_not_start(archive, tmp_path):
    url = f"sqlite:///{tmp_path / 'fer.db'}"
    job = _running_job(url, [str(archive)])
    engine = make_engine(url)
    created = dt.datetime(2026, 7, 1, tzinfo=dt.timezone.utc)
    schedule = add_schedule(engine, str(archive / "sub"), "02:00", "UTC", {"model": "default"}, created_at=created)
    queued: list = []
    outcomes = start_due_runs(engine, lambda *args: queued.append(args),
                              now=dt.datetime(2026, 7, 10, 3, 0, tzinfo=dt.timezone.utc))
    assert outcomes == [{"schedule": schedule, "root": str(archive / "sub"), "date": "2026-07-10",
                         "skipped": f"job {job} over {archive} is still running"}]
    assert queued == [] and _jobs(url) == 1
    engine.dispose()


@pytest.mark.slow
def test_a_submitted_job_overlapping_an_unfinished_one_is_not_queued(archive, tmp_path, monkeypatch):
    client = redis.Redis.from_url(BROKER_URL)
    client.flushdb()
    monkeypatch.setenv("FER_BROKER_URL", BROKER_URL)
    url = f"sqlite:///{tmp_path / 'fer.db'}"
    try:
        first = CliRunner().invoke(fer, ["submit", str(archive / "sub"), "--db", url])
        assert first.exit_code == 0, first.output
        assert first.output == "Job 1 queued: 1 image in 1 chunk; follow it with `fer status 1 --wait`\n"
        second = CliRunner().invoke(fer, ["submit", str(archive), "--db", url])
        assert second.exit_code == EXIT_NOT_STARTED, second.output
        assert f"not started: job 1 over {archive / 'sub'} is still running" in " ".join(second.output.split())
        assert client.llen("celery") == 1 and _jobs(url) == 1
    finally:
        client.flushdb()
