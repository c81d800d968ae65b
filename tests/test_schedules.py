"""Schedules: when a run is due, the commands, the beat task called directly, and a real
beat + worker pair on Redis and PostgreSQL starting a run by itself."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import redis
from click.testing import CliRunner
from sqlalchemy import func, select

from cli.main import fer
from db.models import Face, Image, Job
from db.schedules import ScheduleRow, add_schedule, due_today, list_schedules
from db.session import make_engine, upgrade
from tests.conftest import REPO_ROOT
from workers.queue.scheduling import start_due_runs

BROKER_URL = os.environ.get("FER_TEST_SCHEDULE_BROKER_URL", "redis://127.0.0.1:6379/10")
PARIS = "Europe/Paris"


def schedule(at: str = "02:00", created: str = "2026-06-01T00:00:00+00:00", last_run_on: str | None = None) -> ScheduleRow:
    return ScheduleRow(1, "/photos", at, PARIS, {}, dt.datetime.fromisoformat(created), last_run_on, None)


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.timezone.utc)


@pytest.mark.parametrize(
    ("now", "row", "due"),
    [
        ("2026-07-10T23:59", schedule(), None),                             # 01:59 in Paris (summer, UTC+2)
        ("2026-07-10T00:00", schedule(), "2026-07-10"),                     # 02:00 in Paris
        ("2026-07-10T09:00", schedule(), "2026-07-10"),                     # missed at 02:00: still that day
        ("2026-07-10T09:00", schedule(last_run_on="2026-07-10"), None),     # already started today
        ("2026-07-10T09:00", schedule(created="2026-07-10T05:00:00+00:00"), None),  # added after today's time
        ("2026-07-11T00:30", schedule(created="2026-07-10T05:00:00+00:00"), "2026-07-11"),
        ("2026-12-10T01:00", schedule(), "2026-12-10"),                     # winter: 02:00 Paris is 01:00 UTC
        ("2026-12-10T00:59", schedule(), None),
    ],
)
def test_a_run_is_due_once_a_day_from_its_local_time(now, row, due):
    assert due_today(row, utc(now)) == due


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'fer.db'}"


@pytest.fixture
def folder(tmp_path, photos_dir) -> Path:
    root = tmp_path / "nightly"
    root.mkdir()
    for photo in sorted(photos_dir.glob("*.jpg"))[:4]:
        shutil.copy(photo, root / photo.name)
    return root


def test_schedule_commands(folder, sqlite_url):
    runner = CliRunner()
    added = runner.invoke(fer, ["schedule", "add", str(folder), "--at", "03:30", "--timezone", PARIS, "--db", sqlite_url])
    assert added.exit_code == 0, added.output
    listed = json.loads(runner.invoke(fer, ["schedule", "list", "--format", "json", "--db", sqlite_url]).output)
    assert dt.datetime.fromisoformat(listed[0].pop("next_run")).strftime("%H:%M") == "03:30"
    assert listed == [{"id": 1, "root": str(folder), "at": "03:30", "timezone": PARIS,
                       "model": "default", "last_run_on": None, "last_job": None}]
    assert runner.invoke(fer, ["schedule", "remove", "1", "--db", sqlite_url]).exit_code == 0
    assert json.loads(runner.invoke(fer, ["schedule", "list", "--format", "json", "--db", sqlite_url]).output) == []


BAD_SCHEDULES = {
    "25:00": "HH:MM",
    "noon": "HH:MM",
    "02:00 --timezone Mars/Olympus": "unknown time zone",
    "02:00 --model no-such-model": "no-such-model",
}


@pytest.mark.parametrize(("at", "message"), BAD_SCHEDULES.items())
def test_schedule_add_refuses_bad_input_clearly(folder, sqlite_url, at, message):
    result = CliRunner().invoke(fer, ["schedule", "add", str(folder), "--at", *at.split(), "--db", sqlite_url])
    assert result.exit_code != 0 and message in result.output and "Traceback" not in result.output
    removed = CliRunner().invoke(fer, ["schedule", "remove", "7", "--db", sqlite_url]).output
    # A refused `schedule add` may leave no database at all: removing from it creates none.
    assert removed.startswith(("Error: no schedule 7", f"Error: no database at {sqlite_url[len('sqlite:///'):]}"))


def test_due_schedules_start_one_incremental_run_per_day(folder, sqlite_url):
    engine = make_engine(sqlite_url)
    upgrade(engine)
    schedule_id = add_schedule(engine, str(folder), "02:00", PARIS, {"model": "default", "chunk_size": 3},
                               created_at=utc("2026-07-01T00:00"))
    queued: list[tuple[int, list[int]]] = []
    outcomes = start_due_runs(engine, lambda job, ids, options: queued.append((job, ids)), now=utc("2026-07-10T03:00"))
    assert outcomes == [{"schedule": schedule_id, "root": str(folder), "date": "2026-07-10", "job": 1, "images": 4}]
    assert queued == [(1, [1, 2, 3, 4])]
    assert start_due_runs(engine, lambda *args: queued.append(args), now=utc("2026-07-10T05:00")) == []
    with engine.connect() as connection:
        job = connection.execute(select(Job.schedule_id, Job.options)).one()
    assert job.schedule_id == schedule_id and job.options["incremental"] is True
    assert list_schedules(engine)[0].last_job_id == 1

    # The next day the first run is still going: no second copy, and the day counts as handled.
    outcomes = start_due_runs(engine, lambda *args: queued.append(args), now=utc("2026-07-11T01:00"))
    assert outcomes[0]["skipped"] == f"job 1 over {folder} is still running" and len(queued) == 1
    engine.dispose()


def test_a_schedule_that_cannot_start_does_not_stop_the_others(folder, sqlite_url):
    engine = make_engine(sqlite_url)
    upgrade(engine)
    created = utc("2026-07-01T00:00")
    broken = add_schedule(engine, str(folder), "02:00", PARIS, {"model": "removed-model"}, created_at=created)
    working = add_schedule(engine, str(folder), "02:00", PARIS, {"model": "default"}, created_at=created)
    queued: list[int] = []
    outcomes = start_due_runs(engine, lambda job, ids, options: queued.append(job), now=utc("2026-07-10T03:00"))
    assert [o["schedule"] for o in outcomes] == [broken, working]
    assert "removed-model" in outcomes[0]["error"] and outcomes[1]["job"] == 1 and queued == [1]
    # The failed one is not marked as run today: the next check tries it again.
    assert [s.last_run_on for s in list_schedules(engine)] == [None, "2026-07-10"]
    engine.dispose()


def _wait(condition, timeout: float, message) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    pytest.fail(message())


@pytest.mark.slow
def test_beat_and_a_worker_run_a_due_schedule_by_themselves(folder, postgres_url, tmp_path):
    redis.Redis.from_url(BROKER_URL).flushdb()
    runner = CliRunner()
    if dt.datetime.now(dt.timezone.utc).second >= 55:
        time.sleep(6)  # the schedule's minute must not end before it is stored
    # A fixed-offset zone where it is about midday, so the run's local date cannot change under the test.
    now = dt.datetime.now(dt.timezone.utc)
    hours_behind = (now.hour - 12 + 12) % 24 - 12  # -12..11: Etc/GMT+N is N hours behind UTC
    zone = "UTC" if hours_behind == 0 else f"Etc/GMT{hours_behind:+d}"
    local = now.astimezone(ZoneInfo(zone))
    assert 6 <= local.hour <= 18, (zone, local)
    added = runner.invoke(fer, ["schedule", "add", str(folder), "--at", local.strftime("%H:%M"), "--timezone", zone,
                                "--db", postgres_url])
    assert added.exit_code == 0, added.output
    environment = {**os.environ, "FER_BROKER_URL": BROKER_URL, "FER_DATABASE_URL": postgres_url,
                   "FER_SCHEDULE_POLL_SECONDS": "1", "PYTHONUNBUFFERED": "1"}
    logs = {name: tmp_path / f"{name}.log" for name in ("worker", "beat")}
    commands = {
        "worker": ["worker", "--concurrency", "1", "--pool", "solo"],
        "beat": ["beat", "--schedule-file", str(tmp_path / "beat-state")],
    }
    processes = [
        subprocess.Popen([sys.executable, "-m", "cli.main", *commands[name]], cwd=REPO_ROOT, env=environment,
                         stdout=open(logs[name], "w"), stderr=subprocess.STDOUT, start_new_session=True)
        for name in commands
    ]
    engine = make_engine(postgres_url)

    def finished_jobs() -> list:
        with engine.connect() as connection:
            return connection.execute(select(Job.id, Job.status, Job.schedule_id)).all()

    def log_text() -> str:
        return "\n".join(f"--- {name}\n{path.read_text()[-3000:]}" for name, path in logs.items())

    try:
        _wait(lambda: [j.status for j in finished_jobs()] == ["finished"], 180, lambda: "no scheduled run finished:\n" + log_text())
        # Three more checks by beat, each run by the worker: still one run today.
        checks = logs["worker"].read_text().count("fer.run_schedules")
        _wait(lambda: logs["worker"].read_text().count("fer.run_schedules") >= checks + 6, 60,
              lambda: "beat stopped checking:\n" + log_text())
        jobs = finished_jobs()
        assert len(jobs) == 1 and jobs[0].schedule_id == 1
        with engine.connect() as connection:
            assert connection.scalar(select(func.count(Image.id)).where(Image.status == "done")) == 4
            assert connection.scalar(select(func.count(Face.id))) >= 3
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        engine.dispose()
        redis.Redis.from_url(BROKER_URL).flushdb()
