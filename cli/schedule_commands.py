"""`fer schedule ...` (daily incremental runs, started by Celery beat) and `fer beat`."""

from __future__ import annotations

import os

import click

from cli.db_commands import DB_HELP, existing_engine
from cli.db_commands import upgraded_engine as _engine
from cli.output import console, fail, print_rows
from cli.params import MIN_FACE, MIN_FACE_HELP
from workers.options import JobOptions


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
    from cli.run_commands import library_errors
    from db.schedules import ScheduleError, add_schedule, local_zone_name
    from workers.pipeline import job_options

    root = os.path.abspath(path)
    zone = timezone or local_zone_name()
    with library_errors():
        options = job_options(JobOptions(model=model, detector=detector, min_face=min_face, allowed_roots=(root,),
                                         chunk_size=chunk_size, incremental=True))
    engine = _engine(db_url)
    try:
        schedule_id = add_schedule(engine, root, at, zone, options)
    except ScheduleError as error:
        fail(str(error))
    console.print(f"Schedule {schedule_id}: {root} every day at {at} ({zone})")


@schedule.command("list")
@click.option("--format", "output_format", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True)
@click.option("--db", "db_url", help=DB_HELP)
def list_(output_format, db_url) -> None:
    """The schedules, with the next run each starts (in its time zone) and the last run it started."""
    from db.models import utcnow
    from db.schedules import list_schedules, next_run

    now = utcnow()
    schedules = list_schedules(existing_engine(db_url))
    rows = []
    for s in schedules:
        upcoming = next_run(s, now)
        shown = upcoming.isoformat(timespec="minutes") if output_format != "table" else \
            upcoming.strftime("%Y-%m-%d %H:%M %Z") + (" (due)" if upcoming <= now else "")
        rows.append((s.id, s.root, s.at, s.timezone, shown, s.options.get("model"), s.last_run_on, s.last_job_id))
    print_rows(["id", "root", "at", "timezone", "next_run", "model", "last_run_on", "last_job"], rows, output_format)


@schedule.command()
@click.argument("schedule_id", type=int)
@click.option("--db", "db_url", help=DB_HELP)
def remove(schedule_id, db_url) -> None:
    """Delete schedule SCHEDULE_ID (its jobs and results stay)."""
    from db.schedules import remove_schedule

    if not remove_schedule(existing_engine(db_url), schedule_id):
        fail(f"no schedule {schedule_id}")
    console.print(f"Removed schedule {schedule_id}")


@click.command()
@click.option("--loglevel", default="INFO", show_default=True)
@click.option("--schedule-file", type=click.Path(dir_okay=False), help="Where beat keeps its state (default: beside the SQLite default database).")
@click.option("--broker", "broker", help="Celery broker URL, e.g. redis://queue-host:6379/0 (default: $FER_BROKER_URL, "
                                         "else redis://localhost:6379/0).")
@click.option("--db", "db_url", help=DB_HELP)
def beat(loglevel, schedule_file, broker, db_url) -> None:
    """Run Celery beat: every FER_SCHEDULE_POLL_SECONDS (60) it starts the schedules that are due.

    Run exactly one beat per deployment; the workers do the annotating. An unreachable broker stops it at once."""
    from cli.run_commands import library_errors
    from workers.pipeline import check_broker

    if db_url:
        os.environ["FER_DATABASE_URL"] = db_url
    _engine(db_url)
    with library_errors():
        check_broker(broker)
    from workers.celery_app import app

    if schedule_file is None:
        from fer_model.files import data_home

        data_home().mkdir(parents=True, exist_ok=True)
        schedule_file = str(data_home() / "celerybeat-schedule")
    app.start(["beat", f"--loglevel={loglevel}", f"--schedule={schedule_file}"])
