"""Listing an archive: a folder is walked whatever its name, and a folder that cannot be listed is a
failure of the run, named by path, never passed over in silence.

The unreadable folder is a real mode-000 folder listed by an unprivileged user: the tests run
the listing and the planning with the effective user id of `nobody` when they run as root
(root ignores permissions), and as themselves otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner

import workers.jobs.starting
import workers.jobs.submission
from cli.main import fer
from cli.output import EXIT_PARTIAL
from workers.jobs.discovery import find_images

NOBODY = 65534


@contextmanager
def unprivileged() -> Iterator[None]:
    """Run the block as `nobody` when this process is root; as the current user otherwise."""
    if os.geteuid() != 0:
        yield
        return
    os.setegid(NOBODY)
    os.seteuid(NOBODY)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


def as_unprivileged(function):
    def wrapper(*args, **kwargs):
        with unprivileged():
            return function(*args, **kwargs)

    return wrapper


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder an unprivileged user may enter (pytest's own temporary folders are private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="fer-listing-"))
    folder.chmod(0o777)
    yield folder
    for path in folder.rglob("*"):
        if path.is_dir() and not path.is_symlink():
            path.chmod(0o755)
    shutil.rmtree(folder)


def _readable_tree(root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        path.chmod(0o777 if path.is_dir() else 0o666)


@pytest.fixture
def archive(shared_dir, photos_dir) -> Path:
    """top.jpg, album.jpg/a.jpg, album.jpg/sub/b.jpg and locked/c.jpg, with locked/ at mode 000."""
    photo = sorted(photos_dir.glob("*.jpg"))[0]
    root = shared_dir / "archive"
    (root / "album.jpg" / "sub").mkdir(parents=True)
    (root / "locked").mkdir()
    for name in ("top.jpg", "album.jpg/a.jpg", "album.jpg/sub/b.jpg", "locked/c.jpg"):
        shutil.copy(photo, root / name)
    _readable_tree(shared_dir)
    (root / "locked").chmod(0)
    return root


def test_a_folder_named_like_an_image_is_walked_into(tmp_path):
    (tmp_path / "album.jpg" / "sub").mkdir(parents=True)
    for name in ("album.jpg/a.jpg", "album.jpg/sub/b.PNG", "top.jpg"):
        (tmp_path / name).write_bytes(b"x")
    skipped: list = []
    found = [os.path.relpath(p, tmp_path) for p in find_images([str(tmp_path)], skipped=skipped)]
    assert found == ["top.jpg", "album.jpg/a.jpg", "album.jpg/sub/b.PNG"] and skipped == []
    flat = [os.path.relpath(p, tmp_path) for p in find_images([str(tmp_path)], recursive=False, skipped=skipped)]
    assert flat == ["top.jpg"] and skipped == []  # not descended into, like any folder
    given = [os.path.relpath(p, tmp_path) for p in find_images([str(tmp_path / "album.jpg")])]
    assert given == ["album.jpg/a.jpg", "album.jpg/sub/b.PNG"]


def test_a_folder_that_cannot_be_listed_is_reported_with_its_reason(archive):
    unlisted: list = []
    with unprivileged():
        found = [os.path.relpath(p, archive) for p in find_images([str(archive)], unlisted=unlisted)]
    assert found == ["top.jpg", "album.jpg/a.jpg", "album.jpg/sub/b.jpg"]
    assert unlisted == [(str(archive / "locked"), "folder cannot be listed: permission denied")]
    assert stat.S_IMODE((archive / "locked").stat().st_mode) == 0


@pytest.fixture
def listing_as_nobody(monkeypatch):
    """`fer annotate` lists and plans as an unprivileged user; detection and writing run as usual."""
    monkeypatch.setattr(workers.jobs.starting, "find_files", as_unprivileged(workers.jobs.starting.find_files))
    monkeypatch.setattr(workers.jobs.submission, "plan_run", as_unprivileged(workers.jobs.submission.plan_run))


def annotate(archive: Path, url: str, *options: str):
    result = CliRunner().invoke(fer, ["annotate", str(archive), "--db", url, "--processes", "1", *options])
    assert "Traceback" not in result.output, result.output
    return result


def test_annotate_walks_folders_named_like_images_and_fails_partly_on_an_unlisted_folder(archive, shared_dir,
                                                                                          listing_as_nobody):
    url = f"sqlite:///{shared_dir / 'fer.db'}"
    result = annotate(archive, url, "--format", "json")
    assert result.exit_code == EXIT_PARTIAL, result.output
    report = json.loads(result.stdout)
    assert report["images"] == {"total": 3, "done": 3, "failed": 0, "pending": 0}
    assert report["unlisted_folders"] == [{"path": str(archive / "locked"),
                                           "error": "folder cannot be listed: permission denied"}]
    assert report["files_skipped"] == 0 and report["skipped_files"] == []
    table = CliRunner().invoke(fer, ["report", "--db", url])
    flat = " ".join(table.output.split())
    assert f"Not annotated: 1 folder could not be listed: {archive / 'locked'}: folder cannot be listed: permission " \
           "denied" in flat
    status = CliRunner().invoke(fer, ["status", "--db", url]).output
    assert status.startswith("job 1: finished; 3/3 images") and "1 folder could not be listed" in status
    page = shared_dir / "report.html"
    assert CliRunner().invoke(fer, ["report", "--format", "html", "-o", str(page), "--db", url]).exit_code == 0
    assert f"<tr><td>{archive / 'locked'}</td><td class=\"error\">folder cannot be listed: permission denied</td></tr>" \
        in page.read_text()

    # The next run: what was annotated inside is not taken as missing while the folder cannot be listed.
    (archive / "locked").chmod(0o777)
    assert annotate(archive, url, "--format", "json").exit_code == 0  # lists locked/ and annotates c.jpg
    (archive / "locked").chmod(0)
    again = annotate(archive, url, "--format", "json")
    assert again.exit_code == EXIT_PARTIAL
    assert json.loads(again.stdout)["changes"]["missing"] == 0


def test_a_given_folder_that_cannot_be_listed_is_a_runtime_error_not_a_usage_error(archive, shared_dir,
                                                                                   listing_as_nobody):
    from cli.run_commands import annotate as annotate_command

    locked = str(archive / "locked")
    paths = next(param for param in annotate_command.params if param.name == "paths")
    with unprivileged():
        assert paths.type.convert(locked, paths, None) == locked  # click does not refuse it as unreadable (exit 2)
    url = f"sqlite:///{shared_dir / 'fer.db'}"
    result = annotate(Path(locked), url)
    assert result.exit_code == 1, result.output
    assert result.output.splitlines() == [
        f"Error: no images found in {locked} (extensions: jpg,jpeg,png,bmp,gif,tif,tiff,webp); "
        f"{locked}: folder cannot be listed: permission denied"
    ]
