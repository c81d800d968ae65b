"""The broker as the library sees it: does it answer, does any worker answer, did a worker refuse a job's tasks.

Each call opens a connection of its own to the broker URL it is given and closes it at once: a pooled
connection left waiting on the broker would be inherited by processes this one forks later (a local
run), whose after-fork clean-up then waits on it.
"""

from __future__ import annotations

from sqlalchemy import Engine

from db.reads import database_identity
from workers.jobs.errors import PipelineError
from workers.queue.broker_url import shown
from workers.queue.refusals import refusal, refusal_message


def check_broker(broker_url: str) -> None:
    """Make sure the broker answers; PipelineError says what to do when it does not."""
    # Celery and kombu load only in the calls that reach the broker.
    from kombu.exceptions import OperationalError as BrokerError

    from workers.queue.celery_app import app

    try:
        with app.connection_for_write(broker_url) as connection:
            connection.ensure_connection(max_retries=1, timeout=5)
    except (BrokerError, OSError) as error:
        raise PipelineError(
            f"cannot reach the broker at {shown(broker_url)} ({error}). Start Redis "
            "(e.g. `redis-server` or `docker compose up -d redis`), set FER_BROKER_URL, "
            "or annotate without servers: `fer annotate PATH`."
        ) from error


def workers_answering(broker_url: str) -> bool | None:
    """Whether any Celery worker answers a ping on the broker (None: the broker cannot be reached)."""
    from workers.queue.celery_app import app  # Celery loads only in the calls that reach the broker

    try:
        with app.connection_for_write(broker_url) as connection:
            return bool(app.control.inspect(timeout=1.0, connection=connection).ping())
    except Exception:  # noqa: BLE001 - kombu raises several kinds for an unreachable broker
        return None


def refused_reason(engine: Engine, broker_url: str, job_id: int) -> str | None:
    """Why the workers do not take this job's tasks, when a worker connected to another database refused them
    (a note on the broker); None otherwise."""
    note = refusal(broker_url, database_identity(engine), job_id)
    return refusal_message(note) if note else None
