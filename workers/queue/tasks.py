"""The Celery tasks: thin wrappers around the chunk work (`workers.chunks.work`) and the scheduler."""

from __future__ import annotations

import os
import time

from celery.exceptions import Reject
from celery.utils.log import get_task_logger
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError

from db.session import engine_for
from workers.chunks.work import WrongDatabase, check_database, fail_job, process_chunk
from workers.jobs.options import JobOptions
from workers.queue.celery_app import ANNOTATE_CHUNK_TASK, RUN_SCHEDULES_TASK, app, worker_database_url
from workers.queue.queueing import queue_chunks_for
from workers.queue.refusals import note_refusal
from workers.queue.scheduling import start_due_runs

log = get_task_logger(__name__)

# Transient: lost connections and server restarts; IntegrityError when a re-queued chunk
# races its lost twin (the retry finds the images done and does nothing).
TRANSIENT_ERRORS = (OperationalError, InterfaceError, IntegrityError)


# How long a worker on the wrong database holds a refused chunk before putting it back at the end of the
# queue: a worker alone with such chunks takes them in turn without spinning.
REFUSED_TASK_PAUSE = float(os.environ.get("FER_REFUSED_TASK_PAUSE", "5"))


@app.task(
    bind=True,
    name=ANNOTATE_CHUNK_TASK,
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=True,
    retry_backoff_max=60,
    max_retries=10,
)
def annotate_chunk(self, job_id: int, image_ids: list[int], options: dict, database_id: str | None = None) -> dict:
    """Annotate a chunk. ``database_id`` is the identity of the database the job was recorded in: a worker
    connected to another database refuses the task (logged as an error, nothing written) and puts the chunk
    back in the queue for a worker on that database, with a note on the broker that `fer status` reads."""
    url = worker_database_url()
    engine = engine_for(url)
    try:
        check_database(engine, database_id)
    except WrongDatabase as error:
        log.error("%s; the chunk goes back to the queue for a worker on that database", error)
        note_refusal(self.app.conf.broker_url, str(database_id), job_id, self.request.hostname or "a worker",
                     engine.url.render_as_string(hide_password=True))
        time.sleep(REFUSED_TASK_PAUSE)
        raise Reject(str(error), requeue=True) from None
    try:
        return process_chunk(url, job_id, image_ids, JobOptions.from_dict(options))
    except TRANSIENT_ERRORS:
        raise  # retried with backoff
    except Exception as error:
        fail_job(url, job_id, error)
        raise


@app.task(name=RUN_SCHEDULES_TASK, autoretry_for=(OperationalError, InterfaceError), retry_backoff=True, max_retries=5)
def run_schedules() -> list:
    """Start the incremental runs whose schedule is due; their chunks go to the queue like a `fer submit`."""
    engine = engine_for(worker_database_url())
    return start_due_runs(engine, queue_chunks_for(engine, app.conf.broker_url))
