"""Sending a job's chunks to the broker as ANNOTATE_CHUNK_TASK messages, and taking them back when it is cancelled.

Messages name the task (`workers.queue.celery_app`): queueing needs the app, not the task's code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery.signals import before_task_publish
from kombu.exceptions import OperationalError
from kombu.utils.url import maybe_sanitize_url
from redis.exceptions import RedisError
from sqlalchemy import Engine

from db.reads import database_identity
from db.writes import update_job_options
from workers.jobs.options import JobOptions
from workers.queue.celery_app import ANNOTATE_CHUNK_TASK, app

# The message header that names a chunk's job, as "<database identity>:<job id>".
JOB_HEADER = "fer_job"

# Removes a job's messages from Redis lists (a queue and its priority lists) in one atomic step, keeping the
# others in their order. KEYS: the lists; ARGV[1]: the job's header value. Returns how many were removed.
REMOVE_JOB_MESSAGES = """
local removed = 0
local needle = '"' .. ARGV[1] .. '"'
for _, key in ipairs(KEYS) do
  local messages = redis.call('LRANGE', key, 0, -1)
  local kept = {}
  local dropped = 0
  for _, message in ipairs(messages) do
    local ours = false
    if string.find(message, needle, 1, true) then
      local ok, decoded = pcall(cjson.decode, message)
      ours = ok and type(decoded) == 'table' and type(decoded.headers) == 'table'
             and decoded.headers.fer_job == ARGV[1]
    end
    if ours then dropped = dropped + 1 else kept[#kept + 1] = message end
  end
  if dropped > 0 then
    redis.call('DEL', key)
    for first = 1, #kept, 1000 do
      redis.call('RPUSH', key, unpack(kept, first, math.min(first + 999, #kept)))
    end
  end
  removed = removed + dropped
end
return removed
"""


class BrokerUnreachable(Exception):
    """The broker could not be reached (the message says which and why)."""


def job_tag(job_id: int, database_id: str | None) -> str:
    return f"{database_id or ''}:{job_id}"


def queue_chunks(job_id: int, image_ids: list[int], options: JobOptions, database_id: str | None = None,
                 broker_url: str | None = None) -> None:
    """Queue a job's images on ``broker_url`` (default: the app's) as chunk tasks of ``options.chunk_size`` images,
    for the database ``database_id``."""
    message = options.to_dict()  # task messages are JSON
    # An explicit connection to the broker given, not one cached by an earlier call in this process.
    with app.connection_for_write(broker_url) as connection:
        for chunk in options.chunks_of(image_ids):
            app.send_task(ANNOTATE_CHUNK_TASK, args=[job_id, chunk, message], kwargs={"database_id": database_id},
                          headers={JOB_HEADER: job_tag(job_id, database_id)}, connection=connection)


@before_task_publish.connect
def _short_arguments_repr(sender: str | None = None, headers: dict | None = None, body: Any = None, **_: Any) -> None:
    """A chunk message names its job and image count instead of repeating its arguments in ``argsrepr``."""
    if sender != ANNOTATE_CHUNK_TASK or headers is None:
        return
    try:
        job_id, ids = body[0][0], body[0][1]
    except (TypeError, IndexError, KeyError):
        return
    headers["argsrepr"] = f"(job {job_id}, {len(ids)} image id{'' if len(ids) == 1 else 's'})"
    headers["kwargsrepr"] = "{}"


def queue_chunks_for(engine: Engine, broker_url: str | None = None) -> Callable[[int, list[int], JobOptions], None]:
    """``queue_chunks`` on ``broker_url``, bound to the identity of the database ``engine`` writes to; the job is
    marked as queued first (`fer cancel` then knows to take its messages back from the broker)."""
    database_id = database_identity(engine)

    def queue(job_id: int, image_ids: list[int], options: JobOptions) -> None:
        update_job_options(engine, job_id, {"queued": True})
        queue_chunks(job_id, image_ids, options, database_id=database_id, broker_url=broker_url)

    return queue


def remove_queued_chunks(job_id: int, database_id: str | None, broker_url: str | None = None) -> int | None:
    """Take the job's chunk messages that no worker has fetched yet out of the queue of ``broker_url`` (default:
    the app's); returns how many (None: the broker is not Redis, whose queues cannot be edited; workers drop such
    chunks as they reach them). Raises BrokerUnreachable."""
    try:
        with app.connection_for_write(broker_url) as connection:
            connection.ensure_connection(max_retries=1, timeout=5)
            if connection.transport.driver_type != "redis":
                return None
            channel = connection.default_channel
            queue = app.conf.task_default_queue
            keys = [queue] + [f"{queue}{channel.sep}{step}" for step in channel.priority_steps if step]
            return int(channel.client.eval(REMOVE_JOB_MESSAGES, len(keys), *keys, job_tag(job_id, database_id)))
    except (OperationalError, OSError, RedisError) as error:
        raise BrokerUnreachable(f"cannot reach the broker at {maybe_sanitize_url(broker_url or app.conf.broker_url)} "
                                f"({error})") from error
