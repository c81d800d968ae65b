"""`fer annotate`, `fer submit`, `fer retry`, `fer cancel`, `fer worker`: parse the options, make one library
call (workers.archive.Archive), print."""

from __future__ import annotations

import os

import click

from cli.library import BROKER_HELP, DB_HELP, archive_of
from cli.output import console, fail, plural
from cli.params import MIN_FACE, MIN_FACE_HELP
from cli.progress import run_progress
from cli.report_output import exit_for, print_report
from workers.jobs.discovery import DEFAULT_EXTENSIONS, DiscoveryError, parse_extensions
from workers.jobs.options import JobOptions
from workers.vision.detector_names import available_detectors


def _options(ext, recursive, chunk_size, model, detector, min_face, incremental, follow_symlinks,
             retry_failed) -> JobOptions:
    """The job's options as typed on the command line (the library checks them)."""
    try:
        extensions = parse_extensions(ext)
    except DiscoveryError as error:
        fail(str(error))
    return JobOptions(model=model, detector=detector, min_face=min_face, chunk_size=chunk_size,
                      incremental=incremental, follow_symlinks=follow_symlinks, extensions=extensions,
                      recursive=recursive, retry_failed=retry_failed)


def _print_job_report(summary: dict) -> None:
    print_report(summary, "table")
    exit_for(summary)


common_input = [
    # Not click's readable check: a folder that cannot be listed is the run's failure (exit 1 or 23), not a usage error.
    click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=str, readable=False)),
    click.option("--recursive/--no-recursive", default=True, show_default=True, help="Descend into sub-folders."),
    click.option("--ext", default=",".join(DEFAULT_EXTENSIONS), show_default=True, help="File extensions to annotate."),
    click.option("--chunk-size", type=click.IntRange(1, 10_000), default=JobOptions.chunk_size, show_default=True,
                 help="Images per task."),
    click.option("--model", default=JobOptions.model, show_default=True, help="Model name (default: the model `fer model list` stars), run folder or .keras file."),
    click.option("--detector", default=JobOptions.detector, show_default=True,
                 help=f"Face detector: {', '.join(available_detectors())}. haar-verified (the default) checks the "
                      "cascade's candidates with a verifier CNN and a fine rescan; haar is about 10% faster and misses "
                      "more faces near --min-face."),
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
    options = _options(ext, recursive, chunk_size, model, detector, min_face, incremental, follow_symlinks,
                       retry_failed)
    with archive_of(db_url) as archive, run_progress() as progress:
        summary = archive.annotate(paths, options, processes=processes, progress=progress,
                                   whole_archive_if_quiet=output_format == "table")
    print_report(summary, output_format)
    exit_for(summary)


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
    def announce(job) -> None:
        if job.images:
            console.print(f"Job {job.job_id} queued: {plural(job.images, 'image')} in {plural(job.chunks, 'chunk')}"
                          + ("" if wait else f"; follow it with `fer status {job.job_id} --wait`"))
        else:
            console.print(f"Job {job.job_id}: nothing to annotate, every file is unchanged"
                          + ("" if wait else f"; `fer report {job.job_id}` shows the whole archive"))

    options = _options(ext, recursive, chunk_size, model, detector, min_face, incremental, follow_symlinks,
                       retry_failed)
    with archive_of(db_url, broker) as archive, run_progress() as progress:
        job = archive.submit(paths, options, wait=wait, progress=progress, announce=announce)
    if job.summary is not None:
        _print_job_report(job.summary)


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
    def announce(images: int) -> None:
        console.print(f"Job {job}: {plural(images, 'image')} to process" + ("" if images else "; nothing to do"))

    with archive_of(db_url, broker) as archive, run_progress() as progress:
        retried = archive.retry(job, failed=failed, local=local, processes=processes, model=model, detector=detector,
                                min_face=min_face, chunk_size=chunk_size, wait=wait, progress=progress,
                                announce=announce)
    if retried.summary is not None:
        _print_job_report(retried.summary)


@click.command()
@click.argument("job", type=int, required=False)
@click.option("--broker", "broker", help=BROKER_HELP + " The job's chunks still queued there are taken off.")
@click.option("--db", "db_url", help=DB_HELP)
def cancel(job, broker, db_url) -> None:
    """End JOB (default: the latest) while it is queued or running: its pending images are not processed.

    Its chunks still in the broker's queue are taken off it (Redis), and workers drop those they
    already hold; the images already done stay. `fer retry JOB` reopens it.
    """
    with archive_of(db_url, broker) as archive:
        cancelled = archive.cancel(job)
    job_id = cancelled.job_id
    removed = f"; {plural(cancelled.removed, 'queued chunk')} taken off the queue" if cancelled.removed else ""
    if cancelled.previous in ("finished", "cancelled"):
        console.print(f"Job {job_id} is already {cancelled.previous}; nothing to cancel{removed}")
    else:
        console.print(f"Job {job_id} cancelled (it was {cancelled.previous}){removed}; `fer retry {job_id}` reopens it")
    if cancelled.broker_problem:
        console.print(f"Its chunks stay in the queue: {cancelled.broker_problem}; workers drop them as they reach them")


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
    def announce(plan) -> None:
        console.print(f"fer worker: classifier on {plan.device} ({plan.backend}), batches of up to "
                      f"{plan.batch_size} faces; face detection on the CPU, {concurrency} process(es)")

    with archive_of(db_url, broker) as archive:
        archive.run_worker(concurrency, pool, loglevel, announce=announce)
