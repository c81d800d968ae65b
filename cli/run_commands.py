"""`fer annotate`, `fer submit`, `fer retry`, `fer cancel`, `fer worker`: parse the options, make one library
call (workers.pipeline), print."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import click

from cli.db_commands import DB_HELP, existing_engine
from cli.db_commands import upgraded_engine as _engine
from cli.output import EXIT_INTERRUPTED, EXIT_NOT_STARTED, console, fail, plural
from cli.params import MIN_FACE, MIN_FACE_HELP
from cli.progress import run_progress, wait_for
from cli.report_output import exit_for, print_report
from workers.detector_names import available_detectors
from workers.discovery import DEFAULT_EXTENSIONS
from workers.options import JobOptions

BROKER_HELP = ("Celery broker URL, e.g. redis://queue-host:6379/0 (default: $FER_BROKER_URL, "
               "else redis://localhost:6379/0).")


@contextmanager
def library_errors() -> Iterator[None]:
    """A library error ends the command with its message and exit code (75: not started, 130: interrupted)."""
    from workers.pipeline import Interrupted, NotStarted, PipelineError

    try:
        yield
    except PipelineError as error:
        code = EXIT_NOT_STARTED if isinstance(error, NotStarted) else EXIT_INTERRUPTED if isinstance(error, Interrupted) else 1
        fail(str(error), exit_code=code)


def _found_and_options(paths, recursive, ext, chunk_size, model, detector, min_face, incremental, follow_symlinks,
                       retry_failed):
    """The files to annotate and the job's options, checked: the library errors stop the command before any job."""
    from workers.pipeline import allowed_roots, find_files, job_options

    if retry_failed and not incremental:
        fail("--retry-failed is for incremental runs; --reannotate already does everything again")
    found = find_files(paths, recursive, ext, follow_symlinks)
    options = job_options(JobOptions(model=model, detector=detector, min_face=min_face,
                                     allowed_roots=tuple(allowed_roots(paths)), chunk_size=chunk_size,
                                     incremental=incremental, follow_symlinks=follow_symlinks,
                                     retry_failed=retry_failed))
    return found, options


def _report(engine, job_id: int) -> None:
    from db.reads import job_summary

    summary = job_summary(engine, job_id)
    print_report(summary, "table")
    exit_for(summary)


def _wait_and_report(engine, job_id: int) -> None:
    wait_for(engine, job_id)
    _report(engine, job_id)


common_input = [
    # Not click's readable check: a folder that cannot be listed is the run's failure (exit 1 or 23), not a usage error.
    click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=str, readable=False)),
    click.option("--recursive/--no-recursive", default=True, show_default=True, help="Descend into sub-folders."),
    click.option("--ext", default=",".join(DEFAULT_EXTENSIONS), show_default=True, help="File extensions to annotate."),
    click.option("--chunk-size", type=click.IntRange(1, 10_000), default=JobOptions.chunk_size, show_default=True,
                 help="Images per task."),
    click.option("--model", default=JobOptions.model, show_default=True, help="Model name (default: the model `fer model list` stars), run folder or .keras file."),
    click.option("--detector", default=JobOptions.detector, show_default=True,
                 help=f"Face detector: {', '.join(available_detectors())}. haar-fine finds more faces near --min-face, "
                      "in about 2.3x haar's time."),
    click.option("--min-face", type=MIN_FACE, default=str(JobOptions.min_face), show_default=True, help=MIN_FACE_HELP),
    click.option("--incremental/--reannotate", default=JobOptions.incremental, show_default=True,
                 help="Skip files this model version already annotated (same path, size and time), copy the results "
                      "of files seen under another name, mark vanished ones missing; --reannotate does everything again."),
    click.option("--retry-failed", is_flag=True,
                 help="Incremental runs: also try again the unchanged files whose latest attempt failed (damaged, "
                      "empty, not an image); by default they count as unchanged and stay listed in "
                      "`fer report --all`."),
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
def annotate(paths, recursive, ext, chunk_size, model, detector, min_face, incremental, retry_failed, follow_symlinks,
             db_url, processes, output_format) -> None:
    """Annotate PATHS here and now: no servers (SQLite and local processes by default).

    Run it again (e.g. nightly from cron) and it annotates only new and changed files.
    Exit code 0: every image annotated; 23: some images failed (listed in the report);
    75: not started, another run over the same folders is still going; 1: an error.

    \b
        fer annotate ~/Pictures/archive
        fer annotate /srv/photos --follow-symlinks --format json > report.json
    """
    from db.session import database_url
    from workers.pipeline import annotate_folder

    with library_errors():
        found, options = _found_and_options(paths, recursive, ext, chunk_size, model, detector, min_face, incremental,
                                            follow_symlinks, retry_failed)
        engine = _engine(db_url)
        with run_progress() as progress:
            summary = annotate_folder(engine, database_url(db_url), found, options, processes, progress)
    if output_format == "table" and summary["images"]["total"] == 0:
        print_report(_quiet_run_view(engine, summary), output_format)
    else:
        print_report(summary, output_format)
    exit_for(summary)


def _quiet_run_view(engine, summary: dict) -> dict:
    """After a run that annotated nothing: the whole archive, as `fer report` shows it, and what the listing met."""
    from cli.report_commands import quiet_night_view

    view = quiet_night_view(engine, summary)
    for key in ("unlisted_folders", "skipped_files", "files_skipped"):
        view[key] = summary.get(key)
    return view


@click.command()
@with_common_input
@click.option("--wait", is_flag=True, help="Wait for the job to finish and print its report.")
@click.option("--broker", "broker", help=BROKER_HELP)
def submit(paths, recursive, ext, chunk_size, model, detector, min_face, incremental, retry_failed, follow_symlinks,
           db_url, wait, broker) -> None:
    """Record a job for PATHS and queue it for `fer worker` processes (Redis by default); prints the job's id and
    how to follow it.

    With --wait, exits like `fer annotate`: 0, or 23 when some images failed.

    \b
        fer submit /archive --broker redis://queue-host:6379/0 --db postgresql+psycopg://me@dbhost/fer
    """
    from workers.pipeline import check_broker, submit_folder

    with library_errors():
        found, options = _found_and_options(paths, recursive, ext, chunk_size, model, detector, min_face, incremental,
                                            follow_symlinks, retry_failed)
        engine = _engine(db_url)
        check_broker(broker)
        job = submit_folder(engine, found, options)
    job_id, images = job.job_id, len(job.image_ids)
    if images:
        chunks = -(-images // JobOptions.from_dict(options).chunk_size)
        console.print(f"Job {job_id} queued: {plural(images, 'image')} in {plural(chunks, 'chunk')}"
                      + ("" if wait else f"; follow it with `fer status {job_id} --wait`"))
    else:
        console.print(f"Job {job_id}: nothing to annotate, every file is unchanged"
                      + ("" if wait else f"; `fer report {job_id}` shows the whole archive"))
    if wait:
        _wait_and_report(engine, job_id)


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
    from db.session import database_url
    from workers.pipeline import check_broker, retry_job, retry_options

    engine = existing_engine(db_url)
    changes = {key: value for key, value in
               {"chunk_size": chunk_size, "model": model, "detector": detector, "min_face": min_face}.items()
               if value is not None}

    def announce(images: int) -> None:
        console.print(f"Job {job}: {plural(images, 'image')} to process" + ("" if images else "; nothing to do"))

    with library_errors():
        options = retry_options(engine, job, changes)
        if not local:
            check_broker(broker)
        with run_progress() as progress:
            images = retry_job(engine, database_url(db_url), job, options, failed, local, processes, progress,
                               announce)
    if local:
        _report(engine, job)
    elif wait:
        if images:
            wait_for(engine, job)
        _report(engine, job)


@click.command()
@click.argument("job", type=int, required=False)
@click.option("--broker", "broker", help=BROKER_HELP + " The job's chunks still queued there are taken off.")
@click.option("--db", "db_url", help=DB_HELP)
def cancel(job, broker, db_url) -> None:
    """End JOB (default: the latest) while it is queued or running: its pending images are not processed.

    Its chunks still in the broker's queue are taken off it (Redis), and workers drop those they
    already hold; the images already done stay. `fer retry JOB` reopens it.
    """
    from cli.report_commands import resolve_job
    from workers.pipeline import cancel_job

    engine = existing_engine(db_url)
    job_id = resolve_job(engine, job)
    with library_errors():
        outcome = cancel_job(engine, job_id, broker)
    removed = f"; {plural(outcome.removed, 'queued chunk')} taken off the queue" if outcome.removed else ""
    if outcome.previous in ("finished", "cancelled"):
        console.print(f"Job {job_id} is already {outcome.previous}; nothing to cancel{removed}")
    else:
        console.print(f"Job {job_id} cancelled (it was {outcome.previous}){removed}; `fer retry {job_id}` reopens it")
    if outcome.broker_problem:
        console.print(f"Its chunks stay in the queue: {outcome.broker_problem}; workers drop them as they reach them")


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
    from workers.celery_app import app
    from workers.pipeline import use_broker

    use_broker(broker)
    from workers.classifier import backend_for, batch_size_of
    from workers.devices import describe, visible_gpus

    os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")  # the pool processes share the card
    try:
        backend = backend_for()
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    gpus = visible_gpus() if backend == "keras" else []
    console.print(f"fer worker: classifier on {describe(gpus) if gpus else 'CPU'} ({backend}), batches of up to "
                  f"{batch_size_of(backend, gpus)} faces; face detection on the CPU, {concurrency} process(es)")
    app.worker_main(["worker", f"--concurrency={concurrency}", f"--pool={pool}", f"--loglevel={loglevel}"])
