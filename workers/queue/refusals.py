"""Tasks refused by a worker connected to another database, noted on the broker.

The refusing worker cannot write to the job's database (it does not know it), so it leaves a
note on the broker, which both sides share; `fer status` on the job's side reads it and says
why the job does not move. Notes expire after a day. Redis brokers only; any broker error is
ignored here (the worker logs the refusal anyway).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

NOTE_SECONDS = 24 * 3600


def _key(database_id: str, job_id: int) -> str:
    return f"fer-pipeline:refused:{database_id}:{job_id}"


def _client(broker_url: str):
    import redis  # redis-py loads only where a note is written or read

    if not broker_url.startswith(("redis://", "rediss://", "unix://")):
        return None
    return redis.Redis.from_url(broker_url, socket_connect_timeout=2, socket_timeout=2)


def note_refusal(broker_url: str, database_id: str, job_id: int, worker: str, worker_database: str) -> None:
    """Record that ``worker``, connected to ``worker_database``, refused a task of job ``job_id`` of ``database_id``."""
    try:
        client = _client(broker_url)
        if client is not None:
            note = {"worker": worker, "database": worker_database, "at": dt.datetime.now(dt.timezone.utc).isoformat()}
            client.set(_key(database_id, job_id), json.dumps(note), ex=NOTE_SECONDS)
    except Exception:  # noqa: BLE001 - a note is a courtesy; the refusal itself is logged
        pass


def refusal(broker_url: str, database_id: str | None, job_id: int) -> dict[str, Any] | None:
    """The latest refusal noted for this job of this database (worker, database, at), or None."""
    if database_id is None:
        return None
    try:
        client = _client(broker_url)
        raw = client.get(_key(database_id, job_id)) if client is not None else None
    except Exception:  # noqa: BLE001 - an unreachable broker has no note to give
        return None
    return json.loads(raw) if raw else None


def refusal_message(note: dict[str, Any]) -> str:
    return (f"a worker connected to another database refused this job's tasks ({note['worker']} writes to "
            f"{note['database']}, last at {note['at'][:19].replace('T', ' ')} UTC); they stay queued for a worker on "
            "this database: point that worker's FER_DATABASE_URL (or --db) here")
