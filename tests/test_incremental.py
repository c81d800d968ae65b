"""Incremental runs: unchanged files skipped, changed ones redone, moved and duplicated ones
linked, vanished ones marked missing; on SQLite and on PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select, update

from cli.main import fer
from tests.conftest import annotate_json
from cli.output import EXIT_NOT_STARTED
from db.incremental import FileState, plan_run
from db.models import Face, Image, Job
from db.session import make_engine, upgrade

PHOTOS = 6


@pytest.fixture
def database(database_url):
    return database_url


@pytest.fixture
def folder(tmp_path, photos_dir) -> Path:
    root = tmp_path / "archive"
    (root / "trip").mkdir(parents=True)
    for photo in sorted(photos_dir.glob("*.jpg"))[:PHOTOS]:
        shutil.copy(photo, root / "trip" / photo.name)
    return root


def annotate(folder: Path, database: str, *extra: str) -> dict:
    return annotate_json(folder, database, "--processes", "1", *extra)


def rows(database: str, job: int) -> dict[str, dict]:
    engine = make_engine(database)
    with engine.connect() as connection:
        found = connection.execute(select(Image.__table__).where(Image.job_id == job)).all()
        faces = dict(connection.execute(select(Face.image_id, func.count()).group_by(Face.image_id)).all())
        result = {Path(i.path).name: {"id": i.id, "change": i.change, "linked_from": i.linked_from_id, "status": i.status,
                                      "faces": faces.get(i.id, 0), "model_id": i.model_id} for i in found}
    engine.dispose()
    return result


def missing(database: str) -> set[str]:
    engine = make_engine(database)
    with engine.connect() as connection:
        names = {Path(p).name for p in connection.scalars(select(Image.path).where(Image.missing_at.is_not(None)))}
    engine.dispose()
    return names


def test_a_second_run_over_an_unchanged_folder_processes_nothing(folder, database):
    first = annotate(folder, database)
    assert first["images"]["done"] == PHOTOS and first["changes"]["new"] == PHOTOS and first["faces"] >= PHOTOS - 1
    second = annotate(folder, database, "--incremental")
    assert second["images"]["total"] == 0
    assert second["changes"] == {"new": 0, "changed": 0, "retried": 0, "copied": 0, "unchanged": PHOTOS,
                                 "unchanged_failed": 0, "missing": 0}
    assert second["stage_seconds"]["detect"] == 0 and second["faces"] == 0
    assert second["model"]["version"] == first["model"]["version"]


def test_touched_changed_renamed_duplicated_and_deleted_files(folder, database, photos_dir):
    first = annotate(folder, database)
    before = rows(database, first["job"])
    names = sorted(before)
    trip = folder / "trip"
    touched, rewritten, renamed, duplicated, deleted = names[:5]
    stat = (trip / touched).stat()
    os.utime(trip / touched, (stat.st_atime, stat.st_mtime + 60))
    shutil.copy(sorted(photos_dir.glob("*.jpg"))[PHOTOS + 1], trip / rewritten)  # new content, same name
    (trip / renamed).rename(trip / "renamed.jpg")
    (folder / "copies").mkdir()
    shutil.copy(trip / duplicated, folder / "copies" / "dup.jpg")
    (trip / deleted).unlink()

    second = annotate(folder, database)
    after = rows(database, second["job"])
    assert set(after) == {touched, rewritten, "renamed.jpg", "dup.jpg"}
    assert after[touched]["change"] == "changed" and after[touched]["linked_from"] == before[touched]["id"]
    assert after[rewritten]["change"] == "changed" and after[rewritten]["linked_from"] is None
    assert after["renamed.jpg"]["change"] == "new" and after["renamed.jpg"]["linked_from"] == before[renamed]["id"]
    assert after["dup.jpg"]["linked_from"] == before[duplicated]["id"]
    for name, source in ((touched, touched), ("renamed.jpg", renamed), ("dup.jpg", duplicated)):
        assert after[name]["faces"] == before[source]["faces"]  # copied, not recomputed
    assert second["changes"] == {"new": 2, "changed": 2, "retried": 0, "copied": 3, "unchanged": PHOTOS - 4,
                                 "unchanged_failed": 0, "missing": 2}
    assert missing(database) == {renamed, deleted}
    # Results of the vanished files are kept.
    assert rows(database, first["job"])[deleted]["faces"] == before[deleted]["faces"]

    third = annotate(folder, database)
    assert third["images"]["total"] == 0 and third["changes"]["missing"] == 0


def test_reannotate_does_everything_again_and_both_results_stay(folder, database):
    first = annotate(folder, database)
    again = annotate(folder, database, "--reannotate")
    assert again["images"]["done"] == PHOTOS and not again["incremental"]
    assert all(row["change"] is None and row["linked_from"] is None for row in rows(database, again["job"]).values())
    assert rows(database, first["job"]).keys() == rows(database, again["job"]).keys()
    engine = make_engine(database)
    with engine.connect() as connection:
        assert connection.scalar(select(func.count(Face.id))) == first["faces"] + again["faces"]
    engine.dispose()


def test_another_model_version_sees_everything_as_new(folder, database):
    first = annotate(folder, database)
    engine = make_engine(database)
    upgrade(engine)
    files = [FileState(str(p), p.stat().st_size, p.stat().st_mtime) for p in sorted((folder / "trip").iterdir())]
    model_id = rows(database, first["job"])[files[0].path.rsplit("/", 1)[1]]["model_id"]
    same = plan_run(engine, [str(folder)], files, model_id)
    other = plan_run(engine, [str(folder)], files, model_id + 1000)
    assert (same.unchanged, len(same.to_annotate)) == (PHOTOS, 0)
    assert (other.unchanged, len(other.to_annotate)) == (0, PHOTOS)
    engine.dispose()


def test_a_run_over_folders_still_being_annotated_does_not_start_a_second_copy(folder, database):
    first = annotate(folder, database)
    engine = make_engine(database)
    with engine.begin() as connection:
        connection.execute(update(Job).where(Job.id == first["job"]).values(status="running"))
    result = CliRunner().invoke(fer, ["annotate", str(folder), "--db", database, "--processes", "1"])
    assert result.exit_code == EXIT_NOT_STARTED, result.output
    assert f"not started: job {first['job']} over {folder} is still running" in " ".join(result.output.split())
    assert f"`fer cancel {first['job']}`" in result.output.replace("\n", " ")
    with engine.connect() as connection:
        assert connection.scalar(select(func.count(Job.id))) == 1
    # A job with no progress for longer than FER_STALE_RUN_HOURS is taken as dead.
    with engine.begin() as connection:
        long_ago = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=2)
        connection.execute(update(Job).where(Job.id == first["job"]).values(created_at=long_ago))
        connection.execute(update(Image).where(Image.job_id == first["job"]).values(processed_at=long_ago))
    engine.dispose()
    assert annotate(folder, database)["changes"]["unchanged"] == PHOTOS


def test_report_since_and_run(folder, database):
    first = annotate(folder, database)
    (folder / "trip" / sorted(os.listdir(folder / "trip"))[0]).unlink()
    annotate(folder, database)
    runner = CliRunner()
    since = runner.invoke(fer, ["report", "--since", "2000-01-01", "--db", database, "--format", "json"])
    assert since.exit_code == 0, since.output
    summary = json.loads(since.output)
    assert summary["jobs"] == [first["job"], first["job"] + 1]
    assert summary["faces"] == first["faces"] and summary["changes"]["missing"] == 1
    assert [m["faces"] for m in summary["models"]] == [first["faces"]]
    run = runner.invoke(fer, ["report", "--run", str(first["job"] + 1), "--db", database])
    assert run.exit_code == 0 and "1 missing since the last run" in run.output.replace("\n", " ")
    both = runner.invoke(fer, ["report", "--since", "2000-01-01", "--run", "1", "--db", database])
    assert both.exit_code == 1 and "--since" in both.output


def test_files_left_out_of_a_narrower_listing_are_not_missing(folder, database):
    png = folder / "trip" / "extra.png"
    png.write_bytes((folder / "trip" / sorted(os.listdir(folder / "trip"))[0]).read_bytes())
    annotate(folder, database)
    narrower = annotate(folder, database, "--ext", "jpg")
    assert narrower["changes"]["missing"] == 0 and missing(database) == set()
    png.unlink()
    assert annotate(folder, database, "--ext", "jpg")["changes"]["missing"] == 1
    assert missing(database) == {"extra.png"}


def test_since_compares_instants_whatever_the_zone(folder, database):
    from zoneinfo import ZoneInfo

    from db.reads import since_summary

    annotate(folder, database)
    engine = make_engine(database)
    now = dt.datetime.now(dt.timezone.utc)
    for zone in ("America/New_York", "Asia/Tokyo"):
        local = now.astimezone(ZoneInfo(zone))
        assert since_summary(engine, local + dt.timedelta(minutes=5))["jobs"] == []
        assert since_summary(engine, local - dt.timedelta(minutes=5))["jobs"] == [1]
    engine.dispose()


def test_an_emptied_folder_marks_its_files_missing_and_an_empty_new_one_is_an_error(folder, database, tmp_path):
    annotate(folder, database)
    for photo in (folder / "trip").iterdir():
        photo.unlink()
    emptied = annotate(folder, database)
    assert emptied["images"]["total"] == 0 and emptied["changes"]["missing"] == PHOTOS
    (tmp_path / "nothing").mkdir()
    result = CliRunner().invoke(fer, ["annotate", str(tmp_path / "nothing"), "--db", database, "--processes", "1"])
    assert result.exit_code == 1 and "no images found" in result.output
