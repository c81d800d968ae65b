"""`fer status`, `fer report`, `fer export`: reading jobs back."""

from __future__ import annotations

import os
from pathlib import Path

import click
from rich.markup import escape
from rich.text import Text

from cli.db_commands import DB_HELP, existing_engine
from cli.output import EXIT_NOT_STARTED, console, fail, plural
from cli.progress import wait_for
from cli.report_output import archive_line, print_report, status_line
from cli.run_commands import BROKER_HELP


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
    from workers.pipeline import refused_reason

    engine = existing_engine(db_url)
    job_id = resolve_job(engine, job)
    summary = job_summary(engine, job_id)
    if summary is None:
        fail(f"no job {job_id}")
    if broker:
        os.environ["FER_BROKER_URL"] = broker
    if wait:
        ended = wait_for(engine, job_id, timeout=timeout)
        summary = job_summary(engine, job_id)
        if not ended:
            console.print(status_line(summary), soft_wrap=True)
            refused = refused_reason(engine, job_id)
            fail(f"job {job_id} has not finished after {timeout:g} s" + (f": {refused}" if refused else ""),
                 exit_code=EXIT_NOT_STARTED)
    console.print(status_line(summary), soft_wrap=True)
    if summary["status"] in ("pending", "running"):
        refused = refused_reason(engine, job_id)
        if refused:
            console.print(Text(f"Not moving: {refused}"), soft_wrap=True)
    if summary["images"]["total"] == 0:
        console.print(archive_line(archive_summary(engine)), soft_wrap=True)


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
        print_report(since_summary(engine, since.astimezone()), output_format, output)
        return
    if whole_archive:
        print_report(archive_summary(engine), output_format, output)
        return
    job_id = resolve_job(engine, job if job is not None else run)
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
        print_report(archive, output_format, output)
        return
    if by != "emotion":
        summary["by"] = by
        summary["rows"] = breakdown(engine, job_id, by)
    print_report(summary, output_format, output)


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
    from db.reads import job_summary
    from reports.export import write_export

    engine = existing_engine(db_url)
    job = resolve_job(engine, job)
    if job_summary(engine, job) is None:
        fail(f"no job {job}")
    try:
        rows = write_export(engine, job, output, output_format, failed)
    except OSError as error:
        fail(f"cannot write {output}: {error.strerror or error}")
    console.print(f"Wrote {plural(rows, 'failed file' if failed else 'face')} to {escape(str(output))}")


def resolve_job(engine, job: int | None) -> int:
    from db.reads import latest_job_id

    job_id = job if job is not None else latest_job_id(engine)
    if job_id is None:
        fail("no jobs yet: run `fer annotate PATH` or `fer submit PATH`")
    return job_id
