"""The Celery application: configured from the environment, JSON only, late acks."""

from __future__ import annotations

import os

from celery import Celery
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError

from db.session import database_url

# A chunk runs for seconds to minutes; a message unacknowledged for longer is redelivered
# (to another worker, when the one holding it died). Tasks are idempotent, so an early
# redelivery costs time, never correctness.
VISIBILITY_TIMEOUT = int(os.environ.get("FER_VISIBILITY_TIMEOUT", "3600"))

DEFAULT_BROKER_URL = "redis://localhost:6379/0"


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
)


@app.task(
    name="fer.annotate_chunk",
    # Transient: lost connections and server restarts; IntegrityError when a re-queued chunk
    # races its lost twin (the retry finds the images done and does nothing).
    autoretry_for=(OperationalError, InterfaceError, IntegrityError),
    retry_backoff=True,
    retry_backoff_max=60,
    max_retries=10,
)
def annotate_chunk(job_id: int, image_ids: list[int], options: dict) -> dict:
    from workers.tasks import process_chunk

    return process_chunk(database_url(), job_id, image_ids, options)
