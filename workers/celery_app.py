"""The Celery application and its configuration: from the environment, JSON only, late acks."""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import worker_init, worker_process_init
from celery.utils.log import get_task_logger

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


app = Celery("fer_pipeline", include=["workers.tasks"])
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


@worker_init.connect
@worker_process_init.connect
def _init_worker_process(**_: object) -> None:
    """Per-process state of every pool process (and of the worker itself, for the solo and threads pools)."""
    from workers.chunks import init_process

    init_process()
