"""The library API: one `Archive` made from explicit settings, whose methods do what the commands do and return
plain data. Generated pictures (without faces) and SQLite in a temporary folder: no data, no servers."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from cli.main import fer
from cli.output import EXIT_PARTIAL
from tests.conftest import REPO_ROOT
from workers import Archive, JobOptions, NoSuchJob, PipelineError


@pytest.fixture
def pictures(tmp_path) -> Path:
    """Three pictures without faces, in two folders, and a file named like one that is not."""
    root = tmp_path / "pictures"
    (root / "trip").mkdir(parents=True)
    for index, name in enumerate(("a.png", "trip/b.png", "trip/c.jpg")):
        gradient = np.linspace(40 * index, 200, 96 * 128, dtype=np.float64).reshape(96, 128).astype(np.uint8)
        Image.fromarray(np.dstack([gradient] * 3)).save(root / name)
    (root / "notes.jpg").write_text("not a picture")
    return root


@pytest.fixture
def environment_elsewhere(tmp_path, monkeypatch) -> Path:
    """FER_DATABASE_URL and FER_BROKER_URL point elsewhere; the library must not look at them."""
    decoy = tmp_path / "from-environment.db"
    monkeypatch.setenv("FER_DATABASE_URL", f"sqlite:///{decoy}")
    monkeypatch.setenv("FER_BROKER_URL", os.environ.get("FER_TEST_BROKER_URL", "redis://127.0.0.1:6379/11"))
    yield decoy
    assert not decoy.exists()


@pytest.fixture
def archive(tmp_path, environment_elsewhere):
    with Archive(f"sqlite:///{tmp_path / 'fer.db'}") as archive:
        yield archive


class Recorder:
    def __init__(self):
        self.started: list[tuple[int, str]] = []
        self.advanced = 0

    def start(self, total: int, description: str) -> None:
        self.started.append((total, description))

    def advance(self, images: int, description: str) -> None:
        self.advanced += images


def test_annotate_report_export_and_query_return_plain_data(archive, pictures, tmp_path):
    progress = Recorder()
    summary = archive.annotate([pictures], processes=1, progress=progress)
    assert summary["images"] == {"total": 4, "done": 3, "failed": 1, "pending": 0}
    assert summary["failed_files"] == [{"path": str(pictures / "notes.jpg"),
                                         "error": "not an image, or a format this tool does not read"}]
    assert json.loads(json.dumps(summary)) == summary
    assert progress.started == [(4, "job 1: loading model default and detector haar-verified ...")] and progress.advanced == 4
    assert archive.report() == {key: value for key, value in summary.items()
                                if key not in ("seconds", "stage_seconds", "skipped_files")}
    rows = archive.report(by="folder")["rows"]
    assert [(row["folder"], row["images"]) for row in rows] == [(str(pictures), 1), (str(pictures / "trip"), 2)]
    failed = io.StringIO()
    assert archive.export(failed, failed=True) == 1
    assert failed.getvalue().splitlines() == ["path,error", f'{pictures / "notes.jpg"},"not an image, or a format this '
                                              'tool does not read"']
    assert archive.export(tmp_path / "faces.jsonl", format="jsonl") == 0 and (tmp_path / "faces.jsonl").exists()
    assert archive.query("SELECT status, COUNT(*) FROM images GROUP BY status ORDER BY status").rows == \
        [("done", 3), ("failed", 1)]


def test_the_engine_is_made_once_per_process_from_the_one_url(archive, pictures, monkeypatch):
    import db.session

    made: list[str] = []
    make_engine = db.session.make_engine
    monkeypatch.setattr(db.session, "make_engine", lambda url: made.append(url) or make_engine(url))
    archive.annotate([pictures], processes=1)  # detection in a thread of this process: it writes through it too
    archive.report(by="day")
    archive.status()
    archive.export(io.StringIO())
    archive.annotate([pictures], processes=1)
    assert made == [archive.database_url]


def test_after_a_run_that_changed_nothing_the_library_shows_the_whole_archive(archive, pictures):
    first = archive.annotate([pictures], processes=1)
    quiet = archive.annotate([pictures], processes=1)
    assert quiet["images"]["total"] == 0 and quiet["changes"]["unchanged"] == 4
    view = archive.annotate([pictures], processes=1, whole_archive_if_quiet=True)
    assert view["archive"] and view["latest_run"]["job"] == 3 and view["images"]["done"] == 3
    assert archive.report()["archive"] and archive.report()["latest_run"]["job"] == 3
    assert archive.report(first["job"])["job"] == first["job"]
    state = archive.status()
    assert state.ended and state.summary["job"] == 3 and state.archive["images"]["done"] == 3 and state.refused is None
    assert archive.status(first["job"]).archive is None
    assert archive.report(whole_archive=True)["model"] == archive.report()["model"]


def test_bad_input_is_refused_before_anything_is_recorded(tmp_path, pictures, environment_elsewhere):
    archive = Archive(f"sqlite:///{tmp_path / 'fer.db'}")
    with pytest.raises(PipelineError, match="unknown detector 'nope'"):
        archive.annotate([pictures], JobOptions(detector="nope"))
    with pytest.raises(PipelineError, match="no such file or directory"):
        archive.annotate([tmp_path / "missing"])
    with pytest.raises(PipelineError, match="--retry-failed is for incremental runs"):
        archive.annotate([pictures], JobOptions(incremental=False, retry_failed=True))
    assert not (tmp_path / "fer.db").exists()
    with pytest.raises(PipelineError, match=r"cannot reach the broker at redis://127.0.0.1:1/0"):
        Archive(archive.database_url, broker_url="redis://127.0.0.1:1/0").submit([pictures])
    assert archive.query("SELECT COUNT(*) FROM jobs").rows == [(0,)]
    with pytest.raises(NoSuchJob, match="no jobs yet"):
        archive.cancel()
    with pytest.raises(PipelineError, match="breaks faces down by"):
        archive.report(by="week")
    with pytest.raises(PipelineError, match="give one of them"):
        archive.report(1, whole_archive=True)
    with pytest.raises(PipelineError, match="database URL 'fer.db' is not a URL"):
        Archive("fer.db").annotate([pictures])


def test_calls_that_read_refuse_a_missing_database_and_create_nothing(tmp_path):
    missing = tmp_path / "nowhere" / "fer.db"
    archive = Archive(f"sqlite:///{missing}")
    calls = [archive.status, archive.report, archive.schedules, archive.cancel, lambda: archive.export(io.StringIO()),
             lambda: archive.query("SELECT 1"), lambda: archive.retry(1), lambda: archive.compare("a", "b")]
    for call in calls:
        with pytest.raises(PipelineError, match=f"no database at {missing}"):
            call()
    assert not (tmp_path / "nowhere").exists()


def test_schedules_are_added_listed_and_removed(archive, pictures):
    added = archive.add_schedule(pictures, "2:30", timezone="Europe/Paris", options=JobOptions(min_face="2%"))
    assert (added.root, added.at, added.timezone, added.model) == (str(pictures), "02:30", "Europe/Paris", "default")
    assert str(added.next_run.tzinfo) == "Europe/Paris" and added.last_job_id is None
    assert archive.schedules() == [added]
    stored = json.loads(archive.query("SELECT options FROM schedules").rows[0][0])
    assert stored["min_face"] == "2%" and stored["incremental"] is True and stored["allowed_roots"] == [str(pictures)]
    with pytest.raises(PipelineError, match="--at must be a time of day"):
        archive.add_schedule(pictures, "25:00")
    archive.remove_schedule(added.id)
    assert archive.schedules() == []
    with pytest.raises(PipelineError, match=f"no schedule {added.id}"):
        archive.remove_schedule(added.id)


def test_a_quiet_run_over_files_that_failed_before_exits_0_and_shows_the_whole_archive(pictures, tmp_path):
    url = f"sqlite:///{tmp_path / 'fer.db'}"
    first = CliRunner().invoke(fer, ["annotate", str(pictures), "--db", url, "--processes", "1"])
    assert first.exit_code == EXIT_PARTIAL, first.output
    quiet = CliRunner().invoke(fer, ["annotate", str(pictures), "--db", url, "--processes", "1"])
    assert quiet.exit_code == 0, quiet.output
    flat = " ".join(quiet.output.split())
    assert "The latest run (job 2, finished) changed nothing: 4 unchanged, 0 missing. The whole archive:" in flat
    assert "Failed, and not changed since (1;" in flat


def test_importing_the_workers_package_does_not_load_the_library_api():
    """Detection processes and `fer --help` import parts of workers; the API loads when it is used."""
    code = ("import sys, workers.vision.detection, workers.jobs.options; "
            "print(sorted(m for m in ('workers.archive', 'sqlalchemy', 'celery') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"


def readme_python_example() -> str:
    """The code block of the README's "Python API" section, exactly as a reader copies it."""
    text = (REPO_ROOT / "README.md").read_text()
    section = text[text.index("### Python API"):]
    start = section.index("```python\n") + len("```python\n")
    return section[start:section.index("```", start)]


@pytest.mark.slow
def test_the_readme_python_example_runs(photos_dir, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for photo in sorted(photos_dir.glob("*.jpg"))[:4]:
        (photos / photo.name).write_bytes(photo.read_bytes())
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    environment.pop("FER_DATABASE_URL", None)
    run = subprocess.run([sys.executable, "-c", readme_python_example()], cwd=tmp_path, env=environment,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    archive = Archive(f"sqlite:///{tmp_path / 'fer.db'}")
    faces = archive.query("SELECT COUNT(*) FROM faces").rows[0][0]
    assert archive.report()["images"]["done"] == 4 and faces >= 4
    assert len((tmp_path / "faces.csv").read_text().splitlines()) == faces + 1
    assert str(photos) in run.stdout  # the folder rows it prints
