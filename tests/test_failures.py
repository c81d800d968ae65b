"""Failures a new user meets: each is visible, recoverable and one line long, and jobs never hang.

Real SQLite and PostgreSQL databases, a real Redis, real `fer annotate` runs over real photos.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner
from sqlalchemy import func, select

from cli.main import fer
from cli.output import EXIT_NOT_STARTED, EXIT_PARTIAL
from db.models import Image as ImageRow
from db.models import Job
from db.reads import database_identity, image_ids
from db.session import make_engine
from db.writes import create_job
from fer_model.registry import default_model_name
from tests.conftest import REPO_ROOT
from workers.jobs.options import JobOptions
from workers.queue import celery_app

BROKER_URL = os.environ.get("FER_TEST_BROKER_URL", "redis://127.0.0.1:6379/11")
NOT_A_PICTURE = "not an image, or a format this tool does not read"


def run(*arguments: str, **kwargs) -> object:
    result = CliRunner().invoke(fer, list(arguments), **kwargs)
    assert "Traceback" not in result.output, result.output
    return result


def json_report(output: str) -> dict:
    return json.loads(output[output.index("{"):])


@pytest.fixture(scope="module")
def two_photos(tmp_path_factory, photos_dir) -> Path:
    folder = tmp_path_factory.mktemp("two") / "photos"
    folder.mkdir()
    for photo in sorted(photos_dir.glob("*.jpg"))[:2]:
        shutil.copy(photo, folder / photo.name)
    return folder


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'db' / 'fer.db'}"


def job_row(url: str, job_id: int):
    engine = make_engine(url)
    with engine.connect() as connection:
        row = connection.execute(select(Job.status, Job.error).where(Job.id == job_id)).one()
    engine.dispose()
    return tuple(row)


def job_count(url: str) -> int:
    engine = make_engine(url)
    with engine.connect() as connection:
        count = connection.scalar(select(func.count(Job.id)))
    engine.dispose()
    return count


# --- jobs never hang in "running" ---------------------------------------------------------------

@pytest.mark.skipif(importlib.util.find_spec("mtcnn") is not None, reason="mtcnn is installed here")
def test_an_uninstalled_detector_is_refused_before_a_job_exists(two_photos, sqlite_url, tmp_path):
    result = run("annotate", str(two_photos), "--detector", "mtcnn", "--db", sqlite_url)
    assert result.exit_code == 1
    assert result.output == ("Error: detector 'mtcnn' needs the mtcnn package, which is not installed (pip install "
                             "mtcnn); available: haar-verified, haar, haar-fine, haar-alt2\n")
    assert not (tmp_path / "db").exists()  # no database, no job
    help_text = run("annotate", "--help").output
    assert "Face detector: haar-verified, haar, haar-fine, haar-alt2." in " ".join(help_text.split())
    assert "mtcnn" not in help_text


def test_a_job_whose_detector_cannot_run_fails_with_its_reason_and_retry_changes_the_detector(two_photos, sqlite_url):
    assert run("db", "upgrade", "--db", sqlite_url).exit_code == 0
    engine = make_engine(sqlite_url)
    paths = sorted(str(p) for p in two_photos.iterdir())
    options = {"model": "seed", "detector": "no-such-detector", "allowed_roots": [str(two_photos)], "chunk_size": 32,
               "incremental": True}
    job = create_job(engine, [str(two_photos)], options, paths)
    result = run("retry", str(job), "--local", "--processes", "1", "--db", sqlite_url)
    assert result.exit_code == 1
    error_line = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert error_line == [f"Error: job {job} failed: unknown detector 'no-such-detector'; available: haar-verified, haar, haar-fine, haar-alt2. "
                          f"It keeps what was finished; fix the cause and finish it with `fer retry {job} --local` "
                          "(it takes --detector, --model, --min-face)"]
    assert job_row(sqlite_url, job) == ("failed", "unknown detector 'no-such-detector'; available: haar-verified, haar, haar-fine, haar-alt2")
    status = run("status", str(job), "--db", sqlite_url)
    assert status.output.startswith(f"job {job}: failed; 0/2 images")
    # A failed job does not block the next run over the same folder ...
    fresh = run("annotate", str(two_photos), "--db", sqlite_url, "--processes", "1", "--format", "json")
    assert fresh.exit_code == 0, fresh.output
    # ... and retry can change the option that made it fail.
    fixed = run("retry", str(job), "--local", "--detector", "haar", "--processes", "1", "--db", sqlite_url)
    assert fixed.exit_code == 0, fixed.output
    assert job_row(sqlite_url, job) == ("finished", None)
    engine.dispose()


def test_an_error_inside_a_run_ends_the_job_as_failed_in_one_line(two_photos, sqlite_url, monkeypatch):
    import workers.chunks.local
    import workers.chunks.work

    def broken_classifier(name, *backend):
        raise OSError("the model file went away")

    monkeypatch.setattr(workers.chunks.work, "get_classifier", broken_classifier)
    monkeypatch.setattr(workers.chunks.local, "get_classifier", broken_classifier)
    result = run("annotate", str(two_photos), "--db", sqlite_url, "--processes", "1")
    assert result.exit_code == 1
    assert result.output.splitlines()[-1].startswith("Error: job 1 failed: OSError: the model file went away.")
    assert job_row(sqlite_url, 1) == ("failed", "OSError: the model file went away")
    monkeypatch.undo()
    again = run("annotate", str(two_photos), "--db", sqlite_url, "--processes", "1", "--format", "json")
    assert again.exit_code == 0 and json_report(again.output)["job"] == 2


def test_a_chunk_a_worker_cannot_run_ends_its_job_as_failed(two_photos, sqlite_url, monkeypatch):
    from workers.queue.tasks import annotate_chunk
    from workers.vision.detection import UnknownDetector

    assert run("db", "upgrade", "--db", sqlite_url).exit_code == 0
    engine = make_engine(sqlite_url)
    options = {"model": "seed", "detector": "no-such-detector", "allowed_roots": [str(two_photos)]}
    job = create_job(engine, [str(two_photos)], options, sorted(str(p) for p in two_photos.iterdir()))
    monkeypatch.setattr(celery_app.settings, "database_url", sqlite_url)  # as `fer worker --db` sets it
    with pytest.raises(UnknownDetector):
        annotate_chunk.run(job, image_ids(engine, job), options, database_id=database_identity(engine))
    assert job_row(sqlite_url, job) == ("failed", "unknown detector 'no-such-detector'; available: haar-verified, haar, haar-fine, haar-alt2")
    engine.dispose()


def test_cancel_ends_a_queued_job_and_its_pending_images_are_not_processed(two_photos, sqlite_url):
    from workers.chunks.work import process_chunk

    assert run("db", "upgrade", "--db", sqlite_url).exit_code == 0
    engine = make_engine(sqlite_url)
    options = {"model": "seed", "allowed_roots": [str(two_photos)], "incremental": True}
    job = create_job(engine, [str(two_photos)], options, sorted(str(p) for p in two_photos.iterdir()))
    ids = image_ids(engine, job)
    result = run("cancel", str(job), "--db", sqlite_url)
    assert result.exit_code == 0
    assert result.output == f"Job {job} cancelled (it was pending); `fer retry {job}` reopens it\n"
    assert process_chunk(sqlite_url, job, ids, JobOptions.from_dict(options))["images"] == 0
    assert image_ids(engine, job) == ids  # still pending, untouched
    assert job_row(sqlite_url, job) == ("cancelled", "cancelled with `fer cancel`")
    assert run("cancel", str(job), "--db", sqlite_url).output == f"Job {job} is already cancelled; nothing to cancel\n"
    assert run("cancel", "99", "--db", sqlite_url).output == "Error: no job 99\n"
    engine.dispose()


@pytest.mark.slow
def test_cancel_takes_the_jobs_queued_chunks_off_the_queue_and_leaves_the_others(two_photos, tmp_path, sqlite_url,
                                                                                broker):
    from workers.jobs.options import JobOptions
    from workers.queue.queueing import queue_chunks_for

    assert run("db", "upgrade", "--db", sqlite_url).exit_code == 0
    engine = make_engine(sqlite_url)
    jobs = []
    for copy in range(3):  # three folders: unfinished jobs over one folder would be refused as overlapping runs
        folder = tmp_path / f"copy{copy}"
        shutil.copytree(two_photos, folder)
        options = {"model": "seed", "allowed_roots": [str(folder)], "incremental": True, "chunk_size": 1}
        job = create_job(engine, [str(folder)], options, sorted(str(p) for p in folder.iterdir()))
        queue_chunks_for(engine, BROKER_URL)(job, image_ids(engine, job), JobOptions.from_dict(options))
        jobs.append(job)
    queued = [json.loads(raw) for raw in broker.lrange("celery", 0, -1)]
    assert len(queued) == 6
    for message in queued:  # the arguments once, in the body; a short description in the headers
        job, ids, _ = json.loads(base64.b64decode(message["body"]))[0]
        assert message["headers"]["argsrepr"] == f"(job {job}, 1 image id)"
        assert "argsrepr" not in message["properties"] and str(ids) not in json.dumps(message["headers"])

    result = run("cancel", str(jobs[0]), "--broker", BROKER_URL, "--db", sqlite_url)
    assert result.exit_code == 0
    assert " ".join(result.output.split()) == (f"Job {jobs[0]} cancelled (it was pending); 2 queued chunks taken off "
                                               f"the queue; `fer retry {jobs[0]}` reopens it")
    left = [json.loads(raw) for raw in broker.lrange("celery", 0, -1)]
    assert left == [message for message in queued if message["headers"]["fer_job"].split(":")[1] != str(jobs[0])]
    assert job_row(sqlite_url, jobs[0]) == ("cancelled", "cancelled with `fer cancel`")

    unreachable = run("cancel", str(jobs[1]), "--broker", "redis://127.0.0.1:1/0", "--db", sqlite_url)
    assert unreachable.exit_code == 0
    flat = " ".join(unreachable.output.split())
    assert flat.startswith(f"Job {jobs[1]} cancelled (it was pending); `fer retry {jobs[1]}` reopens it Its chunks stay "
                           "in the queue: cannot reach the broker at redis://127.0.0.1:1/0")
    assert flat.endswith("workers drop them as they reach them")
    assert job_row(sqlite_url, jobs[1])[0] == "cancelled" and broker.llen("celery") == 4
    again = run("cancel", str(jobs[1]), "--broker", BROKER_URL, "--db", sqlite_url)
    assert " ".join(again.output.split()) == (f"Job {jobs[1]} is already cancelled; nothing to cancel; 2 queued chunks "
                                              "taken off the queue")
    assert broker.llen("celery") == 2
    engine.dispose()


# --- exit codes and failed files ----------------------------------------------------------------

@pytest.fixture(scope="module")
def partly_failing(tmp_path_factory, photos_dir):
    """One photo and twelve files that are not pictures, annotated once."""
    folder = tmp_path_factory.mktemp("partly") / "archive"
    folder.mkdir()
    shutil.copy(sorted(photos_dir.glob("*.jpg"))[0], folder / "photo.jpg")
    for index in range(12):
        (folder / f"bad{index:02d}.jpg").write_text("not a picture")
    url = f"sqlite:///{folder.parent / 'fer.db'}"
    result = run("annotate", str(folder), "--db", url, "--processes", "1", "--format", "json")
    return folder, url, result


def test_annotate_exits_23_when_some_images_failed_and_lists_them_all_in_json(partly_failing):
    folder, _, result = partly_failing
    assert result.exit_code == EXIT_PARTIAL == 23
    report = json_report(result.output)
    assert report["failed_files"] == [{"path": str(folder / f"bad{i:02d}.jpg"), "error": NOT_A_PICTURE} for i in range(12)]


def test_the_table_report_lists_the_first_failed_files_and_counts_the_rest(partly_failing):
    folder, url, _ = partly_failing
    result = run("report", "--db", url)
    assert result.exit_code == 0
    flat = " ".join(result.output.split())
    assert "Failed (12):" in flat
    for index in range(10):
        assert f"{folder / f'bad{index:02d}.jpg'}: {NOT_A_PICTURE}" in flat
    assert str(folder / "bad10.jpg") not in flat
    assert "... and 2 more: `fer export 1 --failed -o failed.csv` or --format json lists them all" in flat


def test_export_failed_writes_every_failed_file_and_export_defaults_to_the_latest_job(partly_failing, tmp_path):
    folder, url, _ = partly_failing
    out = tmp_path / "failed.csv"
    result = run("export", "--failed", "-o", str(out), "--db", url)
    assert result.exit_code == 0 and "Wrote 12 failed files" in result.output
    lines = out.read_text().splitlines()
    assert lines[0] == "path,error" and len(lines) == 13
    assert lines[1] == f"{folder / 'bad00.jpg'},\"{NOT_A_PICTURE}\""
    faces = tmp_path / "faces.csv"
    assert run("export", "-o", str(faces), "--db", url).exit_code == 0
    assert faces.read_text().startswith("path,job_id,")


def test_everything_annotated_exits_0(two_photos, sqlite_url):
    assert run("annotate", str(two_photos), "--db", sqlite_url, "--processes", "1").exit_code == 0


# --- settings typed wrong -----------------------------------------------------------------------

BAD_URLS = {
    "fer.db": "is not a URL: for a SQLite file write sqlite:///",
    "foo://somewhere/db": "unknown kind of database 'foo'",
    "mysql://me:secret@dbhost/fer": "mysql is not supported",
    "postgresql+asyncpg://dbhost/fer": "its driver (asyncpg) is not installed",
    "://garbage": "is not a valid URL",
}
COMMANDS = [
    ["annotate", "{folder}"], ["submit", "{folder}"], ["retry", "1"], ["cancel", "1"], ["status"], ["report"],
    ["export", "-o", "{tmp}/out.csv"], ["query", "SELECT 1"], ["db", "upgrade"], ["schedule", "add", "{folder}", "--at", "02:00"],
    ["schedule", "list"], ["schedule", "remove", "1"], ["worker"], ["beat"],
]


@pytest.mark.parametrize("url", list(BAD_URLS))
def test_every_command_says_in_one_line_what_is_wrong_with_the_database_url(url, two_photos, tmp_path, monkeypatch):
    monkeypatch.setenv("FER_BROKER_URL", BROKER_URL)
    for command in COMMANDS:
        arguments = [a.format(folder=two_photos, tmp=tmp_path) for a in command]
        result = run(*arguments, "--db", url)
        assert result.exit_code == 1, (command, result.output)
        lines = result.output.splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: database URL"), (command, result.output)
        assert BAD_URLS[url] in lines[0] and "postgresql+psycopg://user@dbhost/fer" in lines[0], (command, lines)
        assert "secret" not in lines[0]
    monkeypatch.setenv("FER_DATABASE_URL", url)
    assert BAD_URLS[url] in run("status").output


@pytest.mark.parametrize("command", [["status"], ["report"], ["export", "-o", "{tmp}/x.csv"], ["query", "SELECT 1"]])
def test_read_only_commands_do_not_create_a_missing_sqlite_database(command, tmp_path):
    missing = tmp_path / "nowhere" / "fer.db"
    result = run(*[a.format(tmp=tmp_path) for a in command], "--db", f"sqlite:///{missing}")
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: no database at {missing}: annotate something first")
    assert not (tmp_path / "nowhere").exists()


def test_submit_worker_and_status_take_broker_and_name_the_variable_and_default(two_photos, sqlite_url):
    for command in (["submit", "--help"], ["worker", "--help"], ["retry", "--help"], ["status", "--help"]):
        flat = " ".join(run(*command).output.split())
        assert "--broker TEXT Celery broker URL" in flat, command
        assert "(default: $FER_BROKER_URL, else redis://localhost:6379/0)." in flat, command
    result = run("submit", str(two_photos), "--broker", "redis://127.0.0.1:1/0", "--db", sqlite_url)
    assert result.exit_code == 1 and "cannot reach the broker at redis://127.0.0.1:1/0" in result.output


@pytest.fixture
def broker(monkeypatch):
    client = redis.Redis.from_url(BROKER_URL)
    client.flushdb()
    monkeypatch.setenv("FER_BROKER_URL", BROKER_URL)
    yield client
    client.flushdb()


@pytest.mark.slow
def test_status_wait_says_when_no_worker_consumes_the_queue(two_photos, sqlite_url, broker, monkeypatch):
    submitted = run("submit", str(two_photos), "--db", sqlite_url)
    assert submitted.exit_code == 0, submitted.output
    monkeypatch.setenv("FER_NO_WORKER_SECONDS", "0")
    result = run("status", "--wait", "--timeout", "3", "--db", sqlite_url)
    assert result.exit_code == EXIT_NOT_STARTED
    flat = " ".join(result.output.split())
    assert f"No worker seems to be consuming the queue at {BROKER_URL}" in flat
    assert "Start one with `fer worker`, or finish the job here with `fer retry 1 --local`." in flat
    assert "Error: job 1 has not finished after 3 s" in flat


def _queued_messages(client) -> list[dict]:
    messages = []
    for raw in client.lrange("celery", 0, -1):
        envelope = json.loads(raw)
        messages.append(json.loads(base64.b64decode(envelope["body"])))
    return messages


@pytest.mark.slow
def test_each_database_has_an_identity_that_every_task_carries_and_workers_check(two_photos, tmp_path, postgres_url,
                                                                                  broker, monkeypatch):
    import workers.queue.tasks
    from celery.exceptions import Reject

    from workers.queue.refusals import refusal
    from workers.queue.tasks import annotate_chunk

    monkeypatch.setattr(workers.queue.tasks, "REFUSED_TASK_PAUSE", 0)
    submitter = f"sqlite:///{tmp_path / 'submitter.db'}"
    assert run("db", "upgrade", "--db", submitter).exit_code == 0
    assert run("db", "upgrade", "--db", postgres_url).exit_code == 0
    ours, theirs = database_identity(make_engine(submitter)), database_identity(make_engine(postgres_url))
    assert re.fullmatch(r"[0-9a-f-]{36}", ours) and ours != theirs
    assert run("submit", str(two_photos), "--db", submitter).exit_code == 0
    (args, kwargs, _), = _queued_messages(broker)
    assert args[0] == 1 and kwargs == {"database_id": ours}
    # A worker on the other database (which has its own job 1) refuses the task and writes nothing; the chunk goes
    # back to the queue (Reject with requeue) for a worker on the submitter's database, and a note on the broker
    # says why the job does not move.
    engine = make_engine(postgres_url)
    other_job = create_job(engine, [str(two_photos)], {"model": "seed", "allowed_roots": [str(two_photos)]},
                           sorted(str(p) for p in two_photos.iterdir()))
    # A worker started with --db postgres_url on the submitter's broker.
    monkeypatch.setattr(celery_app.settings, "database_url", postgres_url)
    monkeypatch.setattr(celery_app.app.conf, "broker_url", BROKER_URL)
    with pytest.raises(Reject, match=f"task for database {ours} refused: this worker writes to") as refused:
        annotate_chunk.run(*args, **kwargs)
    assert refused.value.requeue is True
    with engine.connect() as connection:
        assert set(connection.scalars(select(ImageRow.status).where(ImageRow.job_id == other_job))) == {"pending"}
    engine.dispose()
    note = refusal(BROKER_URL, ours, 1)
    assert note["database"] == make_engine(postgres_url).url.render_as_string(hide_password=True)
    status = run("status", "1", "--db", submitter)
    assert "Not moving: a worker connected to another database refused this job's tasks" in " ".join(status.output.split())


def test_query_says_a_misspelt_statement_is_not_valid_sql(annotated_sqlite):
    result = run("query", "SELEC * FROM faces", "--db", annotated_sqlite)
    assert result.exit_code == 1
    assert result.output == "Error: not valid SQL: a statement cannot start with SELEC (did you mean SELECT?)\n"
    assert "read-only" in run("query", "DELETE FROM faces", "--db", annotated_sqlite).output


# --- reports after a quiet night ----------------------------------------------------------------

def test_after_a_run_that_changed_nothing_report_and_status_show_the_whole_archive(two_photos, sqlite_url):
    first = json_report(run("annotate", str(two_photos), "--db", sqlite_url, "--processes", "1", "--format", "json").output)
    quiet = run("annotate", str(two_photos), "--db", sqlite_url, "--processes", "1")
    assert quiet.exit_code == 0
    report = run("report", "--db", sqlite_url)
    flat = " ".join(report.output.split())
    assert "Whole archive" in flat
    assert "The latest run (job 2, finished) changed nothing: 2 unchanged, 0 missing. The whole archive:" in flat
    model = f"{first['model']['name']} {first['model']['version']}"
    assert f"2 images (each file's latest annotation by {model}), {first['faces']} face" in flat
    as_json = json.loads(run("report", "--all", "--format", "json", "--db", sqlite_url).output)
    assert as_json["images"]["done"] == 2 and as_json["faces"] == first["faces"] and as_json["latest_job"] == 2
    assert as_json["emotions"] == first["emotions"]
    assert [(m["name"], m["images"], m["faces"]) for m in as_json["models"]] == [(default_model_name(), 2, first["faces"])]
    status = run("status", "--db", sqlite_url).output
    assert status.splitlines()[0] == "job 2: finished; 0/0 images (0 done, 0 failed, 0 pending), 0 faces (2 unchanged, 0 missing)"
    assert status.splitlines()[1].startswith(f"Whole archive ({model}): 2 images annotated, {first['faces']} face")


def test_the_query_help_example_counts_each_image_once_after_a_rerun(two_photos, sqlite_url):
    first = json_report(run("annotate", str(two_photos), "--db", sqlite_url, "--processes", "1", "--format", "json").output)
    assert run("annotate", str(two_photos), "--reannotate", "--db", sqlite_url, "--processes", "1").exit_code == 0
    help_text = run("query", "--help").output
    example = re.search(r'fer query "(SELECT model.*?)"', help_text, flags=re.DOTALL).group(1)
    rows = json.loads(run("query", " ".join(example.split()), "--format", "json", "--db", sqlite_url).output)
    assert sum(row["faces"] for row in rows) == first["faces"]
    assert {row["label"]: row["faces"] for row in rows} == {k: v for k, v in first["emotions"].items() if v}


# --- quiet, responsive output -------------------------------------------------------------------

@pytest.mark.slow
def test_a_real_annotate_shows_model_loading_and_no_tensorflow_lines(two_photos, tmp_path):
    env = {key: value for key, value in os.environ.items() if not key.startswith(("TF_", "GRPC_", "GLOG_"))}
    env.update(TTY_COMPATIBLE="1", TTY_INTERACTIVE="1", COLUMNS="120")
    completed = subprocess.run(
        [sys.executable, "-m", "cli.main", "annotate", str(two_photos), "--db", f"sqlite:///{tmp_path / 'fer.db'}",
         "--processes", "2", "--chunk-size", "1"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr
    assert "job 1: loading model default and detector haar-verified ..." in completed.stdout
    noise = [line for line in completed.stderr.splitlines()
             if re.match(r"[IWEF]\d{4} |WARNING: All log messages|.*(tensorflow|absl|oneDNN|cpu_feature_guard)", line)]
    assert noise == [] and completed.stderr == ""


def test_small_wording_and_layout(two_photos, photos_dir, tmp_path):
    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(sorted(photos_dir.glob("*.jpg"))[0], one / "a.jpg")
    url = f"sqlite:///{tmp_path / 'fer.db'}"
    first = run("annotate", str(one), "--db", url, "--processes", "1")
    flat = " ".join(first.output.split())
    assert "1 image annotated: 1 done, 0 failed, 0 pending; 1 face;" in flat
    assert "Changes:" not in flat  # a first run has nothing to compare with
    by_folder = run("report", "--by", "folder", "--db", url, terminal_width=80)
    lines = by_folder.output.splitlines()
    assert max(len(line) for line in lines) <= 80
    header = next(index for index, line in enumerate(lines) if line.split()[:1] == ["folder"])
    assert set(lines[header + 1].strip()) == {"─"}  # the header row fits on one line: no name wrapped
    assert lines[header].split() == ["folder", "images", "faces", "ang", "dis", "fea", "hap", "neu", "sad", "sur"]
    since_help = " ".join(run("report", "--help").output.split())
    assert "--since DATE" in since_help and "%Y" not in since_help
    evaluate_help = " ".join(run("model", "evaluate", "--help").output.split())
    assert "[default: val]" in evaluate_help
    missing = run("model", "evaluate", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "o"))
    assert missing.output == f"Error: {tmp_path / 'missing'}: no such file or directory\n"


# --- symbolic links -----------------------------------------------------------------------------

@pytest.fixture
def linked_folder(tmp_path, photos_dir) -> Path:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(sorted(photos_dir.glob("*.jpg"))[0], elsewhere / "far.jpg")
    folder = tmp_path / "album"
    folder.mkdir()
    shutil.copy(sorted(photos_dir.glob("*.jpg"))[1], folder / "own.jpg")
    (folder / "far.jpg").symlink_to(elsewhere / "far.jpg")
    (folder / "loop").symlink_to(folder, target_is_directory=True)
    return folder


def test_links_out_of_the_folder_are_refused_with_the_cause_and_loops_are_counted_as_skipped(linked_folder, tmp_path):
    url = f"sqlite:///{tmp_path / 'fer.db'}"
    result = run("annotate", str(linked_folder), "--db", url, "--processes", "1", "--format", "json")
    assert result.exit_code == EXIT_PARTIAL
    report = json_report(result.output)
    far = tmp_path / "elsewhere" / "far.jpg"
    assert report["failed_files"] == [{
        "path": str(linked_folder / "far.jpg"),
        "error": f"refused: symbolic link to {far}, outside the allowed roots (links are not followed out of the "
                 "folders given; pass --follow-symlinks to follow them, within the worker's FER_ALLOWED_ROOTS)",
    }]
    assert report["files_skipped"] == 1
    assert report["skipped_files"] == [
        {"path": str(linked_folder / "loop"), "reason": "symbolic link loop (a link to a folder that holds it)"},
    ]
    table = " ".join(run("report", "--db", url).output.split())
    assert "Skipped 1 entry that is not an image file" in table


def test_follow_symlinks_reads_links_within_the_workers_allowed_roots(linked_folder, tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'fer.db'}"
    result = run("annotate", str(linked_folder), "--follow-symlinks", "--db", url, "--processes", "1", "--format", "json")
    assert result.exit_code == 0, result.output
    assert json_report(result.output)["images"] == {"total": 2, "done": 2, "failed": 0, "pending": 0}
    monkeypatch.setenv("FER_ALLOWED_ROOTS", str(linked_folder))
    again = run("annotate", str(linked_folder), "--follow-symlinks", "--reannotate", "--db", url, "--processes", "1",
                "--format", "json")
    assert again.exit_code == EXIT_PARTIAL
    assert json_report(again.output)["failed_files"] == [{
        "path": str(linked_folder / "far.jpg"),
        "error": f"refused: symbolic link to {tmp_path / 'elsewhere' / 'far.jpg'}, outside the worker's FER_ALLOWED_ROOTS",
    }]
