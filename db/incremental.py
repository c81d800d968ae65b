"""Incremental runs: what an archive holds that a model has not annotated yet.

A file is unchanged (skipped) when its latest successful annotation by the same model
version has the same path, size and modification time. A file whose latest attempt failed
on its content (damaged, empty, not an image) and that has the same size and time is
unchanged too: it would fail again (``retry_failed`` tries it anyway). Anything else under
the run's roots is new or changed and gets a pending image row. Files annotated before under
the roots that no longer exist are marked missing; their results stay.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import ColumnElement, Connection, Engine, and_, select

from db.models import Image, Model
from db.session import connected

# A job still 'pending' or 'running' with no activity for this long is taken as dead
# (its process was killed), so it no longer blocks other runs over its roots (db/overlap.py).
STALE_RUN_HOURS = float(os.environ.get("FER_STALE_RUN_HOURS", "12"))
STALE_AFTER = dt.timedelta(hours=STALE_RUN_HOURS)


@dataclass(frozen=True)
class FileState:
    path: str
    size: int
    mtime: float


@dataclass
class RunPlan:
    """What a run has to do: files to annotate (with why), how many it skips, which went missing."""

    to_annotate: list[tuple[str, str | None]] = field(default_factory=list)  # (path, 'new' | 'changed' | 'retried' | None)
    unchanged: int = 0
    unchanged_failed: int = 0  # of the unchanged, those whose latest attempt failed on their content
    missing_ids: list[int] = field(default_factory=list)
    missing_paths: int = 0


def paths_under(root: str) -> list[ColumnElement[bool]]:
    """Conditions that together select the paths ``fer_model.files.under_roots`` accepts for one root: the root
    itself, and the range of paths that start with root + '/' (one range of the path index: paths compare byte by
    byte)."""
    base = root.rstrip(os.sep)
    return [Image.path == root, and_(Image.path >= base + os.sep, Image.path < base + chr(ord(os.sep) + 1))]


def attempts_under(connection: Connection, roots: Sequence[str], model_id: int | None) -> list:
    """The earlier attempts at the files under ``roots``, by id: the done, not missing images of this model,
    and the failed ones whose content was read (their hash is recorded), whatever the model.

    Reads only the rows under the roots, by index ranges on the path, whatever else the archive holds.
    The model and status are checked here, not in SQL: given them, SQLite's planner would rather
    walk every image of the model (ix_images_model_status) than the range of paths."""
    query = select(Image.id, Image.path, Image.size, Image.mtime, Image.model_id, Image.status, Image.missing_at,
                   Image.sha256)

    def counts(row) -> bool:
        if row.missing_at is not None:
            return False
        return (row.status == "failed" and row.sha256 is not None) or (row.status == "done" and row.model_id == model_id)

    rows = {}
    for root in roots:
        for condition in paths_under(root):
            rows.update((row.id, row) for row in connection.execute(query.where(condition)) if counts(row))
    return [rows[image_id] for image_id in sorted(rows)]


def model_id_for(bind: Engine | Connection, name: str, version: str) -> int | None:
    with connected(bind) as connection:
        return connection.scalar(select(Model.id).where(Model.name == name, Model.version == version))


def plan_run(engine: Engine, roots: Sequence[str], files: Sequence[FileState], model_id: int | None,
             retry_failed: bool = False) -> RunPlan:
    """Compare the files found under ``roots`` with what ``model_id`` has annotated there before."""
    plan = RunPlan()
    latest: dict[str, tuple[int, float | None, str]] = {}  # path -> (size, mtime, status) of its latest attempt
    row_ids: dict[str, list[int]] = {}
    with engine.connect() as connection:
        for row in attempts_under(connection, roots, model_id):
            latest[row.path] = (row.size, row.mtime, row.status)
            row_ids.setdefault(row.path, []).append(row.id)
    found = set()
    for state in files:
        found.add(state.path)
        previous = latest.get(state.path)
        if previous is None:
            plan.to_annotate.append((state.path, "new"))
        elif previous[0] != state.size or previous[1] != state.mtime:
            plan.to_annotate.append((state.path, "changed"))
        elif previous[2] == "failed" and retry_failed:
            plan.to_annotate.append((state.path, "retried"))
        else:
            plan.unchanged += 1
            plan.unchanged_failed += previous[2] == "failed"
    for path, ids in row_ids.items():
        # Not listed is not gone: a narrower --ext or --no-recursive leaves files out of the listing.
        if path not in found and _gone(path):
            plan.missing_paths += 1
            plan.missing_ids.extend(ids)
    return plan


def _gone(path: str) -> bool:
    """True when ``path`` no longer exists; False when it does or cannot be told (a folder that cannot be listed)."""
    try:
        os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return True
    except OSError:
        return False
    return False
