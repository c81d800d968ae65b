"""Quiet nights look quiet, and the whole-archive view is whole.

A file that failed on its content and has not changed since is unchanged: the next run skips
it and exits 0, `fer report --all` keeps listing it, `--retry-failed` (or `fer retry JOB --failed`)
tries it again. The whole-archive view shows one model version at a time (the default model's
unless --model says otherwise) with totals per version, in every view and format, and `fer export
--all` writes it.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.main import fer
from cli.output import EXIT_PARTIAL
from fer_model.registry import default_model_name

NOT_AN_IMAGE = "not an image, or a format this tool does not read"
EMPTY = "empty file (0 bytes)"


def run(*arguments: str, exit_code: int | None = 0):
    result = CliRunner().invoke(fer, list(arguments))
    assert "Traceback" not in result.output, result.output
    if exit_code is not None:
        assert result.exit_code == exit_code, result.output
    return result


def annotate(folder: Path, url: str, *options: str, exit_code: int = 0) -> dict:
    result = run("annotate", str(folder), "--db", url, "--processes", "1", "--format", "json", *options,
                 exit_code=exit_code)
    return json.loads(result.stdout)


@pytest.fixture
def archive(tmp_path, photos_dir) -> Path:
    root = tmp_path / "archive"
    (root / "trip").mkdir(parents=True)
    for photo in sorted(photos_dir.glob("*.jpg"))[:2]:
        shutil.copy(photo, root / "trip" / photo.name)
    (root / "notes.jpg").write_text("not a picture")
    (root / "empty.jpg").write_bytes(b"")
    return root


def test_unchanged_broken_files_are_unchanged_on_the_next_run_and_stay_listed(archive, tmp_path, photos_dir):
    url = f"sqlite:///{tmp_path / 'fer.db'}"
    first = annotate(archive, url, exit_code=EXIT_PARTIAL)
    assert first["images"] == {"total": 4, "done": 2, "failed": 2, "pending": 0}

    quiet = annotate(archive, url)  # exit 0: nothing changed
    assert quiet["images"]["total"] == 0 and quiet["failed_files"] == []
    assert quiet["changes"] | {"unchanged": 4, "unchanged_failed": 2, "new": 0} == quiet["changes"]
    table = " ".join(run("report", "--run", str(quiet["job"]), "--db", url).output.split())
    assert ("4 unchanged (skipped; 2 of them failed before: `fer report --all` lists them, --retry-failed tries them "
            "again)") in table

    whole = json.loads(run("report", "--all", "--format", "json", "--db", url).output)
    assert whole["failed_files"] == [{"path": str(archive / "empty.jpg"), "error": EMPTY},
                                     {"path": str(archive / "notes.jpg"), "error": NOT_AN_IMAGE}]
    assert whole["images"] == {"total": 4, "done": 2, "failed": 2, "pending": 0}
    since = json.loads(run("report", "--since", "2000-01-01", "--format", "json", "--db", url).output)
    assert since["images"]["failed"] == 2  # not added up night after night

    retried = annotate(archive, url, "--retry-failed", exit_code=EXIT_PARTIAL)
    assert retried["images"]["failed"] == 2 and retried["changes"]["retried"] == 2

    shutil.copy(sorted(photos_dir.glob("*.jpg"))[5], archive / "notes.jpg")  # fixed: new content
    (archive / "empty.jpg").unlink()  # gone
    fixed = annotate(archive, url)
    assert fixed["changes"]["changed"] == 1 and fixed["changes"]["missing"] == 1 and fixed["images"]["done"] == 1
    whole = json.loads(run("report", "--all", "--format", "json", "--db", url).output)
    assert whole["failed_files"] == [] and whole["images"]["done"] == 3


def test_a_file_that_could_not_be_read_is_tried_again_on_every_run(archive, tmp_path, photos_dir):
    """Only a bad content is sure to fail again: a refused link (or a permission problem) may be fixed without
    touching the file."""
    outside = tmp_path / "outside.jpg"
    shutil.copy(sorted(photos_dir.glob("*.jpg"))[3], outside)
    (archive / "link.jpg").symlink_to(outside)
    url = f"sqlite:///{tmp_path / 'fer.db'}"
    annotate(archive, url, exit_code=EXIT_PARTIAL)
    again = annotate(archive, url, exit_code=EXIT_PARTIAL)
    assert [item["path"] for item in again["failed_files"]] == [str(archive / "link.jpg")]
    assert again["changes"]["unchanged_failed"] == 2
    followed = annotate(archive, url, "--follow-symlinks")
    assert followed["images"] == {"total": 1, "done": 1, "failed": 0, "pending": 0}


def test_a_quiet_run_prints_the_whole_archive_not_zeros(archive, tmp_path):
    url = f"sqlite:///{tmp_path / 'fer.db'}"
    first = annotate(archive, url, exit_code=EXIT_PARTIAL)
    quiet = run("annotate", str(archive), "--db", url, "--processes", "1")
    flat = " ".join(quiet.output.split())
    assert f"Whole archive, {first['model']['name']} {first['model']['version']}" in flat
    assert f"The latest run (job 2, finished) changed nothing: 4 unchanged, 0 missing. The whole archive:" in flat
    assert f"2 images (each file's latest annotation by {first['model']['name']} {first['model']['version']}), " \
           f"{first['faces']} face" in flat
    assert "Failed, and not changed since (2;" in flat and f"{archive / 'notes.jpg'}: {NOT_AN_IMAGE}" in flat
    assert "0 images annotated" not in flat


@pytest.fixture(scope="module")
def two_models(tmp_path_factory, photos_dir):
    """Three photos annotated by the seed model, then by the default model: one archive, two model versions."""
    root = tmp_path_factory.mktemp("two-models")
    folder = root / "photos"
    (folder / "b").mkdir(parents=True)
    photos = sorted(photos_dir.glob("*.jpg"))[:3]
    shutil.copy(photos[0], folder / photos[0].name)
    for photo in photos[1:]:
        shutil.copy(photo, folder / "b" / photo.name)
    os.utime(folder / photos[0].name, (1_600_000_000, 1_600_000_000))
    url = f"sqlite:///{root / 'fer.db'}"
    seed = annotate(folder, url, "--model", "seed")
    default = annotate(folder, url)
    assert default["changes"]["new"] == 3  # another model version sees everything as new
    return folder, url, seed, default


def test_the_whole_archive_shows_one_model_version_with_totals_per_version(two_models):
    folder, url, seed, default = two_models
    assert default_model_name() != "seed"
    whole = json.loads(run("report", "--all", "--format", "json", "--db", url).output)
    assert whole["model"] == default["model"]
    assert whole["images"]["done"] == 3 and whole["faces"] == default["faces"]
    assert whole["emotions"] == default["emotions"]
    assert sorted((m["name"], m["images"], m["faces"]) for m in whole["models"]) == sorted(
        [(default["model"]["name"], 3, default["faces"]), ("seed", 3, seed["faces"])])
    as_seed = json.loads(run("report", "--all", "--model", "seed", "--format", "json", "--db", url).output)
    assert as_seed["model"] == seed["model"] and as_seed["emotions"] == seed["emotions"]
    rows = list(csv.DictReader(io.StringIO(run("report", "--all", "--format", "csv", "--db", url).output)))
    assert {(row["model"], row["model_version"]) for row in rows} == {(default["model"]["name"],
                                                                      default["model"]["version"])}
    assert sum(int(row["faces"]) for row in rows) == default["faces"]
    table = " ".join(run("report", "--all", "--db", url).output.split())
    assert "Per model version (--model NAME shows another):" in table
    assert f"* {default['model']['name']} {default['model']['version']}: 3 images" in table
    unknown = run("report", "--all", "--model", "nope", "--db", url, exit_code=1)
    assert unknown.output.startswith("Error: no model 'nope' has annotated anything in this database; recorded: seed@")


@pytest.mark.parametrize("view", [["--all"], ["--since", "2000-01-01"]])
@pytest.mark.parametrize("by", ["folder", "day"])
def test_whole_archive_and_since_views_break_down_by_folder_and_day(two_models, view, by):
    folder, url, seed, default = two_models
    result = run("report", *view, "--by", by, "--format", "json", "--db", url)
    summary = json.loads(result.output)
    assert sum(row["images"] for row in summary["rows"]) == 3  # one model version's, not both added up
    assert sum(row["faces"] for row in summary["rows"]) == default["faces"]
    if by == "folder":
        assert [row["folder"] for row in summary["rows"]] == [str(folder), str(folder / "b")]
    else:
        assert summary["rows"][0]["day"] == "2020-09-13"
    assert run("report", *view, "--by", by, "--db", url).exit_code == 0


@pytest.mark.parametrize("view", [["--all"], ["--since", "2000-01-01"]])
def test_whole_archive_and_since_views_have_an_html_report(two_models, tmp_path, view):
    folder, url, seed, default = two_models
    out = tmp_path / "report.html"
    run("report", *view, "--format", "html", "-o", str(out), "--db", url)
    page = out.read_text()
    title = "The whole archive" if view == ["--all"] else "Runs since 2000-01-01"
    assert f"<title>{title}" in page and f"(model {default['model']['name']} {default['model']['version']})" in page
    assert f'id="headline-faces"><div class="number">{default["faces"]:,}<' in page


def test_export_all_writes_the_whole_archive_to_a_file_or_stdout(two_models, tmp_path):
    folder, url, seed, default = two_models
    out = tmp_path / "faces.csv"
    assert f"Wrote {default['faces']} face" in run("export", "--all", "-o", str(out), "--db", url).output
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == default["faces"] and {row["model"] for row in rows} == {default["model"]["name"]}
    as_seed = run("export", "--all", "--model", "seed", "--format", "jsonl", "-o", "-", "--db", url).output
    assert len(as_seed.splitlines()) == seed["faces"] and all(json.loads(line)["model"] == "seed"
                                                             for line in as_seed.splitlines())
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        latest = run("export", "-o", "-", "--db", url).output  # the latest job, to stdout
    finally:
        os.chdir(cwd)
    assert latest.startswith("path,job_id,") and len(latest.splitlines()) == default["faces"] + 1
    assert not (tmp_path / "-").exists()


def test_without_the_default_model_the_archive_shows_the_latest_used_and_says_so(archive, tmp_path):
    url = f"sqlite:///{tmp_path / 'fer.db'}"
    seed = annotate(archive / "trip", url, "--model", "seed")
    whole = json.loads(run("report", "--all", "--format", "json", "--db", url).output)
    assert whole["model"] == seed["model"] and whole["faces"] == seed["faces"]
    assert whole["model_note"].startswith(f"the default model {default_model_name()} ")
    assert whole["model_note"].endswith(f"has annotated nothing here; showing seed {seed['model']['version']}, "
                                        "the latest used")
    table = " ".join(run("report", "--all", "--db", url).output.split())
    assert f"Note: {whole['model_note']}" in table
