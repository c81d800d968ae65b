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
    from db.reads import job_summary
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
        console.print(archive_line(quiet_night_view(engine, summary)), soft_wrap=True)


@click.command()
@click.argument("job", type=int, required=False)
@click.option("--run", "run", type=int, help="The job (run) to report; same as JOB.")
@click.option("--since", metavar="DATE", type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"]),
              help="Everything the runs started since DATE (local time; YYYY-MM-DD or 'YYYY-MM-DD HH:MM') added, as "
                   "one model version sees it (--model), with totals per model version.")
@click.option("--all", "whole_archive", is_flag=True,
              help="The whole archive: every file's latest annotation by one model version (--model), with totals "
                   "per model version, the files whose latest attempt failed and the date of the last run (the "
                   "default when the latest run changed nothing).")
@click.option("--model", "model", metavar="NAME[@VERSION]",
              help="With --all or --since: the model version to show (default: the default model, or the latest "
                   "used when the default has annotated nothing here).")
@click.option("--by", type=click.Choice(["emotion", "folder", "day"]), default="emotion", show_default=True,
              help="Break faces down by emotion, by folder, or by day (file date).")
@click.option("--format", "output_format", type=click.Choice(["table", "json", "csv", "html"]), default="table",
              show_default=True,
              help="html: one self-contained page (charts, face thumbnails, failures) for any browser, e.g. "
                   "`fer report 3 --format html -o report.html`; it needs -o FILE, or stdout redirected to a file, "
                   "and has every breakdown (--by is ignored).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write to this file instead of the terminal (written whole or not at all); - is stdout.")
@click.option("--compare", nargs=2, metavar="MODEL_A MODEL_B",
              help="Compare two models over the images both annotated: faces that agree, the confusion between "
                   "their labels, the faces whose label changed most (NAME, or NAME@VERSION for an older version).")
@click.option("--top", type=click.IntRange(min=0), default=10, show_default=True,
              help="With --compare: how many of the most changed faces to list.")
@click.option("--db", "db_url", help=DB_HELP)
def report(job, run, since, whole_archive, model, by, output_format, output, compare, top, db_url) -> None:
    """Summary of JOB (default: the latest): images, faces, emotions, failed files, and for incremental runs what
    changed. When the latest run changed nothing (a quiet night), the whole archive instead (as --all).

    \b
        fer report                      # the latest run
        fer report --all --format json  # every file's latest annotation
        fer report --since 2026-11-01 --by folder
        fer report --compare seed-flip ensemble --format html -o compare.html
    """
    from db.reads import archive_summary, job_summary, since_summary
    from db.scopes import archive_scope, job_scope, runs_scope

    output = None if output is not None and str(output) == "-" else output
    if compare:
        if job is not None or run is not None or since is not None or whole_archive or model or by != "emotion":
            fail("--compare covers every image both models annotated; leave out JOB, --run, --since, --all, --model "
                 "and --by")
        from cli.compare_output import print_comparison
        from db.compare import CompareError, compare_models

        try:
            comparison = compare_models(existing_engine(db_url), *compare, top=top)
        except CompareError as error:
            fail(str(error))
        print_comparison(comparison, output_format, output)
        return

    if job is not None and run is not None and job != run:
        fail("give the job either as JOB or as --run, not both")
    if since is not None and (job is not None or run is not None):
        fail("--since reports every run since a date; leave out JOB and --run")
    if whole_archive and (job is not None or run is not None or since is not None):
        fail("--all reports the whole archive; leave out JOB, --run and --since")
    if model and since is None and not whole_archive:
        fail("--model chooses the model version of --all and --since; a job's report shows the job's own model")
    engine = existing_engine(db_url)
    if since is not None:
        choice = _model_choice(engine, model)
        summary = since_summary(engine, since.astimezone(), choice)
        _print_view(engine, summary, runs_scope(summary["jobs"], choice.id), by, output_format, output)
        return
    if whole_archive:
        choice = _model_choice(engine, model)
        _print_view(engine, archive_summary(engine, choice), archive_scope(choice.id), by, output_format, output)
        return
    job_id = resolve_job(engine, job if job is not None else run)
    summary = job_summary(engine, job_id)
    if summary is None:
        fail(f"no job {job_id}")
    if job is None and run is None and summary["images"]["total"] == 0:
        archive = quiet_night_view(engine, summary)
        _print_view(engine, archive, archive_scope(_job_model(engine, summary).id), by, output_format, output)
        return
    _print_view(engine, summary, job_scope(job_id), by, output_format, output, job_id=job_id)


def _print_view(engine, summary: dict, scope, by: str, output_format: str, output: Path | None,
                job_id: int | None = None) -> None:
    """Print (or write) a report: its table, JSON or CSV with the --by breakdown, or the HTML page."""
    from db.reads import breakdown

    if output_format == "html":
        from cli.html_report import write_html_report

        write_html_report(engine, summary, scope, output)
        return
    if by != "emotion":
        summary["by"] = by
        summary["rows"] = breakdown(engine, scope, by)
    print_report(summary, output_format, output)


def _model_choice(engine, wanted: str | None):
    """The model version an --all or --since view shows: --model, else the default model (else the latest used)."""
    from db.scopes import UnknownModel, choose_model

    try:
        return choose_model(engine, wanted, _default_identity())
    except UnknownModel as error:
        fail(str(error))


def _default_identity() -> tuple[str, str] | None:
    """(name, version) the default model is recorded under, or None when it cannot be read."""
    from fer_model.registry import ModelNotFound
    from workers.classifier import model_identity

    try:
        identity = model_identity("default")
    except (ModelNotFound, OSError):
        return None
    return identity.name, identity.version


def _job_model(engine, summary: dict):
    """The model version a job ran with, as the whole-archive view after it shows."""
    from db.scopes import choose_model

    model = summary.get("model") or {}
    identity = (model["name"], model["version"]) if model.get("name") and model.get("version") else None
    return choose_model(engine, None, identity or _default_identity())


def quiet_night_view(engine, summary: dict) -> dict:
    """The whole archive as the job's model sees it, with what the job (which changed nothing) found."""
    from db.reads import archive_summary

    archive = archive_summary(engine, _job_model(engine, summary))
    archive["latest_run"] = {key: summary[key] for key in ("job", "status", "changes")}
    return archive


@click.command()
@click.argument("job", type=int, required=False)
@click.option("--all", "whole_archive", is_flag=True,
              help="The whole archive instead of a job: each file's latest faces by one model version (the "
                   "latest_annotations view), or with --failed the files whose latest attempt failed.")
@click.option("--model", "model", metavar="NAME[@VERSION]",
              help="With --all: the model version (default: the default model, or the latest used).")
@click.option("--format", "output_format", type=click.Choice(["csv", "jsonl"]), default="csv", show_default=True)
@click.option("--failed", is_flag=True, help="Export the failed files (path, error) instead of the faces.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path), required=True,
              help="The file to write (whole or not at all); - writes to stdout.")
@click.option("--db", "db_url", help=DB_HELP)
def export(job, whole_archive, model, output_format, failed, output, db_url) -> None:
    """Write one row per face of JOB (default: the latest): path, box, label, confidence, probabilities, model;
    with --failed, one row per failed file: path, error. --all exports the whole archive instead.

    \b
        fer export -o faces.csv
        fer export 3 --failed -o failed.csv
        fer export --all --format jsonl -o - | head
    """
    from db.reads import job_summary
    from reports.export import write_export, write_rows

    if whole_archive and job is not None:
        fail("--all exports the whole archive; leave out JOB")
    if model and not whole_archive:
        fail("--model chooses the model version of --all; a job's export has the job's own model")
    engine = existing_engine(db_url)
    archive = _model_choice(engine, model) if whole_archive else None
    if archive is None:
        job = resolve_job(engine, job)
        if job_summary(engine, job) is None:
            fail(f"no job {job}")
    if str(output) == "-":
        write_rows(engine, job, click.get_text_stream("stdout"), output_format, failed, archive)
        return
    try:
        rows = write_export(engine, job, output, output_format, failed, archive)
    except OSError as error:
        fail(f"cannot write {output}: {error.strerror or error}")
    console.print(f"Wrote {plural(rows, 'failed file' if failed else 'face')} to {escape(str(output))}")


def resolve_job(engine, job: int | None) -> int:
    from db.reads import latest_job_id

    job_id = job if job is not None else latest_job_id(engine)
    if job_id is None:
        fail("no jobs yet: run `fer annotate PATH` or `fer submit PATH`")
    return job_id
