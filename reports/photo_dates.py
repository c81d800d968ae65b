"""When a photo was taken: its EXIF DateTimeOriginal where present, else the file's modification time.

The EXIF date is read when the photo is annotated (``images.taken_at``); reports take it from
there and never open the photo.
"""

from __future__ import annotations

import datetime as dt
import warnings
from typing import Literal

from PIL import Image

EXIF_IFD = 0x8769
DATE_TIME_ORIGINAL = 0x9003
DATE_TIME_DIGITIZED = 0x9004
EXIF_DATE_FORMAT = "%Y:%m:%d %H:%M:%S"

DateSource = Literal["exif", "file", "unknown"]


def exif_date_of(image: Image.Image) -> dt.datetime | None:
    """The EXIF capture date of an open image (naive, camera local time), or None: no usable EXIF date."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # odd EXIF blocks only warn; we want the date or nothing
            exif = image.getexif().get_ifd(EXIF_IFD)
    except Exception:  # Pillow raises many types on damaged EXIF blocks; a date is optional here
        return None
    for tag in (DATE_TIME_ORIGINAL, DATE_TIME_DIGITIZED):
        value = exif.get(tag)
        if isinstance(value, bytes):
            value = value.decode("ascii", "replace")
        if isinstance(value, str):
            try:
                return dt.datetime.strptime(value.strip("\x00 ")[:19], EXIF_DATE_FORMAT)
            except ValueError:
                continue  # "0000:00:00 00:00:00" and other placeholders cameras write
    return None


def exif_date(path: str) -> dt.datetime | None:
    """The EXIF capture date of the file at ``path``, or None: no EXIF date, or the file is unreadable."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # huge headers only warn
            with Image.open(path) as image:
                return exif_date_of(image)
    except Exception:  # Pillow raises many types on damaged files; a date is optional here
        return None


def photo_date(taken_at: dt.datetime | None, mtime: float | None) -> tuple[dt.datetime | None, DateSource]:
    """The photo's date and where it came from: the stored EXIF date, else the file time (UTC), else unknown."""
    if taken_at is not None:
        return taken_at.replace(tzinfo=None), "exif"
    if mtime is not None:
        return dt.datetime.fromtimestamp(mtime, dt.timezone.utc).replace(tzinfo=None), "file"
    return None, "unknown"
