"""`fer schedule ...` (daily incremental runs, started by Celery beat) and `fer beat`: parse the options, make one
library call (workers.archive.Archive), print."""

from __future__ import annotations

import click

from cli.library import BROKER_HELP, DB_HELP, archive_of
from cli.output import console, print_rows
from cli.params import MIN_FACE, MIN_FACE_HELP
from workers.jobs.options import JobOptions


@click.group()
def schedule() -> None:
    """Daily incremental runs over a folder, started by `fer beat` and run by `fer worker`.

    Without servers, use cron instead: `fer annotate --incremental PATH` does the same.
    """


@schedule.command("add")
@click.argument("path", type=click.Path(exists=True, file_okay=False, path_type=str))
@click.option("--at", "at", required=True, help="Time of day, HH:MM (24-hour), in --timezone.")
@click.option("--timezone", default=None, help="IANA time zone, e.g. Europe/Paris  [default: this machine's zone, else UTC]")
@click.option("--model", default=JobOptions.model, show_default=True, help="Model name, run folder or .keras file.")
@click.option("--detector", default=JobOptions.detector, show_default=True, help="Face detector.")
@click.option("--min-face", type=MIN_FACE, default=str(JobOptions.min_face), show_default=True, help=MIN_FACE_HELP)
@click.option("--chunk-size", type=click.IntRange(1, 10_000), default=JobOptions.chunk_size, show_default=True,
              help="Images per task.")
@click.option("--db", "db_url", help=DB_HELP)
def add(path, at, timezone, model, detector, min_face, chunk_size, db_url) -> None:
    """Annotate PATH incrementally every day at --at."""
    options = JobOptions(model=model, detector=detector, min_face=min_face, chunk_size=chunk_size)
    with archive_of(db_url) as archive:
        added = archive.add_schedule(path, at, timezone=timezone, options=options)
    console.print(f"Schedule {added.id}: {added.root} every day at {added.at} ({added.timezone})")


@schedule.command("list")
@click.option("--format", "output_format", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True)
@click.option("--db", "db_url", help=DB_HELP)
def list_(output_format, db_url) -> None:
    """The schedules, with the next run each starts (in its time zone) and the last run it started."""
    with archive_of(db_url) as archive:
        schedules = archive.schedules()
    rows = []
    for s in schedules:
        shown = s.next_run.isoformat(timespec="minutes") if output_format != "table" else \
            s.next_run.strftime("%Y-%m-%d %H:%M %Z") + (" (due)" if s.due else "")
        rows.append((s.id, s.root, s.at, s.timezone, shown, s.model, s.last_run_on, s.last_job_id))
    print_rows(["id", "root", "at", "timezone", "next_run", "model", "last_run_on", "last_job"], rows, output_format)


@schedule.command()
@click.argument("schedule_id", type=int)
@click.option("--db", "db_url", help=DB_HELP)
def remove(schedule_id, db_url) -> None:
    """Delete schedule SCHEDULE_ID (its jobs and results stay)."""
    with archive_of(db_url) as archive:
        archive.remove_schedule(schedule_id)
    console.print(f"Removed schedule {schedule_id}")


@click.command()
@click.option("--loglevel", default="INFO", show_default=True)
@click.option("--schedule-file", type=click.Path(dir_okay=False), help="Where beat keeps its state (default: beside the SQLite default database).")
@click.option("--broker", "broker", help=BROKER_HELP)
@click.option("--db", "db_url", help=DB_HELP)
def beat(loglevel, schedule_file, broker, db_url) -> None:
    """Run Celery beat: every FER_SCHEDULE_POLL_SECONDS (60) it starts the schedules that are due.

    Run exactly one beat per deployment; the workers do the annotating. An unreachable broker stops it at once."""
    with archive_of(db_url, broker) as archive:
        archive.run_beat(schedule_file, loglevel)
