"""Sending a job's chunks to the broker as `fer.annotate_chunk` tasks."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from sqlalchemy import Engine

from workers.chunking import chunked
from workers.options import JobOptions


def queue_chunks(job_id: int, image_ids: list[int], options: JobOptions, database_id: str | None = None,
                 broker_url: str | None = None) -> None:
    """Queue a job's images on ``broker_url`` (default: the app's) as chunk tasks of ``options.chunk_size`` images,
    for the database ``database_id``."""
    from workers.celery_app import app
    from workers.tasks import annotate_chunk

    message = options.to_dict()  # task messages are JSON
    # An explicit connection to the broker given, not one cached by an earlier call in this process.
    with app.connection_for_write(broker_url) as connection:
        for chunk in chunked(image_ids, options.chunk_size):
            annotate_chunk.apply_async(args=[job_id, chunk, message], kwargs={"database_id": database_id},
                                       connection=connection)


def queue_chunks_for(engine: Engine, broker_url: str | None = None) -> Callable[[int, list[int], JobOptions], None]:
    """``queue_chunks`` on ``broker_url``, bound to the identity of the database ``engine`` writes to."""
    from db.reads import database_identity

    return partial(queue_chunks, database_id=database_identity(engine), broker_url=broker_url)
