"""The library API: `Archive`, one object for one results database and the broker its workers share.

    from workers import Archive, JobOptions

    archive = Archive("sqlite:////srv/fer/fer.db")
    summary = archive.annotate(["/srv/photos"], JobOptions(min_face="2%"))
    print(archive.report(by="folder")["rows"])

Named for what it stands for, as sqlite-utils' `Database` stands for a database: a photo
archive and the annotations recorded for it. It lives in `workers/`, the package that does the
work it drives (runs here or on Celery workers, schedules), and is what `workers` exports.
Every `fer` command parses its options, makes one call here and prints what it returns.

Settings are explicit: the database URL and the broker URL are given to the constructor and
nothing is read from the environment for them (the command line reads `FER_DATABASE_URL` and
`FER_BROKER_URL`). The engine is made once per process for the URL (`db.session.engine_for`).
Methods return plain data (dicts, dataclasses), never print, report progress to the object
passed as ``progress`` (by default one that does nothing) and raise `PipelineError`s whose
messages say what to do (`NotStarted`: another run over the same folders is going;
`Interrupted`: Ctrl-C or SIGTERM). Calls that only read (status, report, export, query,
compare, schedules) refuse a database that holds no fer-pipeline schema and create nothing.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Engine

from db.compare import CompareError, compare_models
from db.models import utcnow
from db.query import QueryError, QueryRefused, QueryResult, run_read_only_query
from db.reads import breakdown, database_identity, stored_job_options
from db.schedules import ScheduleError, list_schedules, local_zone_name, next_run
from db.schedules import add_schedule as store_schedule
from db.schedules import remove_schedule as delete_schedule
from db.session import DatabaseError, current_revision, engine_for, parse_database_url
from db.writes import mark_cancelled
from fer_model.files import data_home
from reports.export import write_export, write_rows
from workers import pipeline
from workers.database import check_fer_database, upgraded_engine
from workers.jobs.errors import NoSuchJob, PipelineError
from workers.jobs.options import JobOptions
from workers.jobs.starting import check_options, files_and_options
from workers.progress import NO_PROGRESS, FollowProgress, Progress, RunProgress
from workers.queue.broker import check_broker, refused_reason
from workers.queue.broker_url import DEFAULT_BROKER_URL
from workers.report_views import (job_summary_of, model_choice, quiet_night_view, quiet_run_view, report_view,
                                  resolve_job)

Paths = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]  # one path, or several
REPORT_BREAKDOWNS = ("emotion", "folder", "day")
EXPORT_FORMATS = ("csv", "jsonl")


@dataclass(frozen=True)
class Submitted:
    """A job recorded and queued: its id, the images queued and in how many chunks; with ``wait``, its report."""

    job_id: int
    images: int
    chunks: int
    summary: dict[str, Any] | None = None


@dataclass(frozen=True)
class Retried:
    """A job reopened: the images it processes again; its report when it ran here or was waited for."""

    job_id: int
    images: int
    summary: dict[str, Any] | None = None


@dataclass(frozen=True)
class Cancelled:
    job_id: int
    previous: str  # the status it had: pending, running, interrupted, failed (or finished, cancelled: unchanged)
    # Its chunk messages taken off the broker's queue (None: none were queued, or the broker's queues cannot be
    # edited), and why the broker could not be reached when it could not.
    removed: int | None = None
    broker_problem: str | None = None


@dataclass(frozen=True)
class JobStatus:
    """A job's report, and what `fer status` says beside it."""

    summary: dict[str, Any]
    ended: bool  # False when waiting stopped at the timeout before the job ended
    refused: str | None  # why the workers do not take its tasks (a worker connected to another database)
    archive: dict[str, Any] | None  # after a run that changed nothing: the whole archive as its model sees it


@dataclass(frozen=True)
class ScheduleInfo:
    id: int
    root: str
    at: str  # HH:MM in ``timezone``
    timezone: str
    next_run: dt.datetime  # in the schedule's time zone
    due: bool  # its time has passed today and it has not started today
    model: str | None
    last_run_on: str | None
    last_job_id: int | None


def _ignore(*_: object) -> None:
    pass


def _path_list(paths: Paths) -> list[str]:
    """One path, or several."""
    if isinstance(paths, (str, os.PathLike)):
        return [os.fspath(paths)]
    return [os.fspath(path) for path in paths]


class Archive:
    """One results database (``database_url``, SQLite or PostgreSQL) and the broker its workers share
    (``broker_url``, used by submit, retry, status, worker and beat)."""

    def __init__(self, database_url: str, broker_url: str = DEFAULT_BROKER_URL) -> None:
        self.database_url = database_url
        self.broker_url = broker_url
        self._ready = False  # the schema was checked and brought up to date

    def __repr__(self) -> str:
        return f"Archive({self.shown_url!r})"

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the engine's pooled connections (it opens new ones if used again)."""
        if self._ready:
            engine_for(self.database_url).dispose()

    @property
    def shown_url(self) -> str:
        """The database URL with any password masked ("<invalid database URL>" when it is not one)."""
        try:
            return parse_database_url(self.database_url).render_as_string(hide_password=True)
        except DatabaseError:
            return "<invalid database URL>"

    def _writable(self) -> Engine:
        engine = upgraded_engine(self.database_url) if not self._ready else self._engine()
        self._ready = True
        return engine

    def _existing(self) -> Engine:
        if not self._ready:
            check_fer_database(self.database_url)
        return self._writable()

    def _engine(self) -> Engine:
        return engine_for(self.database_url)

    # --- the database -------------------------------------------------------------------------

    def upgrade(self) -> str:
        """Create or migrate the schema (safe at any time); returns the revision it is at."""
        return current_revision(self._writable())

    # --- runs ---------------------------------------------------------------------------------

    def annotate(self, paths: Paths, options: JobOptions | None = None, *,
                 processes: int | None = None, progress: RunProgress = NO_PROGRESS,
                 whole_archive_if_quiet: bool = False) -> dict[str, Any]:
        """Annotate the image files under ``paths`` here and now: detection in ``processes`` local processes
        (default: one per core), one classifier in this process; no broker. Incremental by default
        (``options.incremental``): only files this model version has not annotated yet.

        Returns the job's summary: images done and failed (with why), faces per emotion, what changed since
        the last run, seconds per stage. A run that annotated nothing returns the whole archive as the job's
        model sees it instead when ``whole_archive_if_quiet`` (what `fer annotate` prints as a table).
        """
        found, checked = files_and_options(_path_list(paths), options or JobOptions())
        engine = self._writable()
        summary = pipeline.annotate_folder(self.database_url, found, checked, processes or os.cpu_count() or 1,
                                           progress)
        if whole_archive_if_quiet and summary["images"]["total"] == 0:
            return quiet_run_view(engine, summary)
        return summary

    def submit(self, paths: Paths, options: JobOptions | None = None, *,
               wait: bool = False, progress: FollowProgress = NO_PROGRESS,
               announce: Callable[[Submitted], None] = _ignore) -> Submitted:
        """Record a job for the image files under ``paths`` and queue its chunks for `fer worker` processes;
        ``announce(submitted)`` once it is queued. With ``wait``, follow it until it ends and return its report
        too."""
        found, checked = files_and_options(_path_list(paths), options or JobOptions())
        engine = self._writable()
        check_broker(self.broker_url)
        job = pipeline.submit_folder(engine, self.broker_url, found, checked)
        images = len(job.image_ids)
        submitted = Submitted(job.job_id, images, -(-images // checked.chunk_size))
        announce(submitted)
        if not wait:
            return submitted
        pipeline.follow_job(engine, self.broker_url, job.job_id, progress)
        return replace(submitted, summary=job_summary_of(engine, job.job_id))

    def retry(self, job_id: int, *, failed: bool = False, local: bool = False, processes: int | None = None,
              model: str | None = None, detector: str | None = None, min_face: int | str | None = None,
              chunk_size: int | None = None, wait: bool = False, progress: Progress = NO_PROGRESS,
              announce: Callable[[int], None] = _ignore) -> Retried:
        """Finish a job: process its pending images again (lost tasks, an interrupted, failed or cancelled run),
        with ``failed`` its failed ones too; here with ``local``, else queued for workers (with ``wait``, followed
        until the job ends). ``model``, ``detector``, ``min_face`` and ``chunk_size`` change the job's options
        from now on. ``announce(images)`` once the images to process are known."""
        engine = self._existing()
        changes = {key: value for key, value in
                   {"chunk_size": chunk_size, "model": model, "detector": detector, "min_face": min_face}.items()
                   if value is not None}
        options = pipeline.retry_options(engine, job_id, changes)
        if not local:
            check_broker(self.broker_url)
        images = pipeline.retry_job(self.database_url, self.broker_url, job_id, options, failed, local,
                                    processes or os.cpu_count() or 1, progress, announce)
        if not local and not wait:
            return Retried(job_id, images)
        if wait and not local and images:
            pipeline.follow_job(engine, self.broker_url, job_id, progress)
        return Retried(job_id, images, job_summary_of(engine, job_id))

    def cancel(self, job_id: int | None = None) -> Cancelled:
        """End a queued or running job (default: the latest): its pending images are not processed, and its
        chunks that no worker has fetched yet are taken off the broker's queue, so that workers are free at once."""
        # Celery loads only in the calls that reach the queue.
        from workers.queue.queueing import BrokerUnreachable, remove_queued_chunks

        engine = self._existing()
        resolved = resolve_job(engine, job_id)
        previous = mark_cancelled(engine, resolved)
        if previous is None:
            raise NoSuchJob(f"no job {resolved}")
        removed = problem = None
        if previous != "finished" and (stored_job_options(engine, resolved) or {}).get("queued"):
            try:
                removed = remove_queued_chunks(resolved, database_identity(engine), self.broker_url)
            except BrokerUnreachable as error:
                problem = str(error)
        return Cancelled(resolved, previous, removed, problem)

    def status(self, job_id: int | None = None, *, wait: bool = False, timeout: float | None = None,
               progress: FollowProgress = NO_PROGRESS) -> JobStatus:
        """A job's progress (default: the latest job); with ``wait``, followed until it ends or ``timeout``
        seconds pass (warning ``progress`` when no worker seems to consume the queue)."""
        engine = self._existing()
        resolved = resolve_job(engine, job_id)
        summary = job_summary_of(engine, resolved)
        ended = True
        if wait:
            ended = pipeline.follow_job(engine, self.broker_url, resolved, progress, timeout=timeout)
            summary = job_summary_of(engine, resolved)
        refused = None
        if not ended or summary["status"] in ("pending", "running"):
            refused = refused_reason(engine, self.broker_url, resolved)
        archive = quiet_night_view(engine, summary) if ended and summary["images"]["total"] == 0 else None
        return JobStatus(summary, ended, refused, archive)

    # --- reading the results ------------------------------------------------------------------

    def report(self, job_id: int | None = None, *, since: dt.datetime | None = None, whole_archive: bool = False,
               model: str | None = None, by: str = "emotion") -> dict[str, Any]:
        """A report: of ``job_id``, of every run started ``since`` a time (naive: local time), or of the
        ``whole_archive`` (each file's latest annotation); the last two through one model version (``model``:
        NAME or NAME@VERSION, default the default model) with totals per version. With none of the three: the
        latest job's, or the whole archive when that run changed nothing. ``by`` "folder" or "day" adds ``rows``,
        one per folder or file date."""
        if by not in REPORT_BREAKDOWNS:
            raise PipelineError(f"a report breaks faces down by {', '.join(REPORT_BREAKDOWNS)}, not {by!r}")
        engine = self._existing()
        summary, scope = report_view(engine, job_id, since, whole_archive, model)
        if by != "emotion":
            summary["by"] = by
            summary["rows"] = breakdown(engine, scope, by)
        return summary

    def report_html(self, job_id: int | None = None, *, since: dt.datetime | None = None,
                    whole_archive: bool = False, model: str | None = None,
                    progress: RunProgress = NO_PROGRESS) -> str:
        """The report `report` describes as one self-contained HTML page: charts, face thumbnails, failures."""
        # The page's renderers (Jinja2, Matplotlib, Pillow) load only in the calls that build one.
        from reports.html import build_scope_html_report, heading

        engine = self._existing()
        summary, scope = report_view(engine, job_id, since, whole_archive, model)
        progress.start(1, f"Building the HTML report of {heading(summary)}")
        html = build_scope_html_report(engine, summary, scope)
        progress.advance(1, f"Built the HTML report of {heading(summary)}")
        return html

    def export(self, output: str | os.PathLike[str] | IO[str], job_id: int | None = None, *,
               whole_archive: bool = False, model: str | None = None, failed: bool = False,
               format: str = "csv") -> int:
        """Write one row per face of ``job_id`` (default: the latest job), or of the ``whole_archive`` (each
        file's latest annotation by ``model``), as ``format`` "csv" or "jsonl"; with ``failed``, one row per
        failed file and why. ``output`` is a file, written whole or not at all, or an open text stream.
        Returns the rows written."""
        if format not in EXPORT_FORMATS:
            raise PipelineError(f"exports are {' or '.join(EXPORT_FORMATS)}, not {format!r}")
        if whole_archive and job_id is not None:
            raise PipelineError("an export of the whole archive covers every job: leave out the job")
        if model and not whole_archive:
            raise PipelineError("the model chooses the version of a whole-archive export; a job's export has the "
                                "job's own model")
        engine = self._existing()
        choice = model_choice(engine, model) if whole_archive else None
        if choice is None:
            job_id = resolve_job(engine, job_id)
            job_summary_of(engine, job_id)
        if hasattr(output, "write"):
            return write_rows(engine, job_id, output, format, failed, choice)
        try:
            return write_export(engine, job_id, Path(output), format, failed, choice)
        except OSError as error:
            raise PipelineError(f"cannot write {os.fspath(output)}: {error.strerror or error}") from None

    def query(self, sql: str) -> QueryResult:
        """Run one read-only SQL statement; returns its columns and rows (db.query.QueryResult). The database
        refuses writes."""
        try:
            return run_read_only_query(sql, self.database_url)
        except QueryRefused as error:
            raise PipelineError(f"refused: {error}") from None
        except QueryError as error:
            raise PipelineError(str(error)) from None

    def compare(self, model_a: str, model_b: str, top: int = 10) -> dict[str, Any]:
        """Two model versions (NAME or NAME@VERSION) over the images both annotated: the faces that agree, the
        confusion between their labels, and the ``top`` faces whose probabilities moved most."""
        engine = self._existing()
        try:
            return compare_models(engine, model_a, model_b, top=top)
        except CompareError as error:
            raise PipelineError(str(error)) from None

    def compare_html(self, model_a: str, model_b: str, top: int = 10) -> str:
        """The comparison `compare` describes as one self-contained HTML page, with the changed faces' thumbnails."""
        from reports.compare_html import render_comparison_html  # the renderers load on use, as in report_html

        return render_comparison_html(self.compare(model_a, model_b, top))

    # --- schedules ----------------------------------------------------------------------------

    def add_schedule(self, path: str | os.PathLike[str], at: str, *, timezone: str | None = None,
                     options: JobOptions | None = None) -> ScheduleInfo:
        """Annotate the folder ``path`` incrementally every day at ``at`` (HH:MM) in ``timezone`` (an IANA name;
        default: this machine's zone, else UTC); `fer beat` starts it, workers run it."""
        root = os.path.abspath(path)
        if not os.path.isdir(root):
            raise PipelineError(f"{os.fspath(path)}: not a folder")
        options = replace(options or JobOptions(), incremental=True, allowed_roots=(root,))
        check_options(options)
        engine = self._writable()
        try:
            schedule_id = store_schedule(engine, root, at, timezone or local_zone_name(), options.to_dict())
        except ScheduleError as error:
            raise PipelineError(str(error)) from None
        return next(schedule for schedule in self._schedules(engine) if schedule.id == schedule_id)

    def schedules(self) -> list[ScheduleInfo]:
        """Every schedule, with the next run it starts (in its time zone) and the last run it started."""
        return self._schedules(self._existing())

    def _schedules(self, engine: Engine) -> list[ScheduleInfo]:
        now = utcnow()
        infos = []
        for s in list_schedules(engine):
            upcoming = next_run(s, now)
            infos.append(ScheduleInfo(s.id, s.root, s.at, s.timezone, upcoming, upcoming <= now,
                                      s.options.get("model"), s.last_run_on, s.last_job_id))
        return infos

    def remove_schedule(self, schedule_id: int) -> None:
        """Delete a schedule (its jobs and results stay)."""
        if not delete_schedule(self._existing(), schedule_id):
            raise PipelineError(f"no schedule {schedule_id}")

    # --- services -----------------------------------------------------------------------------

    def run_worker(self, concurrency: int | None = None, pool: str = "prefork", loglevel: str = "INFO",
                   announce: Callable[[Any], None] = _ignore) -> None:
        """Run a Celery worker here until it is stopped: it takes the chunks queued on the broker and writes to
        this database (refusing tasks queued for another). ``announce(plan)`` first, with where it classifies
        (workers.serving.classifier.ServingPlan: backend, device, batch size)."""
        # Celery, and the classifier's numerical libraries, load only in the processes that start a worker.
        from workers.queue.celery_app import start_worker
        from workers.serving.classifier import serving_plan

        self._writable()
        try:
            plan = serving_plan()
        except ValueError as error:
            raise PipelineError(str(error)) from None
        announce(plan)
        start_worker(self.broker_url, self.database_url, concurrency or os.cpu_count() or 1, pool, loglevel)

    def run_beat(self, schedule_file: str | os.PathLike[str] | None = None, loglevel: str = "INFO") -> None:
        """Run Celery beat here until it is stopped: it queues a check of the schedules every
        FER_SCHEDULE_POLL_SECONDS. One per deployment; ``schedule_file`` keeps its state (default: beside the
        default SQLite database)."""
        from workers.queue.celery_app import start_beat  # Celery loads only in the processes that start it

        self._writable()
        check_broker(self.broker_url)
        if schedule_file is None:
            data_home().mkdir(parents=True, exist_ok=True)
            schedule_file = data_home() / "celerybeat-schedule"
        start_beat(self.broker_url, os.fspath(schedule_file), loglevel)
