"""The library under the CLI: annotate or submit folders, retry or cancel a job.

The functions return summaries and raise `PipelineError`s whose messages are written for
people; they never print. Progress is reported to a `RunProgress` the caller passes in.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import Engine

from workers.options import JobOptions


class PipelineError(Exception):
    """A run that cannot start or go on; the message says why and what to do."""


class NotStarted(PipelineError):
    """Another run over overlapping folders is still going: job ``job_id`` over ``roots``."""

    def __init__(self, message: str, job_id: int, roots: Sequence[str] = ()):
        super().__init__(message)
        self.job_id = job_id
        self.roots = list(roots)


class Interrupted(PipelineError):
    """Ctrl-C or SIGTERM stopped the run; the job keeps what was finished."""


class NoSuchJob(PipelineError):
    pass


class RunProgress(Protocol):
    def start(self, total: int, description: str) -> None: ...

    def advance(self, images: int, description: str) -> None: ...


class FollowProgress(Protocol):
    def start(self, total: int, description: str) -> None: ...

    def set_completed(self, images: int) -> None: ...

    def warn(self, message: str) -> None: ...


@dataclass
class Found:
    """The image files under the folders given, the entries skipped as not image files (path, reason), and the
    folders that could not be listed (path, reason)."""

    paths: tuple[str, ...]
    files: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    ext: str = ",".join(JobOptions.extensions)
    unlisted: list[tuple[str, str]] = field(default_factory=list)


def find_files(paths: Sequence[str], recursive: bool, ext: str, follow_symlinks: bool = False) -> Found:
    """The image files under ``paths``; may be empty (an incremental run over an emptied folder records what
    went missing)."""
    from workers.discovery import DiscoveryError, find_images, parse_extensions

    skipped: list[tuple[str, str]] = []
    unlisted: list[tuple[str, str]] = []
    try:
        files = list(find_images(paths, recursive=recursive, extensions=parse_extensions(ext),
                                 follow_symlinks=follow_symlinks, skipped=skipped, unlisted=unlisted))
    except DiscoveryError as error:
        raise PipelineError(str(error)) from error
    return Found(tuple(paths), files, skipped, ext, unlisted)


def check_model(model: str) -> None:
    from fer_model.registry import ModelNotFound, resolve_model

    try:
        resolve_model(model)
    except ModelNotFound as error:
        raise PipelineError(str(error)) from error


def check_detector(detector: str) -> None:
    from workers.detector_names import detector_problem

    problem = detector_problem(detector)
    if problem is not None:
        raise PipelineError(problem)


def allowed_roots(paths: Sequence[str]) -> list[str]:
    """The folders a job may read: each folder given, and the folder of each file given."""
    roots = []
    for path in paths:
        absolute = os.path.abspath(path)
        roots.append(absolute if os.path.isdir(absolute) else os.path.dirname(absolute))
    return roots


def job_options(options: JobOptions) -> dict[str, Any]:
    """The job's options, checked before any job is recorded: an unknown or uninstalled model or detector stops here."""
    check_model(options.model)
    check_detector(options.detector)
    return options.to_dict()


def start_job(engine: Engine, found: Found, options: dict[str, Any], schedule_id: int | None = None):
    """Record the job (a full pass, or an incremental run of what changed), by a schedule when ``schedule_id``
    is given; returns the PreparedJob."""
    from db.incremental import STALE_RUN_HOURS
    from db.overlap import RunStillGoing
    from workers.submission import Listing, NoImages, prepare_job

    listing = Listing(len(found.skipped), found.unlisted)
    try:
        job = prepare_job(engine, [os.path.abspath(p) for p in found.paths], found.files, options,
                          schedule_id=schedule_id, listing=listing)
    except NoImages:
        unlisted = "".join(f"; {path}: {reason}" for path, reason in found.unlisted)
        raise PipelineError(f"no images found in {', '.join(found.paths)} (extensions: {found.ext}){unlisted}") from None
    except RunStillGoing as error:
        raise NotStarted(
            f"not started: job {error.job_id} over {', '.join(error.roots)} is still running, and this run's folders "
            f"overlap it (a job counts as running until {STALE_RUN_HOURS:g} h without progress). If its process died, "
            f"end it with `fer cancel {error.job_id}` or finish it with `fer retry {error.job_id} --local`.",
            error.job_id, error.roots,
        ) from None
    return job


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
    from db.writes import mark_job

    with interrupts_held():
        mark_job(engine, job_id, "interrupted", "interrupted (Ctrl-C or SIGTERM)", if_unfinished=True)
    return Interrupted(f"interrupted; job {job_id} keeps what was finished; finish it with `{resume_command}`")


def run_locally(engine: Engine, database_url: str, job_id: int, ids: list[int], options: dict[str, Any],
                processes: int, progress: RunProgress, resume_command: str | None = None):
    """Run the images' chunks in local processes; returns the StageSeconds.

    Ctrl-C or SIGTERM marks the job interrupted; any other error marks it failed with the reason, in one
    line. The detection processes ignore Ctrl-C (a terminal sends it to all of them): this process stops them.
    """
    from workers.chunking import chunked
    from workers.chunks import failure_reason
    from workers.local import run_locally as run_chunks
    from db.writes import mark_job

    resume_command = resume_command or f"fer retry {job_id} --local"
    job = JobOptions.from_dict(options)
    chunks = chunked(ids, job.chunk_size)
    try:
        with sigterm_as_interrupt():
            progress.start(len(ids), f"job {job_id}: loading model {job.model} and detector {job.detector} ...")
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


def queue_job(engine: Engine, job_id: int, ids: list[int], options: dict[str, Any]) -> None:
    """Queue the images in chunks, for this database. Ctrl-C or SIGTERM part-way marks the job 'interrupted'."""
    from db.writes import mark_job
    from workers.queueing import queue_chunks_for

    try:
        with sigterm_as_interrupt():
            queue_chunks_for(engine)(job_id, ids, options)
    except KeyboardInterrupt:
        with interrupts_held():
            mark_job(engine, job_id, "interrupted", "interrupted while queueing")
        raise Interrupted(f"interrupted while queueing job {job_id}; queue the rest with `fer retry {job_id}`") \
            from None


def annotate_folder(engine: Engine, database_url: str, found: Found, options: dict[str, Any], processes: int,
                    progress: RunProgress) -> dict[str, Any]:
    """Annotate the files found, here and now; returns the job's summary with timings and the skipped entries."""
    from db.reads import job_summary
    from db.writes import finish_job_if_complete
    from workers.stages import StageSeconds

    started = time.monotonic()
    job = start_job(engine, found, options)
    stage_seconds = StageSeconds()
    try:
        if job.image_ids:
            stage_seconds = run_locally(engine, database_url, job.job_id, job.image_ids, options, processes, progress)
        finish_job_if_complete(engine, job.job_id)
    except KeyboardInterrupt:  # between the steps: the job is recorded, so it ends as interrupted too
        raise interrupted(engine, job.job_id, f"fer retry {job.job_id} --local") from None
    summary = job_summary(engine, job.job_id)
    summary["seconds"] = round(time.monotonic() - started, 2)
    summary["stage_seconds"] = stage_seconds.as_dict()
    summary["skipped_files"] = [{"path": path, "reason": reason} for path, reason in found.skipped]
    return summary


def submit_folder(engine: Engine, found: Found, options: dict[str, Any]):
    """Record a job for the files found and queue it for workers; returns the PreparedJob (id, images queued)."""
    job = start_job(engine, found, options)
    queue_job(engine, job.job_id, job.image_ids, options)
    return job


def retry_options(engine: Engine, job_id: int, changes: dict[str, Any]) -> dict[str, Any]:
    """JOB's options, with some changed from now on (model, detector, min face, chunk size), checked first."""
    from db.reads import job_options as stored_options
    from db.writes import update_job_options

    options = stored_options(engine, job_id)
    if options is None:
        raise NoSuchJob(f"no job {job_id}")
    if changes.get("model"):
        check_model(changes["model"])
    if changes.get("detector"):
        check_detector(changes["detector"])
    if changes:
        options = update_job_options(engine, job_id, changes)
    return options


def retry_job(engine: Engine, database_url: str, job_id: int, options: dict[str, Any], include_failed: bool,
              local: bool, processes: int, progress: RunProgress,
              announce: Callable[[int], None] = lambda images: None) -> int:
    """Reopen JOB and process its pending images (with ``include_failed``, its failed ones too): here with
    ``local``, else queued for workers. ``announce(images)`` once the images to process are known; returns
    their number."""
    from db.writes import reopen_job

    ids = reopen_job(engine, job_id, include_failed=include_failed)
    announce(len(ids))
    if ids and local:
        run_locally(engine, database_url, job_id, ids, options, processes, progress, f"fer retry {job_id} --local")
    elif ids:
        queue_job(engine, job_id, ids, options)
    return len(ids)


def use_broker(broker: str | None) -> None:
    """``broker`` wins over $FER_BROKER_URL, for this process and the workers it starts."""
    if broker:
        os.environ["FER_BROKER_URL"] = broker
    from workers.celery_app import app, broker_url

    app.conf.broker_url = broker_url()


def check_broker(broker: str | None = None) -> None:
    """Use ``broker`` (else $FER_BROKER_URL) and make sure it answers."""
    from kombu.exceptions import OperationalError as BrokerError
    from kombu.utils.url import maybe_sanitize_url

    from workers.celery_app import app

    use_broker(broker)
    try:
        with app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=5)
    except (BrokerError, OSError) as error:
        raise PipelineError(
            f"cannot reach the broker at {maybe_sanitize_url(app.conf.broker_url)} ({error}). Start Redis "
            "(e.g. `redis-server` or `docker compose up -d redis`), set FER_BROKER_URL, "
            "or annotate without servers: `fer annotate PATH`."
        ) from error


@dataclass
class Cancelled:
    """What `cancel_job` did: the status the job had, and how many of its chunk messages it took off the broker's
    queue (None: none were queued, or the broker's queues cannot be edited); ``broker_problem`` when the broker
    could not be reached."""

    previous: str
    removed: int | None = None
    broker_problem: str | None = None


def cancel_job(engine: Engine, job_id: int, broker: str | None = None) -> Cancelled:
    """End a queued or running job, and take its chunks that no worker has fetched yet off the queue (of
    ``broker``, else $FER_BROKER_URL), so that workers are free at once."""
    from db.reads import database_identity
    from db.reads import job_options as stored_options
    from db.writes import cancel_job as cancel
    from workers.queueing import BrokerUnreachable, remove_queued_chunks

    previous = cancel(engine, job_id)
    if previous is None:
        raise NoSuchJob(f"no job {job_id}")
    outcome = Cancelled(previous)
    if previous != "finished" and (stored_options(engine, job_id) or {}).get("queued"):
        use_broker(broker)
        try:
            outcome.removed = remove_queued_chunks(job_id, database_identity(engine))
        except BrokerUnreachable as error:
            outcome.broker_problem = str(error)
    return outcome


def _no_worker_seconds() -> float:
    return float(os.environ.get("FER_NO_WORKER_SECONDS", "30"))


def workers_answering() -> bool | None:
    """Whether any Celery worker answers a ping on the broker (None: the broker cannot be reached)."""
    from workers.celery_app import app

    use_broker(None)
    try:
        # A connection of its own, closed here: a pooled one left waiting on the broker would be inherited by
        # processes this one forks later (a local run), whose after-fork clean-up then waits on it.
        with app.connection_for_write() as connection:
            return bool(app.control.inspect(timeout=1.0, connection=connection).ping())
    except Exception:  # noqa: BLE001 - kombu raises several kinds for an unreachable broker
        return None


def refused_reason(engine: Engine, job_id: int) -> str | None:
    """Why the workers do not take this job's tasks, when a worker connected to another database refused them
    (a note on the broker); None otherwise."""
    from db.reads import database_identity
    from workers.celery_app import broker_url
    from workers.refusals import refusal, refusal_message

    use_broker(None)
    note = refusal(broker_url(), database_identity(engine), job_id)
    return refusal_message(note) if note else None


def follow_job(engine: Engine, job_id: int, progress: FollowProgress, poll: float = 1.0,
               timeout: float | None = None) -> bool:
    """Follow a job until it ends; True when it ended, False at ``timeout`` seconds.

    When nothing has moved for FER_NO_WORKER_SECONDS (30), warn once: that a worker connected to another
    database refused its tasks, or that no worker answers a ping.
    """
    from kombu.utils.url import maybe_sanitize_url

    from db.reads import job_summary
    from workers.celery_app import broker_url

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
            refused = refused_reason(engine, job_id)
            if refused:
                warned = True
                progress.warn(f"Job {job_id} is not moving: {refused}.")
            answering = True if refused else workers_answering()
            if not answering:
                warned = True
                progress.warn(
                    f"No worker seems to be consuming the queue at {maybe_sanitize_url(broker_url())}: no progress for "
                    f"{now - last_change:.0f} s and no worker answered a ping"
                    + (" (the broker cannot be reached)" if answering is None else "")
                    + ". Start one with `fer worker`, or finish the job here with "
                    f"`fer retry {job_id} --local`."
                )
        if timeout is not None and now - started >= timeout:
            return False
        time.sleep(poll)
