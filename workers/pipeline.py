"""The runs under the library API (`workers.archive.Archive`): record a job, run it here or queue it, retry it,
follow it.

The functions return summaries and raise `PipelineError`s whose messages are written for
people; they never print. Progress is reported to the progress object the caller passes in.
Options travel as a `JobOptions`; the database as its URL (each process makes its engine once,
`db.session.engine_for`), the broker as its URL.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine

from db.reads import job_summary, stored_job_options
from db.session import engine_for
from db.writes import finish_job_if_complete, mark_job, reopen_job, update_job_options
from workers.chunks.stages import StageSeconds
from workers.jobs.errors import Interrupted, NoSuchJob, PipelineError
from workers.jobs.options import JobOptions
from workers.jobs.starting import Found, check_detector, check_model, start_job
from workers.jobs.submission import PreparedJob
from workers.progress import FollowProgress, RunProgress
from workers.queue.broker import refused_reason, workers_answering
from workers.queue.broker_url import shown


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM stops the block as Ctrl-C does (KeyboardInterrupt), so either ends the job the same way."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def interrupts_held() -> Iterator[None]:
    """Ctrl-C and SIGTERM wait while the block records how a run ended (a second Ctrl-C must not cut that short)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def interrupted(engine: Engine, job_id: int, resume_command: str) -> Interrupted:
    """Mark the job interrupted unless it has already ended (finished, or failed with its reason); the error to raise."""
    with interrupts_held():
        mark_job(engine, job_id, "interrupted", "interrupted (Ctrl-C or SIGTERM)", if_unfinished=True)
    return Interrupted(f"interrupted; job {job_id} keeps what was finished; finish it with `{resume_command}`")


def run_job_here(database_url: str, job_id: int, ids: list[int], options: JobOptions, processes: int,
                 progress: RunProgress, resume_command: str | None = None):
    """Run the images' chunks in local processes; returns the StageSeconds.

    Ctrl-C or SIGTERM marks the job interrupted; any other error marks it failed with the reason, in one
    line. The detection processes ignore Ctrl-C (a terminal sends it to all of them): this process stops them.
    """
    # OpenCV and NumPy load only in the calls that run chunks here.
    from workers.chunks.local import run_chunks
    from workers.chunks.work import failure_reason

    engine = engine_for(database_url)
    resume_command = resume_command or f"fer retry {job_id} --local"
    chunks = options.chunks_of(ids)
    try:
        with sigterm_as_interrupt():
            progress.start(len(ids), f"job {job_id}: loading model {options.model} and detector {options.detector} ...")
            return run_chunks(database_url, job_id, chunks, options, min(processes, len(ids)),
                               on_chunk_done=lambda images: progress.advance(images, f"job {job_id}"))
    except KeyboardInterrupt:
        raise interrupted(engine, job_id, resume_command) from None
    except Exception as error:  # noqa: BLE001 - whatever stopped the run ends the job, with its reason
        with interrupts_held():
            reason = failure_reason(error)
            mark_job(engine, job_id, "failed", reason)
        raise PipelineError(f"job {job_id} failed: {reason}. It keeps what was finished; fix the cause and finish it "
                            f"with `{resume_command}` (it takes --detector, --model, --min-face)") from error


def queue_job(engine: Engine, broker_url: str, job_id: int, ids: list[int], options: JobOptions) -> None:
    """Queue the images in chunks on the broker, for this database. Ctrl-C or SIGTERM part-way marks the job
    'interrupted'."""
    from workers.queue.queueing import queue_chunks_for  # Celery loads only in the calls that queue

    try:
        with sigterm_as_interrupt():
            queue_chunks_for(engine, broker_url)(job_id, ids, options)
    except KeyboardInterrupt:
        with interrupts_held():
            mark_job(engine, job_id, "interrupted", "interrupted while queueing")
        raise Interrupted(f"interrupted while queueing job {job_id}; queue the rest with `fer retry {job_id}`") \
            from None


def annotate_folder(database_url: str, found: Found, options: JobOptions, processes: int,
                    progress: RunProgress) -> dict[str, Any]:
    """Annotate the files found, here and now; returns the job's summary with timings and the skipped entries."""
    engine = engine_for(database_url)
    started = time.monotonic()
    job = start_job(engine, found, options)
    stage_seconds = StageSeconds()
    try:
        if job.image_ids:
            stage_seconds = run_job_here(database_url, job.job_id, job.image_ids, options, processes, progress)
        finish_job_if_complete(engine, job.job_id)
    except KeyboardInterrupt:  # between the steps: the job is recorded, so it ends as interrupted too
        raise interrupted(engine, job.job_id, f"fer retry {job.job_id} --local") from None
    summary = job_summary(engine, job.job_id)
    summary["seconds"] = round(time.monotonic() - started, 2)
    summary["stage_seconds"] = stage_seconds.as_dict()
    summary["skipped_files"] = [{"path": path, "reason": reason} for path, reason in found.skipped]
    return summary


def submit_folder(engine: Engine, broker_url: str, found: Found, options: JobOptions) -> PreparedJob:
    """Record a job for the files found and queue it for workers; returns it (id, images queued)."""
    job = start_job(engine, found, options)
    queue_job(engine, broker_url, job.job_id, job.image_ids, options)
    return job


def retry_options(engine: Engine, job_id: int, changes: dict[str, Any]) -> JobOptions:
    """JOB's options, with some changed from now on (model, detector, min face, chunk size), checked first."""
    options = stored_job_options(engine, job_id)
    if options is None:
        raise NoSuchJob(f"no job {job_id}")
    if changes.get("model"):
        check_model(changes["model"])
    if changes.get("detector"):
        check_detector(changes["detector"])
    if changes:
        options = update_job_options(engine, job_id, changes)
    return JobOptions.from_dict(options)


def retry_job(database_url: str, broker_url: str, job_id: int, options: JobOptions, include_failed: bool,
              local: bool, processes: int, progress: RunProgress,
              announce: Callable[[int], None] = lambda images: None) -> int:
    """Reopen JOB and process its pending images (with ``include_failed``, its failed ones too): here with
    ``local``, else queued for workers. ``announce(images)`` once the images to process are known; returns
    their number."""
    engine = engine_for(database_url)
    ids = reopen_job(engine, job_id, include_failed=include_failed)
    announce(len(ids))
    if ids and local:
        run_job_here(database_url, job_id, ids, options, processes, progress, f"fer retry {job_id} --local")
    elif ids:
        queue_job(engine, broker_url, job_id, ids, options)
    return len(ids)


def _no_worker_seconds() -> float:
    return float(os.environ.get("FER_NO_WORKER_SECONDS", "30"))


def follow_job(engine: Engine, broker_url: str, job_id: int, progress: FollowProgress, poll: float = 1.0,
               timeout: float | None = None) -> bool:
    """Follow a job until it ends; True when it ended, False at ``timeout`` seconds.

    When nothing has moved for FER_NO_WORKER_SECONDS (30), warn once: that a worker connected to another
    database refused its tasks, or that no worker answers a ping on ``broker_url``.
    """
    started = last_change = time.monotonic()
    warned = False
    completed = -1
    while True:
        summary = job_summary(engine, job_id)
        images = summary["images"]
        if completed < 0:
            progress.start(images["total"], f"job {job_id}")
        if images["done"] + images["failed"] != completed:
            completed, last_change = images["done"] + images["failed"], time.monotonic()
        progress.set_completed(completed)
        if summary["status"] in ("finished", "failed", "cancelled"):
            return True
        now = time.monotonic()
        if not warned and now - last_change >= _no_worker_seconds():
            refused = refused_reason(engine, broker_url, job_id)
            if refused:
                warned = True
                progress.warn(f"Job {job_id} is not moving: {refused}.")
            answering = True if refused else workers_answering(broker_url)
            if not answering:
                warned = True
                progress.warn(
                    f"No worker seems to be consuming the queue at {shown(broker_url)}: no progress for "
                    f"{now - last_change:.0f} s and no worker answered a ping"
                    + (" (the broker cannot be reached)" if answering is None else "")
                    + ". Start one with `fer worker`, or finish the job here with "
                    f"`fer retry {job_id} --local`."
                )
        if timeout is not None and now - started >= timeout:
            return False
        time.sleep(poll)
