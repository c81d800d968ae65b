"""Sending a job's chunks to the broker as `fer.annotate_chunk` tasks."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from sqlalchemy import Engine

from workers.chunking import chunked
from workers.options import JobOptions


def queue_chunks(job_id: int, image_ids: list[int], options: dict[str, Any], database_id: str | None = None) -> None:
    """Queue a job's images as chunk tasks of ``options['chunk_size']`` images, for the database ``database_id``."""
    from workers.celery_app import app
    from workers.tasks import annotate_chunk

    # An explicit connection follows the broker URL read now, not one cached by an earlier call in this process.
    with app.connection_for_write() as connection:
        for chunk in chunked(image_ids, JobOptions.from_dict(options).chunk_size):
            annotate_chunk.apply_async(args=[job_id, chunk, options], kwargs={"database_id": database_id},
                                       connection=connection)


def queue_chunks_for(engine: Engine) -> Callable[[int, list[int], dict[str, Any]], None]:
    """``queue_chunks`` bound to the identity of the database ``engine`` writes to."""
    from db.reads import database_identity

    return partial(queue_chunks, database_id=database_identity(engine))
