"""photo dates: images.taken_at, the EXIF capture date read when the photo is annotated

Reports take the photo's date from the database instead of opening every photo. Rows annotated
before this column existed are filled here from their files' EXIF dates: one read per content
(sha256), for done images only; a file that is gone or has no EXIF date leaves the column null,
and reports then use the file's modification time, as they did when they read the file.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

import datetime as dt
import warnings

from alembic import op
import sqlalchemy as sa
from PIL import Image

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

BATCH = 5000

# How this revision reads a photo's date (frozen here: the workers' reader may change).
EXIF_IFD = 0x8769
DATE_TIME_ORIGINAL = 0x9003
DATE_TIME_DIGITIZED = 0x9004
EXIF_DATE_FORMAT = "%Y:%m:%d %H:%M:%S"


def exif_date(path: str) -> dt.datetime | None:
    """The EXIF capture date of the file at ``path`` (naive, camera local time), or None: no usable EXIF date, or
    the file is unreadable."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # huge headers and odd EXIF blocks only warn
            with Image.open(path) as image:
                exif = image.getexif().get_ifd(EXIF_IFD)
    except Exception:  # Pillow raises many types on damaged files; a date is optional here
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


def upgrade() -> None:
    op.add_column('images', sa.Column('taken_at', sa.DateTime(timezone=False), nullable=True))
    _fill_taken_at(op.get_bind())


def _fill_taken_at(connection: sa.Connection) -> None:
    """Read each done image's EXIF date, in batches by id, once per content."""
    select_batch = sa.text("SELECT id, path, sha256 FROM images WHERE status = 'done' AND id > :after "
                           "ORDER BY id LIMIT :batch")
    update = sa.text("UPDATE images SET taken_at = :taken_at WHERE id = :id")
    by_content: dict[str, dt.datetime | None] = {}
    after = 0
    while True:
        rows = connection.execute(select_batch, {"after": after, "batch": BATCH}).all()
        if not rows:
            return
        dates = []
        for image_id, path, sha256 in rows:
            if sha256 is None or sha256 not in by_content:
                taken = exif_date(path)
                if sha256 is not None:
                    by_content[sha256] = taken
            else:
                taken = by_content[sha256]
            if taken is not None:
                dates.append({"id": image_id, "taken_at": taken})
        if dates:
            connection.execute(update, dates)
        after = rows[-1].id


def downgrade() -> None:
    # A plain DROP COLUMN (SQLite 3.35+): rebuilding the table in batch mode would break the views on it.
    op.drop_column('images', 'taken_at')
