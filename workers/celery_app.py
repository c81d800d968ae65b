"""The Celery application: configured from the environment, JSON only, late acks."""

from __future__ import annotations

import os

from celery import Celery
from celery.utils.log import get_task_logger
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError

from db.session import database_url

# A chunk runs for seconds to minutes; a message unacknowledged for longer is redelivered
# (to another worker, when the one holding it died). Tasks are idempotent, so an early
# redelivery costs time, never correctness.
VISIBILITY_TIMEOUT = int(os.environ.get("FER_VISIBILITY_TIMEOUT", "3600"))

DEFAULT_BROKER_URL = "redis://localhost:6379/0"
# How often beat asks whether a schedule is due; a schedule's own time zone decides when it is.
SCHEDULE_POLL_SECONDS = float(os.environ.get("FER_SCHEDULE_POLL_SECONDS", "60"))


# The library logs where the model runs (device, batch size) to "fer.worker": into the worker's log.
get_task_logger("fer.worker")


def broker_url() -> str:
    return os.environ.get("FER_BROKER_URL", DEFAULT_BROKER_URL)


app = Celery("fer_pipeline")
app.conf.update(
    broker_url=broker_url(),
    task_serializer="json",
    accept_content=["json"],
    result_serializer="json",
    task_ignore_result=True,
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT},
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    timezone="UTC",
    enable_utc=True,
    beat_schedule={
        "start-due-schedules": {
            "task": "fer.run_schedules",
            "schedule": SCHEDULE_POLL_SECONDS,
            "options": {"expires": SCHEDULE_POLL_SECONDS},  # a backlog of checks is useless
        },
    },
)


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
    from workers.tasks import check_database, engine_for, process_chunk

    url = database_url()
    check_database(engine_for(url), database_id)
    try:
        return process_chunk(url, job_id, image_ids, options)
    except TRANSIENT_ERRORS:
        raise  # retried with backoff
    except Exception as error:
        _fail_job(url, job_id, error)
        raise


def _fail_job(url: str, job_id: int, error: Exception) -> None:
    """A chunk that cannot run (a detector missing on this worker, a damaged model) ends its job as failed, with why."""
    from db.results import mark_job
    from workers.tasks import engine_for, failure_reason

    mark_job(engine_for(url), job_id, "failed", failure_reason(error))


def queue_chunks(job_id: int, image_ids: list[int], options: dict, database_id: str | None = None) -> None:
    """Queue a job's images as chunk tasks of ``options['chunk_size']`` images, for the database ``database_id``."""
    from workers.chunking import DEFAULT_CHUNK_SIZE, chunked

    # An explicit connection follows the broker URL read now, not one cached by an earlier call in this process.
    with app.connection_for_write() as connection:
        for chunk in chunked(image_ids, int(options.get("chunk_size", DEFAULT_CHUNK_SIZE))):
            annotate_chunk.apply_async(args=[job_id, chunk, options], kwargs={"database_id": database_id},
                                       connection=connection)


@app.task(name="fer.run_schedules", autoretry_for=(OperationalError, InterfaceError), retry_backoff=True, max_retries=5)
def run_schedules() -> list:
    """Start the incremental runs whose schedule is due; their chunks go to the queue like a `fer submit`."""
    from functools import partial

    from db.results import database_identity
    from workers.scheduling import start_due_runs
    from workers.tasks import engine_for

    engine = engine_for(database_url())
    return start_due_runs(engine, partial(queue_chunks, database_id=database_identity(engine)))
