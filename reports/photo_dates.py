"""When a photo was taken: its EXIF DateTimeOriginal where present, else the file's modification time.

The EXIF date is read when the photo is annotated (``images.taken_at``, `workers.vision.images`);
reports take it from there and never open the photo.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

DateSource = Literal["exif", "file", "unknown"]


def photo_date(taken_at: dt.datetime | None, mtime: float | None) -> tuple[dt.datetime | None, DateSource]:
    """The photo's date and where it came from: the stored EXIF date, else the file time (UTC), else unknown."""
    if taken_at is not None:
        return taken_at.replace(tzinfo=None), "exif"
    if mtime is not None:
        return dt.datetime.fromtimestamp(mtime, dt.timezone.utc).replace(tzinfo=None), "file"
    return None, "unknown"
