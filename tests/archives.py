"""A small real archive for the report and SQL tests, and a real annotation run over it.

Built from the photos in the data dir: folders with awkward names, files dated in
different months, a photo with an EXIF date, a group photo, a duplicate, a photo without a
face and two files that fail.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from tests.conftest import annotate_json
from cli.output import EXIT_PARTIAL

# A folder and a file name that are markup if a report forgets to escape them.
MARKUP_FOLDER = "<script>evil() & co"
MARKUP_FILE = "a&b <img src=x onerror=alert(1)>.jpg"
EXIF_DATE = dt.datetime(2019, 7, 14, 10, 30, 0)
FILE_DATES = (dt.datetime(2021, 3, 15, 12, 0, tzinfo=dt.timezone.utc), dt.datetime(2022, 8, 1, 12, 0, tzinfo=dt.timezone.utc))
NOT_AN_IMAGE = "not an image, or a format this tool does not read"
EMPTY_FILE = "empty file (0 bytes)"
IMAGES_IN_ARCHIVE = 17
FAILED_IN_ARCHIVE = 2


def build_sample_archive(root: Path, photos_dir: Path) -> Path:
    """Write the archive under ``root`` and return it."""
    photos = sorted(photos_dir.glob("*.jpg"))[:16]
    people = root / "people"
    people.mkdir(parents=True)
    for index, photo in enumerate(photos[:8]):
        copy = people / photo.name
        shutil.copy(photo, copy)
        stamp = FILE_DATES[index % 2].timestamp()
        os.utime(copy, (stamp, stamp))
    markup = root / MARKUP_FOLDER
    markup.mkdir()
    shutil.copy(photos[8], markup / MARKUP_FILE)
    for photo in photos[9:11]:
        shutil.copy(photo, markup / photo.name)
    family = root / "family"
    family.mkdir()
    _side_by_side(photos[11:14], family / "group.jpg")
    shutil.copy(people / photos[0].name, family / "copy.jpg")
    dated = root / "dated"
    dated.mkdir()
    _with_exif_date(photos[14], dated / "exif.jpg", EXIF_DATE)
    Image.fromarray(np.full((120, 160, 3), 200, np.uint8)).save(root / "blank.png")
    (root / "notes.jpg").write_text("this is not a picture")
    (root / "empty.jpg").write_bytes(b"")
    return root


def _side_by_side(sources: list[Path], target: Path) -> None:
    pictures = [Image.open(source).convert("RGB") for source in sources]
    height = max(picture.height for picture in pictures)
    group = Image.new("RGB", (sum(picture.width for picture in pictures), height), "white")
    left = 0
    for picture in pictures:
        group.paste(picture, (left, 0))
        left += picture.width
    group.save(target, quality=92)


def _with_exif_date(source: Path, target: Path, taken: dt.datetime) -> None:
    with Image.open(source) as picture:
        exif = picture.getexif()
        exif.get_ifd(0x8769)[0x9003] = taken.strftime("%Y:%m:%d %H:%M:%S")  # DateTimeOriginal
        picture.save(target, exif=exif, quality=92)


def annotate(archive: Path, url: str) -> dict:
    """Annotate ``archive`` into the database at ``url`` with `fer annotate`; return its JSON report."""
    report = annotate_json(archive, url, "--processes", "1", exit_code=EXIT_PARTIAL)  # the two files that fail
    assert report["images"]["total"] == IMAGES_IN_ARCHIVE and report["images"]["failed"] == FAILED_IN_ARCHIVE
    return report
