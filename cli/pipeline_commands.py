"""`fer annotate`, `fer submit`, `fer retry`, `fer cancel`, `fer worker`, `fer status`, `fer report`, `fer export`."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from cli.db_commands import DB_HELP, existing_engine
from cli.db_commands import upgraded_engine as _engine
from cli.output import EXIT_INTERRUPTED, EXIT_NOT_STARTED, EXIT_PARTIAL, console, fail, plural
from cli.params import MIN_FACE, MIN_FACE_HELP
from workers.chunking import chunked
from workers.detector_names import available_detectors
from workers.discovery import DEFAULT_EXTENSIONS
from workers.options import JobOptions

BROKER_HELP = ("Celery broker URL, e.g. redis://queue-host:6379/0 (default: $FER_BROKER_URL, "
               "else redis://localhost:6379/0).")
# Failed files listed under the report table; JSON and `fer export --failed` have them all.
FAILED_SHOWN = 10


def _discover(paths: tuple[str, ...], recursive: bool, ext: str,
              follow_symlinks: bool = False) -> tuple[list[str], list[tuple[str, str]]]:
    """The image files under ``paths``, and the entries skipped as not image files (path, reason)."""
    from workers.discovery import DiscoveryError, find_images, parse_extensions

    skipped: list[tuple[str, str]] = []
    try:
        found = list(find_images(paths, recursive=recursive, extensions=parse_extensions(ext),
                                 follow_symlinks=follow_symlinks, skipped=skipped))
    except DiscoveryError as error:
        fail(str(error))
    return found, skipped  # found may be empty: an incremental run over an emptied folder records what went missing


def _prepare(engine, paths: tuple[str, ...], files: list[str], options: dict[str, Any], ext: str,
             skipped: list[tuple[str, str]] | None = None):
    """Record the job; an incremental run over folders another run is still annotating stops here (exit 75)."""
    from db.incremental import STALE_RUN_HOURS
    from db.writes import set_files_skipped
    from workers.submission import NoImages, RunStillGoing, prepare_job

    try:
        job = prepare_job(engine, [os.path.abspath(p) for p in paths], files, options)
    except NoImages:
        fail(f"no images found in {', '.join(paths)} (extensions: {ext})")
    except RunStillGoing as error:
        fail(
            f"not started: job {error.job_id} over the same folders is still running (it counts as running until "
            f"{STALE_RUN_HOURS:g} h without progress). If its process died, end it with "
            f"`fer cancel {error.job_id}` or finish it with `fer retry {error.job_id} --local`.",
            exit_code=EXIT_NOT_STARTED,
        )
    if skipped:
        set_files_skipped(engine, job.job_id, len(skipped))
    return job


def _check_detector(detector: str) -> None:
    from workers.detector_names import detector_problem

    problem = detector_problem(detector)
    if problem is not None:
        fail(problem)


def _check_model(model: str) -> None:
    from fer_model.registry import ModelNotFound, resolve_model

    try:
        resolve_model(model)
    except ModelNotFound as error:
        fail(str(error))


def _options(model: str, detector: str, min_face: int | str, roots: list[str], chunk_size: int, incremental: bool,
             follow_symlinks: bool = False) -> dict[str, Any]:
    """The job's options, checked before any job is recorded: an unknown or uninstalled model or detector stops here."""
    _check_model(model)
    _check_detector(detector)
    return JobOptions(model=model, detector=detector, min_face=min_face, allowed_roots=tuple(roots), chunk_size=chunk_size,
                      incremental=incremental, follow_symlinks=follow_symlinks).to_dict()


def _allowed_roots(paths: tuple[str, ...]) -> list[str]:
    roots = []
    for path in paths:
        absolute = os.path.abspath(path)
        roots.append(absolute if os.path.isdir(absolute) else os.path.dirname(absolute))
    return roots


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
        console=console, transient=True,
    )


common_input = [
    click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=str)),
    click.option("--recursive/--no-recursive", default=True, show_default=True, help="Descend into sub-folders."),
    click.option("--ext", default=",".join(DEFAULT_EXTENSIONS), show_default=True, help="File extensions to annotate."),
    click.option("--chunk-size", type=click.IntRange(1, 10_000), default=JobOptions.chunk_size, show_default=True,
                 help="Images per task."),
    click.option("--model", default=JobOptions.model, show_default=True, help="Model name (default: the model `fer model list` stars), run folder or .keras file."),
    click.option("--detector", default=JobOptions.detector, show_default=True,
                 help=f"Face detector: {', '.join(available_detectors())}."),
    click.option("--min-face", type=MIN_FACE, default=str(JobOptions.min_face), show_default=True, help=MIN_FACE_HELP),
    click.option("--incremental/--reannotate", default=JobOptions.incremental, show_default=True,
                 help="Skip files this model version already annotated (same path, size and time), copy the results "
                      "of files seen under another name, mark vanished ones missing; --reannotate does everything again."),
    click.option("--follow-symlinks", is_flag=True,
                 help="Follow symbolic links (to files and folders) wherever they point, within the worker's "
                      "FER_ALLOWED_ROOTS when it sets them, as `find -L` does; by default a link that leads out of the "
                      "folders given is refused."),
    click.option("--db", "db_url", help=DB_HELP),
]


def with_common_input(function):
    for decorator in reversed(common_input):
        function = decorator(function)
    return function


@click.command()
@with_common_input
@click.option("--processes", type=click.IntRange(1, 256), default=os.cpu_count() or 1, show_default=True,
              help="Local worker processes.")
@click.option("--format", "output_format", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="Format of the report printed at the end.")
def annotate(paths, recursive, ext, chunk_size, model, detector, min_face, incremental, follow_symlinks, db_url,
             processes, output_format) -> None:
    """Annotate PATHS here and now: no servers (SQLite and local processes by default).

    Run it again (e.g. nightly from cron) and it annotates only new and changed files.
    Exit code 0: every image annotated; 23: some images failed (listed in the report);
    75: not started, another run over the same folders is still going; 1: an error.

    \b
        fer annotate ~/Pictures/archive
        fer annotate /srv/photos --follow-symlinks --format json > report.json
    """
    from db.reads import job_summary
    from db.writes import finish_job_if_complete
    from workers.annotate import StageSeconds

    started = time.monotonic()
    files, skipped = _discover(paths, recursive, ext, follow_symlinks)
    options = _options(model, detector, min_face, _allowed_roots(paths), chunk_size, incremental, follow_symlinks)
    engine = _engine(db_url)
    job = _prepare(engine, paths, files, options, ext, skipped)
    stage_seconds = StageSeconds()
    if job.image_ids:
        stage_seconds = _run_locally(engine, db_url, job.job_id, job.image_ids, options, processes)
    job_id = job.job_id
    finish_job_if_complete(engine, job_id)
    summary = job_summary(engine, job_id)
    summary["seconds"] = round(time.monotonic() - started, 2)
    summary["stage_seconds"] = stage_seconds.as_dict()
    summary["skipped_files"] = [{"path": path, "reason": reason} for path, reason in skipped]
    _print_report(summary, output_format)
    _exit_for(summary)


def _exit_for(summary: dict[str, Any]) -> None:
    """Exit 23 when some images failed (the report above lists them); return when every image was annotated."""
    if summary["images"]["failed"]:
        raise SystemExit(EXIT_PARTIAL)


@click.command()
@with_common_input
@click.option("--wait", is_flag=True, help="Wait for the job to finish and print its report.")
@click.option("--broker", "broker", help=BROKER_HELP)
def submit(paths, recursive, ext, chunk_size, model, detector, min_face, incremental, follow_symlinks, db_url, wait,
           broker) -> None:
    """Record a job for PATHS and queue it for `fer worker` processes (Redis by default).

    With --wait, exits like `fer annotate`: 0, or 23 when some images failed.

    \b
        fer submit /archive --broker redis://queue-host:6379/0 --db postgresql+psycopg://me@dbhost/fer
    """
    files, skipped = _discover(paths, recursive, ext, follow_symlinks)
    options = _options(model, detector, min_face, _allowed_roots(paths), chunk_size, incremental, follow_symlinks)
    engine = _engine(db_url)
    _check_broker(broker)
    job = _prepare(engine, paths, files, options, ext, skipped)
    job_id = job.job_id
    _enqueue(engine, job_id, job.image_ids, options)
    click.echo(job_id)
    if wait:
        _wait_for(engine, job_id)
        from db.reads import job_summary

        summary = job_summary(engine, job_id)
        _print_report(summary, "table")
        _exit_for(summary)


def _enqueue(engine, job_id: int, ids: list[int], options: dict[str, Any]) -> None:
    """Queue the images in chunks, for this database. Ctrl-C or SIGTERM part-way marks the job 'interrupted'."""
    from db.reads import database_identity
    from db.writes import mark_job
    from workers.queueing import queue_chunks

    def stop(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        queue_chunks(job_id, ids, options, database_id=database_identity(engine))
    except KeyboardInterrupt:
        mark_job(engine, job_id, "interrupted", "interrupted while queueing")
        fail(f"interrupted while queueing job {job_id}; queue the rest with `fer retry {job_id}`",
             exit_code=EXIT_INTERRUPTED)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _use_broker(broker: str | None) -> None:
    """--broker wins over $FER_BROKER_URL, for this process and the workers it starts."""
    if broker:
        os.environ["FER_BROKER_URL"] = broker
    from workers.celery_app import app, broker_url

    app.conf.broker_url = broker_url()


def _check_broker(broker: str | None = None) -> None:
    from kombu.exceptions import OperationalError as BrokerError
    from kombu.utils.url import maybe_sanitize_url

    from workers.celery_app import app

    _use_broker(broker)
    try:
        with app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=5)
    except (BrokerError, OSError) as error:
        fail(
            f"cannot reach the broker at {maybe_sanitize_url(app.conf.broker_url)} ({error}). Start Redis "
            "(e.g. `redis-server` or `docker compose up -d redis`), set FER_BROKER_URL, "
            "or annotate without servers: `fer annotate PATH`."
        )


@click.command()
@click.argument("job", type=int)
@click.option("--failed", is_flag=True, help="Also re-process the images that failed.")
@click.option("--local", is_flag=True, help="Process them here with local processes instead of queueing them for workers.")
@click.option("--processes", type=click.IntRange(1, 256), default=os.cpu_count() or 1, show_default=True,
              help="Local worker processes (with --local).")
@click.option("--chunk-size", type=click.IntRange(1, 10_000), help="Images per task (default: the job's).")
@click.option("--model", help="Use this model from now on (default: the job's).")
@click.option("--detector", help=f"Use this face detector from now on (default: the job's): {', '.join(available_detectors())}.")
@click.option("--min-face", type=MIN_FACE, help="Smallest face to look for, in pixels or % of the shorter side (default: the job's).")
@click.option("--wait", is_flag=True, help="Wait for the job to finish and print its report.")
@click.option("--broker", "broker", help=BROKER_HELP)
@click.option("--db", "db_url", help=DB_HELP)
def retry(job, failed, local, processes, chunk_size, model, detector, min_face, wait, broker, db_url) -> None:
    """Finish JOB: queue its pending images again (lost tasks, an interrupted, failed or cancelled run), and with
    --failed its failed ones. Images already done are never processed twice. Options that made the job fail
    can be changed here.

    \b
        fer retry 3 --local --detector haar     # job 3 failed on a detector that is not installed
        fer retry 3 --failed --wait
    """
    from db.reads import job_options, job_summary
    from db.writes import reopen_job, update_job_options

    engine = existing_engine(db_url)
    options = job_options(engine, job)
    if options is None:
        fail(f"no job {job}")
    if model:
        _check_model(model)
    if detector:
        _check_detector(detector)
    changes = {key: value for key, value in
               {"chunk_size": chunk_size, "model": model, "detector": detector, "min_face": min_face}.items()
               if value is not None}
    if changes:
        options = update_job_options(engine, job, changes)
    if not local:
        _check_broker(broker)
    ids = reopen_job(engine, job, include_failed=failed)
    console.print(f"Job {job}: {plural(len(ids), 'image')} to process" + ("" if ids else "; nothing to do"))
    if ids and local:
        _run_locally(engine, db_url, job, ids, options, processes, f"fer retry {job} --local")
    elif ids:
        _enqueue(engine, job, ids, options)
        if wait:
            _wait_for(engine, job)
    if local or wait:
        summary = job_summary(engine, job)
        _print_report(summary, "table")
        _exit_for(summary)


@click.command()
@click.argument("job", type=int, required=False)
@click.option("--db", "db_url", help=DB_HELP)
def cancel(job, db_url) -> None:
    """End JOB (default: the latest) while it is queued or running: its pending images are not processed.

    Workers drop its queued chunks as they reach them; the images already done stay.
    `fer retry JOB` reopens it.
    """
    from db.writes import cancel_job

    engine = existing_engine(db_url)
    job_id = _resolve_job(engine, job)
    previous = cancel_job(engine, job_id)
    if previous is None:
        fail(f"no job {job_id}")
    if previous in ("finished", "cancelled"):
        console.print(f"Job {job_id} is already {previous}; nothing to cancel")
        return
    console.print(f"Job {job_id} cancelled (it was {previous}); `fer retry {job_id}` reopens it")


@click.command()
@click.option("--concurrency", type=click.IntRange(1, 256), default=os.cpu_count() or 1, show_default=True)
@click.option("--pool", type=click.Choice(["prefork", "solo", "threads"]), default="prefork", show_default=True)
@click.option("--broker", "broker", help=BROKER_HELP)
@click.option("--db", "db_url", help=DB_HELP)
@click.option("--loglevel", default="INFO", show_default=True)
def worker(concurrency, pool, broker, db_url, loglevel) -> None:
    """Start a Celery worker that processes submitted jobs.

    It refuses tasks queued for another database than its own (--db / FER_DATABASE_URL).

    \b
        fer worker --broker redis://queue-host:6379/0 --db postgresql+psycopg://me@dbhost/fer
    """
    if db_url:
        os.environ["FER_DATABASE_URL"] = db_url
    _engine(db_url)
    _use_broker(broker)
    from workers.celery_app import app
    from workers.devices import batch_size_for, describe, visible_gpus

    os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")  # the pool processes share the card
    gpus = visible_gpus()
    console.print(f"fer worker: classifier on {describe(gpus) if gpus else 'CPU'}, batches of up to "
                  f"{batch_size_for(gpus)} faces; face detection on the CPU, {concurrency} process(es)")
    app.worker_main(["worker", f"--concurrency={concurrency}", f"--pool={pool}", f"--loglevel={loglevel}"])


def _resolve_job(engine, job: int | None) -> int:
    from db.reads import latest_job_id

    job_id = job if job is not None else latest_job_id(engine)
    if job_id is None:
        fail("no jobs yet: run `fer annotate PATH` or `fer submit PATH`")
    return job_id


def _run_locally(engine, db_url: str | None, job_id: int, ids: list[int], options: dict[str, Any], processes: int,
                  resume_command: str | None = None):
    """Run the images' chunks in local processes with a progress bar.

    Ctrl-C marks the job interrupted; any other error marks it failed with the reason, in one line.
    """
    from db.session import database_url
    from workers.local import run_locally

    resume_command = resume_command or f"fer retry {job_id} --local"
    job = JobOptions.from_dict(options)
    chunks = chunked(ids, job.chunk_size)
    loading = f"job {job_id}: loading model {job.model} and detector {job.detector} ..."
    try:
        with _progress() as bar:
            task = bar.add_task(loading, total=len(ids))

            def chunk_done(images: int) -> None:
                bar.update(task, advance=images, description=f"job {job_id}")

            return run_locally(database_url(db_url), job_id, chunks, options, min(processes, len(chunks)),
                               on_chunk_done=chunk_done)
    except KeyboardInterrupt:
        _interrupted(engine, job_id, resume_command)
    except Exception as error:  # noqa: BLE001 - whatever stopped the run ends the job, with its reason
        _failed(engine, job_id, error, resume_command)


def _failed(engine, job_id: int, error: BaseException, resume_command: str) -> None:
    from db.writes import mark_job
    from workers.chunks import failure_reason

    reason = failure_reason(error)
    mark_job(engine, job_id, "failed", reason)
    fail(f"job {job_id} failed: {reason}. It keeps what was finished; fix the cause and finish it with "
         f"`{resume_command}` (it takes --detector, --model, --min-face)")


def _interrupted(engine, job_id: int, resume_command: str) -> None:
    from db.writes import mark_job

    mark_job(engine, job_id, "interrupted", "interrupted (Ctrl-C or SIGTERM)")
    fail(f"interrupted; job {job_id} keeps what was finished; finish it with `{resume_command}`",
         exit_code=EXIT_INTERRUPTED)


def _no_worker_seconds() -> float:
    return float(os.environ.get("FER_NO_WORKER_SECONDS", "30"))


def _workers_answering() -> bool | None:
    """Whether any Celery worker answers a ping on the broker (None: the broker cannot be reached)."""
    from workers.celery_app import app, broker_url

    app.conf.broker_url = broker_url()
    try:
        return bool(app.control.inspect(timeout=1.0).ping())
    except Exception:  # noqa: BLE001 - kombu raises several kinds for an unreachable broker
        return None


def _wait_for(engine, job_id: int, poll: float = 1.0, timeout: float | None = None) -> bool:
    """Follow the job with a progress bar until it ends; True when it ended, False at ``timeout`` seconds.

    When nothing has moved for FER_NO_WORKER_SECONDS (30) and no worker answers a ping, say so once.
    """
    from db.reads import job_summary
    from kombu.utils.url import maybe_sanitize_url

    from workers.celery_app import broker_url

    started = last_change = time.monotonic()
    warned = False
    with _progress() as bar:
        summary = job_summary(engine, job_id)
        task = bar.add_task(f"job {job_id}", total=summary["images"]["total"])
        completed = -1
        while True:
            summary = job_summary(engine, job_id)
            images = summary["images"]
            if images["done"] + images["failed"] != completed:
                completed, last_change = images["done"] + images["failed"], time.monotonic()
            bar.update(task, completed=completed)
            if summary["status"] in ("finished", "failed", "cancelled"):
                return True
            now = time.monotonic()
            if not warned and now - last_change >= _no_worker_seconds():
                answering = _workers_answering()
                if not answering:
                    warned = True
                    where = maybe_sanitize_url(broker_url())
                    bar.console.print(
                        f"No worker seems to be consuming the queue at {where}: no progress for "
                        f"{now - last_change:.0f} s and no worker answered a ping"
                        + (" (the broker cannot be reached)" if answering is None else "")
                        + ". Start one with `fer worker`, or finish the job here with "
                        f"`fer retry {job_id} --local`.",
                        markup=False,
                    )
            if timeout is not None and now - started >= timeout:
                return False
            time.sleep(poll)


@click.command()
@click.argument("job", type=int, required=False)
@click.option("--wait", is_flag=True, help="Follow the job until it finishes; say so when no worker seems to be "
                                           "consuming the queue (after FER_NO_WORKER_SECONDS, 30, without progress).")
@click.option("--timeout", type=click.FloatRange(min=0), help="With --wait: give up after this many seconds (exit 75).")
@click.option("--broker", "broker", help=BROKER_HELP + " Asked with --wait whether any worker is there.")
@click.option("--db", "db_url", help=DB_HELP)
def status(job, wait, timeout, broker, db_url) -> None:
    """Progress of JOB (default: the latest); after a run that changed nothing, also the whole archive."""
    from db.reads import archive_summary, job_summary

    engine = existing_engine(db_url)
    job_id = _resolve_job(engine, job)
    summary = job_summary(engine, job_id)
    if summary is None:
        fail(f"no job {job_id}")
    if wait:
        if broker:
            os.environ["FER_BROKER_URL"] = broker
        ended = _wait_for(engine, job_id, timeout=timeout)
        summary = job_summary(engine, job_id)
        if not ended:
            console.print(_status_line(summary), soft_wrap=True)
            fail(f"job {job_id} has not finished after {timeout:g} s", exit_code=EXIT_NOT_STARTED)
    console.print(_status_line(summary), soft_wrap=True)
    if summary["images"]["total"] == 0:
        console.print(_archive_line(archive_summary(engine)), soft_wrap=True)


def _status_line(summary: dict[str, Any]) -> Text:
    images = summary["images"]
    line = (f"job {summary['job']}: {summary['status']}; {images['done'] + images['failed']}/"
            f"{plural(images['total'], 'image')} ({images['done']} done, {images['failed']} failed, "
            f"{images['pending']} pending), {plural(summary['faces'], 'face')}")
    if summary.get("error"):
        line += f"; {summary['error']}"
    changes = summary.get("changes") or {}
    if images["total"] == 0 and (changes.get("unchanged") or changes.get("missing")):
        line += f" ({changes.get('unchanged', 0)} unchanged, {changes.get('missing', 0)} missing)"
    return Text(line)


def _archive_line(archive: dict[str, Any]) -> Text:
    images = archive["images"]["done"]
    return Text(f"Whole archive: {plural(images, 'image')} annotated, {plural(archive['faces'], 'face')}"
                + (f"; last run: job {archive['latest_job']} on {archive['last_run'][:16].replace('T', ' ')} UTC"
                   if archive.get("last_run") else "")
                + " (`fer report --all`)")


@click.command()
@click.argument("job", type=int, required=False)
@click.option("--run", "run", type=int, help="The job (run) to report; same as JOB.")
@click.option("--since", metavar="DATE", type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"]),
              help="Everything the runs started since DATE (local time; YYYY-MM-DD or 'YYYY-MM-DD HH:MM') added: "
                   "images, faces, emotions per model.")
@click.option("--all", "whole_archive", is_flag=True,
              help="The whole archive: every file's latest annotation per model version, with the date of the last "
                   "run (the default when the latest run changed nothing).")
@click.option("--by", type=click.Choice(["emotion", "folder", "day"]), default="emotion", show_default=True,
              help="Break faces down by emotion, by folder, or by day (file date).")
@click.option("--format", "output_format", type=click.Choice(["table", "json", "csv", "html"]), default="table",
              show_default=True,
              help="html: one self-contained page (charts, face thumbnails, failures) for any browser, e.g. "
                   "`fer report 3 --format html -o report.html`; it needs -o FILE, or stdout redirected to a file, "
                   "and has every breakdown (--by is ignored).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write to this file instead of the terminal (written whole or not at all).")
@click.option("--db", "db_url", help=DB_HELP)
def report(job, run, since, whole_archive, by, output_format, output, db_url) -> None:
    """Summary of JOB (default: the latest): images, faces, emotions, failed files, and for incremental runs what
    changed. When the latest run changed nothing (a quiet night), the whole archive instead (as --all).

    \b
        fer report                      # the latest run
        fer report --all --format json  # every file's latest annotation
        fer report --since 2026-11-01
    """
    from db.reads import archive_summary, breakdown, job_summary, since_summary

    if job is not None and run is not None and job != run:
        fail("give the job either as JOB or as --run, not both")
    if since is not None and (job is not None or run is not None):
        fail("--since reports every run since a date; leave out JOB and --run")
    if whole_archive and (job is not None or run is not None or since is not None):
        fail("--all reports the whole archive; leave out JOB, --run and --since")
    if (since is not None or whole_archive) and output_format == "html":
        fail("--format html reports one job; leave out --since and --all")
    if (since is not None or whole_archive) and by != "emotion":
        fail("--since and --all report emotions per model version; --by works on one job")
    engine = existing_engine(db_url)
    if since is not None:
        _print_report(since_summary(engine, since.astimezone()), output_format, output)
        return
    if whole_archive:
        _print_report(archive_summary(engine), output_format, output)
        return
    job_id = _resolve_job(engine, job if job is not None else run)
    summary = job_summary(engine, job_id)
    if summary is None:
        fail(f"no job {job_id}")
    if output_format == "html":
        from cli.html_report import write_html_report

        write_html_report(engine, job_id, output)
        return
    if job is None and run is None and by == "emotion" and summary["images"]["total"] == 0:
        archive = archive_summary(engine)
        archive["latest_run"] = {key: summary[key] for key in ("job", "status", "changes")}
        _print_report(archive, output_format, output)
        return
    if by != "emotion":
        summary["by"] = by
        summary["rows"] = breakdown(engine, job_id, by)
    _print_report(summary, output_format, output)


def _print_report(summary: dict[str, Any], output_format: str, output: Path | None = None) -> None:
    rows = summary.get("rows")
    if output_format == "json":
        text = json.dumps(summary, indent=2) + "\n"
    elif output_format == "csv" and rows is not None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else [summary["by"], "images", "faces"])
        writer.writeheader()
        writer.writerows(rows)
        text = buffer.getvalue()
    elif output_format == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["emotion", "faces", "share"])
        for name, count in summary["emotions"].items():
            writer.writerow([name, count, f"{count / summary['faces']:.4f}" if summary["faces"] else "0"])
        text = buffer.getvalue()
    else:
        if output is None:
            console.print(_report_table(summary))
            console.print(Text(_report_caption(summary)))
            return
        with console.capture() as captured:
            console.print(_report_table(summary))
            console.print(Text(_report_caption(summary)))
        text = captured.get()
    if output is None:
        click.echo(text, nl=False)
    else:
        from fer_model.files import write_atomically

        try:
            write_atomically(output, text)
        except OSError as error:
            fail(f"cannot write {output}: {error.strerror or error}")
        console.print(f"Wrote {escape(str(output))}")


def _report_caption(summary: dict[str, Any]) -> str:
    if summary.get("archive"):
        return _archive_caption(summary)
    images = summary["images"]
    lines = [f"{plural(images['total'], 'image')} annotated: {images['done']} done, {images['failed']} failed, "
             f"{images['pending']} pending; {plural(summary['faces'], 'face')}"]
    if "since" in summary:
        lines[0] = f"Since {summary['since']} ({plural(len(summary['jobs']), 'run')}): " + lines[0]
        lines += [f"model {m['name']} {m['version']}: {plural(m['faces'], 'face')}" for m in summary["models"]]
    else:
        model = summary["model"]
        lines[0] += (f"; {plural(summary['images_without_faces'], 'image')} without faces; "
                     f"model {model['name']} {model['version'] or ''}")
    if summary.get("error"):
        lines.append(f"Job {summary['status']}: {summary['error']}")
    changes = summary.get("changes")
    # A first run (everything new) has nothing to compare with.
    if changes and any(changes[key] for key in ("changed", "copied", "unchanged", "missing")):
        lines.append(
            f"Changes: {changes['new']} new, {changes['changed']} changed, {changes['copied']} copies of files "
            f"annotated before (results reused), {changes['unchanged']} unchanged (skipped), "
            f"{changes['missing']} missing since the last run"
        )
    lines += _failed_lines(summary)
    lines += _skipped_lines(summary)
    return "\n".join(line.rstrip() for line in lines)


def _failed_lines(summary: dict[str, Any]) -> list[str]:
    failed = summary.get("failed_files") or []
    if not failed:
        return []
    lines = [f"Failed ({len(failed)}):"]
    lines += [f"  {item['path']}: {item['error']}" for item in failed[:FAILED_SHOWN]]
    if len(failed) > FAILED_SHOWN:
        lines.append(f"  ... and {len(failed) - FAILED_SHOWN} more: `fer export {summary['job']} --failed -o failed.csv` "
                     "or --format json lists them all")
    return lines


def _skipped_lines(summary: dict[str, Any]) -> list[str]:
    listed = summary.get("skipped_files") or []
    count = max(summary.get("files_skipped") or 0, len(listed))
    if not count:
        return []
    lines = [f"Skipped {plural(count, 'entry', 'entries')} that are not image files:"]
    lines += [f"  {item['path']}: {item['reason']}" for item in listed[:FAILED_SHOWN]]
    if len(listed) > FAILED_SHOWN:
        lines.append(f"  ... and {len(listed) - FAILED_SHOWN} more (--format json lists them all)")
    return lines


def _archive_caption(archive: dict[str, Any]) -> str:
    lines = []
    latest = archive.get("latest_run")
    if latest:
        changes = latest["changes"]
        lines.append(f"The latest run (job {latest['job']}, {latest['status']}) changed nothing: "
                     f"{changes['unchanged']} unchanged, {changes['missing']} missing. The whole archive:")
    when = f"; last run: job {archive['latest_job']} on {archive['last_run'][:16].replace('T', ' ')} UTC" \
        if archive.get("last_run") else ""
    lines.append(f"{plural(archive['images']['done'], 'image')} (each file's latest annotation), "
                 f"{plural(archive['faces'], 'face')}{when}")
    lines += [f"model {m['name']} {m['version']}: {plural(m['images'], 'image')}, {plural(m['faces'], 'face')}"
              for m in archive["models"]]
    return "\n".join(lines)


# Emotion columns of --by tables, short enough for 80 columns; the legend is under the table.
SHORT_EMOTIONS = {"angry": "ang", "disgust": "dis", "fear": "fea", "happy": "hap", "neutral": "neu", "sad": "sad",
                  "surprise": "sur"}


def _report_table(summary: dict[str, Any]) -> Table:
    if summary.get("archive"):
        title = "Whole archive"
    elif "since" in summary:
        title = f"Since {summary['since']}"
    else:
        title = f"Job {summary['job']} ({summary['status']})"
    table = Table(title=title)
    if summary.get("rows") is not None:
        by = summary["by"]
        table = Table(title=title, padding=(0, 1), caption=" ".join(f"{s}={n}" for n, s in SHORT_EMOTIONS.items()))
        table.add_column(by, overflow="fold", ratio=1)
        for column in ("images", "faces", *summary["emotions"]):
            table.add_column(SHORT_EMOTIONS.get(column, column), justify="right", no_wrap=True)
        for row in summary["rows"]:
            table.add_row(*(Text(str(row[column])) for column in (by, "images", "faces", *summary["emotions"])))
        return table
    table.add_column("emotion")
    table.add_column("faces", justify="right")
    table.add_column("share", justify="right")
    for name, count in summary["emotions"].items():
        table.add_row(name, str(count), f"{count / summary['faces']:.1%}" if summary["faces"] else "-")
    return table


@click.command()
@click.argument("job", type=int, required=False)
@click.option("--format", "output_format", type=click.Choice(["csv", "jsonl"]), default="csv", show_default=True)
@click.option("--failed", is_flag=True, help="Export the failed files (path, error) instead of the faces.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--db", "db_url", help=DB_HELP)
def export(job, output_format, failed, output, db_url) -> None:
    """Write one row per face of JOB (default: the latest): path, box, label, confidence, probabilities, model;
    with --failed, one row per failed file: path, error.

    \b
        fer export -o faces.csv
        fer export 3 --failed -o failed.csv
    """
    from sqlalchemy import text

    from db.reads import job_summary

    engine = existing_engine(db_url)
    job = _resolve_job(engine, job)
    if job_summary(engine, job) is None:
        fail(f"no job {job}")
    if failed:
        query = text("SELECT path, error FROM images WHERE job_id = :job AND status = 'failed' ORDER BY path")
    else:
        query = text("SELECT * FROM face_annotations WHERE job_id = :job ORDER BY path, face_index")
    partial = output.with_name(f".{output.name}.partial")
    rows = 0
    try:
        with engine.connect() as connection, partial.open("w", newline="") as handle:
            result = connection.execute(query, {"job": job})
            columns = list(result.keys())
            writer = csv.writer(handle) if output_format == "csv" else None
            if writer:
                writer.writerow(columns)
            for row in result:
                rows += 1
                if writer:
                    writer.writerow(row)
                else:
                    handle.write(json.dumps(dict(zip(columns, row))) + "\n")
        partial.replace(output)
    except OSError as error:
        partial.unlink(missing_ok=True)
        fail(f"cannot write {output}: {error.strerror or error}")
    console.print(f"Wrote {plural(rows, 'failed file' if failed else 'face')} to {escape(str(output))}")
