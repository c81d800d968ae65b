"""The Celery tasks: thin wrappers around the chunk work (`workers.chunks`) and the scheduler."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError

from db.session import database_url
from workers.celery_app import app

# Transient: lost connections and server restarts; IntegrityError when a re-queued chunk
# races its lost twin (the retry finds the images done and does nothing).
TRANSIENT_ERRORS = (OperationalError, InterfaceError, IntegrityError)


@app.task(
    name="fer.annotate_chunk",
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=True,
    retry_backoff_max=60,
    max_retries=10,
)
def annotate_chunk(job_id: int, image_ids: list[int], options: dict, database_id: str | None = None) -> dict:
    """Annotate a chunk. ``database_id`` is the identity of the database the job was recorded in: a worker
    connected to another database refuses the task (logged as an error, not retried, nothing written)."""
    from workers.chunks import check_database, engine_for, fail_job, process_chunk

    url = database_url()
    check_database(engine_for(url), database_id)
    try:
        return process_chunk(url, job_id, image_ids, options)
    except TRANSIENT_ERRORS:
        raise  # retried with backoff
    except Exception as error:
        fail_job(url, job_id, error)
        raise


@app.task(name="fer.run_schedules", autoretry_for=(OperationalError, InterfaceError), retry_backoff=True, max_retries=5)
def run_schedules() -> list:
    """Start the incremental runs whose schedule is due; their chunks go to the queue like a `fer submit`."""
    from workers.queueing import queue_chunks_for
    from workers.scheduling import start_due_runs
    from workers.chunks import engine_for

    engine = engine_for(database_url())
    return start_due_runs(engine, queue_chunks_for(engine))
