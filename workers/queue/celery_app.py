"""The Celery application and its configuration (JSON only, late acks), and starting a worker or beat.

The broker and the worker's database are given by whoever starts the process (`configure`);
nothing here reads them from the environment.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from celery import Celery
from celery.signals import worker_init, worker_process_init
from celery.utils.log import get_task_logger

from workers.queue.broker_url import DEFAULT_BROKER_URL

# A chunk runs for seconds to minutes; a message unacknowledged for longer is redelivered
# (to another worker, when the one holding it died). Tasks are idempotent, so an early
# redelivery costs time, never correctness.
VISIBILITY_TIMEOUT = int(os.environ.get("FER_VISIBILITY_TIMEOUT", "3600"))

# How often beat asks whether a schedule is due; a schedule's own time zone decides when it is.
SCHEDULE_POLL_SECONDS = float(os.environ.get("FER_SCHEDULE_POLL_SECONDS", "60"))


# The library logs where the model runs (device, batch size) to "fer.worker": into the worker's log.
get_task_logger("fer.worker")


@dataclass
class WorkerSettings:
    database_url: str | None = None  # the database this process's tasks write to


# Set by `configure` before a worker's pool processes fork; they inherit it.
settings = WorkerSettings()


# The tasks by name: messages and beat's schedule name them, so these stay as they are whatever module holds them.
ANNOTATE_CHUNK_TASK = "fer.annotate_chunk"
RUN_SCHEDULES_TASK = "fer.run_schedules"

app = Celery("fer_pipeline", include=["workers.queue.tasks"])
app.conf.update(
    broker_url=DEFAULT_BROKER_URL,
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
            "task": RUN_SCHEDULES_TASK,
            "schedule": SCHEDULE_POLL_SECONDS,
            "options": {"expires": SCHEDULE_POLL_SECONDS},  # a backlog of checks is useless
        },
    },
)


def configure(broker_url: str, database_url: str | None = None) -> None:
    """Point this process's Celery app at ``broker_url`` and, in a worker, its tasks at ``database_url``."""
    app.conf.broker_url = broker_url
    settings.database_url = database_url


def worker_database_url() -> str:
    """The database this worker's tasks write to."""
    if not settings.database_url:
        raise RuntimeError("this worker has no database: start it with `fer worker --db URL` (Archive.run_worker)")
    return settings.database_url


def start_worker(broker_url: str, database_url: str, concurrency: int, pool: str, loglevel: str) -> None:
    """Run a Celery worker in this process until it is stopped."""
    configure(broker_url, database_url)
    app.worker_main(["worker", f"--concurrency={concurrency}", f"--pool={pool}", f"--loglevel={loglevel}"])


def start_beat(broker_url: str, schedule_file: str, loglevel: str) -> None:
    """Run Celery beat in this process until it is stopped: it queues RUN_SCHEDULES_TASK every
    SCHEDULE_POLL_SECONDS."""
    configure(broker_url)
    app.start(["beat", f"--loglevel={loglevel}", f"--schedule={schedule_file}"])


@worker_init.connect
@worker_process_init.connect
def _init_worker_process(**_: object) -> None:
    """Per-process state of every pool process (and of the worker itself, for the solo and threads pools)."""
    from workers.chunks.work import init_process  # OpenCV loads in workers only, not where chunks are queued

    init_process()
