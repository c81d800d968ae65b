"""The small things of the command line: 80-column tables that never cut a name, numbers and plurals,
the next step named, help texts that agree with the errors, and commands that refuse what could hurt."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy.orm import Session

from cli.main import fer
from cli.report_output import changes_line, status_line
from db.models import Image, Job
from db.schedules import ScheduleRow, next_run
from db.session import make_engine, upgrade

# Each name fits the folder column at 80 columns; the whole path does not.
LONG_FOLDER = "/photos/holidays-in-the-alps-2019/second-week-with-family"
LONG_FILE = "a-long-file-name-for-one-photo.jpg"


def run(*arguments: str, width: int = 80):
    result = CliRunner().invoke(fer, list(arguments), terminal_width=width)
    assert "Traceback" not in result.output, result.output
    return result


def test_model_list_fits_80_columns_without_cutting_a_name():
    output = run("model", "list").output
    lines = output.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "…" not in output
    default = json.loads(run("model", "list", "--format", "json").output)
    starred = [row["name"] for row in default if row["default"]][0]
    assert any(re.match(rf"\s*{re.escape(starred)} \*\s", line) for line in lines), output  # the star beside the name


@pytest.fixture
def long_paths_db(tmp_path) -> str:
    """A job whose done images have long folder and file names and a fractional modification time."""
    url = f"sqlite:///{tmp_path / 'fer.db'}"
    engine = make_engine(url)
    upgrade(engine)
    with Session(engine) as session:
        job = Job(roots=["/photos"], options={"model": "seed"}, status="finished")
        session.add_all([job, Image(job=job, path=f"{LONG_FOLDER}/{LONG_FILE}", status="done", mtime=1_600_000_000.123456),
                         Image(job=job, path="/photos/short.jpg", status="done", mtime=1_600_000_000.0)])
        session.commit()
    engine.dispose()
    return url


def _names_intact(output: str, names: list[str]) -> None:
    for name in names:
        assert name in output, (name, output)


def test_query_breaks_paths_only_after_a_slash_and_rounds_decimals(long_paths_db):
    output = run("query", "SELECT path, mtime, 1.0 / 3 AS third FROM images ORDER BY path", "--db", long_paths_db).output
    assert max(len(line) for line in output.splitlines()) <= 80
    _names_intact(output, [*LONG_FOLDER.strip("/").split("/"), LONG_FILE])
    assert "0.3333 " in output and "0.33333" not in output and "1600000000.1235" in output
    assert "decimals rounded to 4 places (--format csv or json gives every digit)" in " ".join(output.split())
    as_csv = run("query", "SELECT 1.0 / 3 AS third", "--format", "csv", "--db", long_paths_db).output
    assert as_csv.splitlines()[1].startswith("0.33333333")


def test_report_by_folder_breaks_folders_only_after_a_slash(long_paths_db):
    output = run("report", "--by", "folder", "--db", long_paths_db).output
    assert max(len(line) for line in output.splitlines()) <= 80
    _names_intact(output, LONG_FOLDER.strip("/").split("/"))


def test_numbers_have_thousands_separators_and_words_their_plural():
    summary = {"job": 7, "status": "finished", "faces": 1055, "error": None, "changes": {},
               "images": {"total": 1000, "done": 1000, "failed": 0, "pending": 0}}
    assert str(status_line(summary)) == ("job 7: finished; 1,000/1,000 images (1,000 done, 0 failed, 0 pending), "
                                         "1,055 faces")
    line = changes_line({"new": 0, "changed": 0, "copied": 1, "unchanged": 1687, "missing": 0})
    assert "1 copy of a file annotated before" in line and "1,687 unchanged" in line


def test_no_images_is_one_line_on_stderr_and_nothing_on_stdout(tmp_path):
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(fer, ["annotate", str(tmp_path / "empty"), "--db", f"sqlite:///{tmp_path / 'fer.db'}"])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (f"Error: no images found in {tmp_path / 'empty'} "
                             "(extensions: jpg,jpeg,png,bmp,gif,tif,tiff,webp)\n")


def test_min_face_help_and_error_agree():
    help_text = " ".join(run("annotate", "--help").output.split())
    assert "pixels of the photo, at least 20 (the detectors' window" in help_text
    assert "which never goes under 24 px" in help_text
    result = run("annotate", "/nonexistent", "--min-face", "0")
    assert result.exit_code == 2 and "the smallest face is at least 20 pixels" in result.output


def test_schedules_show_their_next_run():
    created = dt.datetime(2026, 7, 1, tzinfo=dt.timezone.utc)
    row = ScheduleRow(1, "/photos", "02:30", "Europe/Paris", {}, created, None, None)
    at = dt.datetime(2026, 7, 10, 0, 0, tzinfo=dt.timezone.utc)  # 02:00 in Paris: today's run is still ahead
    assert next_run(row, at).isoformat() == "2026-07-10T02:30:00+02:00"
    later = dt.datetime(2026, 7, 10, 9, 0, tzinfo=dt.timezone.utc)  # missed: due now, today's slot
    assert next_run(row, later).isoformat() == "2026-07-10T02:30:00+02:00"
    ran = ScheduleRow(1, "/photos", "02:30", "Europe/Paris", {}, created, "2026-07-10", 4)
    assert next_run(ran, later).isoformat() == "2026-07-11T02:30:00+02:00"
    winter = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.timezone.utc)
    assert next_run(ran, winter).isoformat() == "2026-12-01T02:30:00+01:00"  # due today (missed), in winter time


def test_schedule_list_has_a_next_run_column(tmp_path):
    (tmp_path / "photos").mkdir()
    url = f"sqlite:///{tmp_path / 'fer.db'}"
    assert run("schedule", "add", str(tmp_path / "photos"), "--at", "03:30", "--timezone", "UTC", "--db", url).exit_code == 0
    [listed] = json.loads(run("schedule", "list", "--format", "json", "--db", url).output)
    upcoming = dt.datetime.fromisoformat(listed["next_run"])
    now = dt.datetime.now(dt.timezone.utc)
    assert upcoming.strftime("%H:%M") == "03:30" and now < upcoming <= now + dt.timedelta(days=1, minutes=1)
    assert "next_run" in run("schedule", "list", "--db", url).output


def test_beat_takes_a_broker_and_stops_at_once_when_it_cannot_be_reached(tmp_path):
    result = run("beat", "--broker", "redis://127.0.0.1:1/0", "--db", f"sqlite:///{tmp_path / 'fer.db'}")
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: cannot reach the broker at redis://127.0.0.1:1/0")
    assert "--broker TEXT" in run("beat", "--help").output


def test_train_help_lists_the_recipes():
    from fer_model.recipes import RECIPES

    help_text = "".join(run("model", "train", "--help").output.split())  # click wraps lines after a hyphen too
    assert "".join(f"Named training recipe: {', '.join(sorted(RECIPES))}.".split()) in help_text


def test_calibrate_refuses_to_rewrite_a_committed_model_unless_asked(tmp_path):
    from fer_model.registry import resolve_model

    committed = Path(resolve_model("seed").path)
    before = hashlib.sha256(committed.read_bytes()).hexdigest()
    result = run("model", "calibrate", "--model", "seed", "--data", str(tmp_path / "fer2013"))
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: refused: seed is a model committed with the package ({committed.parent}); ")
    assert "pass --overwrite-committed" in result.output
    assert hashlib.sha256(committed.read_bytes()).hexdigest() == before
    missing = run("model", "calibrate", "--data", str(tmp_path / "fer2013"))
    assert missing.exit_code == 2 and "Missing option '--model'" in missing.output
    # Asked explicitly, it goes on (and here stops at the missing data, before writing anything).
    allowed = run("model", "calibrate", "--model", "seed", "--overwrite-committed", "--data", str(tmp_path / "fer2013"))
    assert allowed.output == f"Error: {tmp_path / 'fer2013'}: no such file or directory\n"


def test_makefile_says_what_it_installs_beyond_pypi():
    from tests.conftest import REPO_ROOT

    makefile = (REPO_ROOT / "Makefile").read_text()
    recipe = makefile.split("\nchromium:\n", 1)[1].split("\n\n", 1)[0]
    assert 'echo "chromium not found: installing Debian\'s chromium package' in recipe
    assert recipe.index("echo") < recipe.index("apt-get install")
