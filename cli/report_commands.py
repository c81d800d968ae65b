"""`fer status`, `fer report`, `fer export`: reading jobs back. Parse the options, make one library call
(workers.archive.Archive), print."""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape
from rich.text import Text

from cli.compare_output import comparison_destination, print_comparison
from cli.html_report import report_destination, write_html_report
from cli.library import BROKER_HELP, DB_HELP, archive_of
from cli.output import EXIT_NOT_STARTED, console, fail, plural
from cli.progress import run_progress, spinner
from cli.report_output import archive_line, print_report, status_line


@click.command()
@click.argument("job", type=int, required=False)
@click.option("--wait", is_flag=True, help="Follow the job until it finishes; say so when no worker seems to be "
                                           "consuming the queue (after FER_NO_WORKER_SECONDS, 30, without progress).")
@click.option("--timeout", type=click.FloatRange(min=0), help="With --wait: give up after this many seconds (exit 75).")
@click.option("--broker", "broker", help=BROKER_HELP + " Asked with --wait whether any worker is there.")
@click.option("--db", "db_url", help=DB_HELP)
def status(job, wait, timeout, broker, db_url) -> None:
    """Progress of JOB (default: the latest); after a run that changed nothing, also the whole archive."""
    with archive_of(db_url, broker) as archive, run_progress() as progress:
        state = archive.status(job, wait=wait, timeout=timeout, progress=progress)
    console.print(status_line(state.summary), soft_wrap=True)
    if not state.ended:
        fail(f"job {state.summary['job']} has not finished after {timeout:g} s"
             + (f": {state.refused}" if state.refused else ""), exit_code=EXIT_NOT_STARTED)
    if state.refused:
        console.print(Text(f"Not moving: {state.refused}"), soft_wrap=True)
    if state.archive is not None:
        console.print(archive_line(state.archive), soft_wrap=True)


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
    output = None if output is not None and str(output) == "-" else output
    if compare:
        if job is not None or run is not None or since is not None or whole_archive or model or by != "emotion":
            fail("--compare covers every image both models annotated; leave out JOB, --run, --since, --all, --model "
                 "and --by")
        if output_format == "html":
            comparison_destination(output)
        with archive_of(db_url) as archive:
            comparison = archive.compare_html(*compare, top=top) if output_format == "html" else \
                archive.compare(*compare, top=top)
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
    scope = {"job_id": job if job is not None else run, "since": since, "whole_archive": whole_archive, "model": model}
    if output_format == "html":
        report_destination(output)
        with archive_of(db_url) as archive, spinner() as progress:
            html = archive.report_html(**scope, progress=progress)
        write_html_report(html, output)
        return
    with archive_of(db_url) as archive:
        summary = archive.report(**scope, by=by)
    print_report(summary, output_format, output)


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
    if whole_archive and job is not None:
        fail("--all exports the whole archive; leave out JOB")
    if model and not whole_archive:
        fail("--model chooses the model version of --all; a job's export has the job's own model")
    to_stdout = str(output) == "-"
    with archive_of(db_url) as archive:
        rows = archive.export(click.get_text_stream("stdout") if to_stdout else output, job,
                              whole_archive=whole_archive, model=model, failed=failed, format=output_format)
    if not to_stdout:
        console.print(f"Wrote {plural(rows, 'failed file' if failed else 'face')} to {escape(str(output))}")
