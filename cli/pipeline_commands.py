"""`fer annotate`, `fer submit`, `fer worker`, `fer status`, `fer report`, `fer export`."""

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

from cli.db_commands import DB_HELP
from cli.db_commands import upgraded_engine as _engine
from cli.output import console, fail
from cli.params import MIN_FACE, MIN_FACE_HELP
from workers.chunking import DEFAULT_CHUNK_SIZE, chunked



def _discover(paths: tuple[str, ...], recursive: bool, ext: str) -> list[str]:
    from workers.discovery import DiscoveryError, find_images, parse_extensions

    try:
        found = list(find_images(paths, recursive=recursive, extensions=parse_extensions(ext)))
    except DiscoveryError as error:
        fail(str(error))
    return found  # may be empty: an incremental run over an emptied folder records what went missing


def _prepare(engine, paths: tuple[str, ...], files: list[str], options: dict[str, Any], ext: str):
    """Record the job; an incremental run over folders another run is still annotating stops here."""
    from workers.submission import NoImages, RunStillGoing, prepare_job

    try:
        return prepare_job(engine, [os.path.abspath(p) for p in paths], files, options)
    except NoImages:
        fail(f"no images found in {', '.join(paths)} (extensions: {ext})")
    except RunStillGoing as error:
        console.print(
            f"Not started: job {error.job_id} over the same folders is still running. If its process died, finish it "
            f"with `fer retry {error.job_id}` (or `--local`); it stops counting as running after "
            f"{os.environ.get('FER_STALE_RUN_HOURS', '12')} h without progress."
        )
        raise SystemExit(0)


def _options(model: str, detector: str, min_face: int | str, roots: list[str], chunk_size: int, incremental: bool) -> dict[str, Any]:
    from fer_model.registry import ModelNotFound, resolve_model
    from workers.detection import DETECTOR_FACTORIES

    try:
        resolve_model(model)
    except ModelNotFound as error:
        fail(str(error))
    if detector not in DETECTOR_FACTORIES:
        fail(f"unknown detector {detector!r}; available: {', '.join(DETECTOR_FACTORIES)}")
    return {"model": model, "detector": detector, "min_face": min_face, "allowed_roots": roots,
            "chunk_size": chunk_size, "incremental": incremental}


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
    click.option("--ext", default="jpg,jpeg,png,bmp,gif,tif,tiff,webp", show_default=True, help="File extensions to annotate."),
    click.option("--chunk-size", type=click.IntRange(1, 10_000), default=DEFAULT_CHUNK_SIZE, show_default=True,
                 help="Images per task."),
    click.option("--model", default="default", show_default=True, help="Model name (default: the model `fer model list` stars), run folder or .keras file."),
    click.option("--detector", default="haar", show_default=True, help="Face detector."),
    click.option("--min-face", type=MIN_FACE, default="48", show_default=True, help=MIN_FACE_HELP),
    click.option("--incremental/--reannotate", default=True, show_default=True,
                 help="Skip files this model version already annotated (same path, size and time), copy the results "
                      "of files seen under another name, mark vanished ones missing; --reannotate does everything again."),
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
def annotate(paths, recursive, ext, chunk_size, model, detector, min_face, incremental, db_url, processes,
             output_format) -> None:
    """Annotate PATHS here and now: no servers (SQLite and local processes by default).

    Run it again (e.g. nightly from cron) and it annotates only new and changed files."""
    from db.results import finish_job_if_complete, job_summary
    from workers.annotate import StageSeconds

    started = time.monotonic()
    files = _discover(paths, recursive, ext)
    options = _options(model, detector, min_face, _allowed_roots(paths), chunk_size, incremental)
    engine = _engine(db_url)
    job = _prepare(engine, paths, files, options, ext)
    stage_seconds = StageSeconds()
    if job.image_ids:
        stage_seconds = _process_here(engine, db_url, job.job_id, job.image_ids, options, processes)
    job_id = job.job_id
    finish_job_if_complete(engine, job_id)
    summary = job_summary(engine, job_id)
    summary["seconds"] = round(time.monotonic() - started, 2)
    summary["stage_seconds"] = stage_seconds.as_dict()
    _print_report(summary, output_format)


@click.command()
@with_common_input
@click.option("--wait", is_flag=True, help="Wait for the job to finish and print its report.")
def submit(paths, recursive, ext, chunk_size, model, detector, min_face, incremental, db_url, wait) -> None:
    """Record a job for PATHS and queue it for `fer worker` processes (Redis by default)."""
    files = _discover(paths, recursive, ext)
    options = _options(model, detector, min_face, _allowed_roots(paths), chunk_size, incremental)
    _check_broker()
    engine = _engine(db_url)
    job = _prepare(engine, paths, files, options, ext)
    job_id = job.job_id
    _enqueue(engine, job_id, job.image_ids, options)
    click.echo(job_id)
    if wait:
        _wait_for(engine, job_id)
        from db.results import job_summary

        _print_report(job_summary(engine, job_id), "table")


def _enqueue(engine, job_id: int, ids: list[int], options: dict[str, Any]) -> None:
    """Queue the images in chunks. Ctrl-C or SIGTERM part-way marks the job 'interrupted' for `fer retry`."""
    from db.results import mark_job
    from workers.celery_app import queue_chunks

    def stop(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        queue_chunks(job_id, ids, options)
    except KeyboardInterrupt:
        mark_job(engine, job_id, "interrupted")
        fail(f"interrupted while queueing job {job_id}; queue the rest with `fer retry {job_id}`", exit_code=130)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _check_broker() -> None:
    from kombu.exceptions import OperationalError as BrokerError
    from kombu.utils.url import maybe_sanitize_url

    from workers.celery_app import app, broker_url

    app.conf.broker_url = broker_url()
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
@click.option("--wait", is_flag=True, help="Wait for the job to finish and print its report.")
@click.option("--db", "db_url", help=DB_HELP)
def retry(job, failed, local, processes, chunk_size, wait, db_url) -> None:
    """Finish JOB: queue its pending images again (lost tasks, an interrupted submit or annotate), and with
    --failed its failed ones. Images already done are never processed twice."""
    from db.results import job_options, job_summary, reopen_job

    engine = _engine(db_url)
    options = job_options(engine, job)
    if options is None:
        fail(f"no job {job}")
    if chunk_size:
        options["chunk_size"] = chunk_size
    if not local:
        _check_broker()
    ids = reopen_job(engine, job, include_failed=failed)
    console.print(f"Job {job}: {len(ids)} image(s) to process" + ("" if ids else "; nothing to do"))
    if ids and local:
        _process_here(engine, db_url, job, ids, options, processes)
    elif ids:
        _enqueue(engine, job, ids, options)
        if wait:
            _wait_for(engine, job)
    if local or wait:
        _print_report(job_summary(engine, job), "table")


@click.command()
@click.option("--concurrency", type=click.IntRange(1, 256), default=os.cpu_count() or 1, show_default=True)
@click.option("--pool", type=click.Choice(["prefork", "solo", "threads"]), default="prefork", show_default=True)
@click.option("--db", "db_url", help=DB_HELP)
@click.option("--loglevel", default="INFO", show_default=True)
def worker(concurrency, pool, db_url, loglevel) -> None:
    """Start a Celery worker that processes submitted jobs."""
    if db_url:
        os.environ["FER_DATABASE_URL"] = db_url
    _engine(db_url)
    from workers.celery_app import app
    from workers.devices import batch_size_for, describe, visible_gpus

    os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")  # the pool processes share the card
    gpus = visible_gpus()
    console.print(f"fer worker: classifier on {describe(gpus) if gpus else 'CPU'}, batches of up to "
                  f"{batch_size_for(gpus)} faces; face detection on the CPU, {concurrency} process(es)")
    app.worker_main(["worker", f"--concurrency={concurrency}", f"--pool={pool}", f"--loglevel={loglevel}"])


def _resolve_job(engine, job: int | None) -> int:
    from db.results import latest_job_id

    job_id = job if job is not None else latest_job_id(engine)
    if job_id is None:
        fail("no jobs yet: run `fer annotate PATH` or `fer submit PATH`")
    return job_id


def _process_here(engine, db_url: str | None, job_id: int, ids: list[int], options: dict[str, Any], processes: int):
    """Run the images' chunks in local processes with a progress bar; Ctrl-C marks the job for `fer retry --local`."""
    from db.session import database_url
    from workers.embedded import run_locally

    chunks = chunked(ids, int(options.get("chunk_size", DEFAULT_CHUNK_SIZE)))
    try:
        with _progress() as bar:
            task = bar.add_task(f"job {job_id}", total=len(ids))
            return run_locally(database_url(db_url), job_id, chunks, options, min(processes, len(chunks)),
                               on_chunk_done=lambda n: bar.advance(task, n))
    except KeyboardInterrupt:
        _interrupted(engine, job_id, f"fer retry {job_id} --local")


def _interrupted(engine, job_id: int, resume_command: str) -> None:
    from db.results import mark_job

    mark_job(engine, job_id, "interrupted")
    fail(f"interrupted; job {job_id} keeps what was finished; finish it with `{resume_command}`", exit_code=130)


def _wait_for(engine, job_id: int, poll: float = 1.0) -> None:
    from db.results import job_summary

    with _progress() as bar:
        summary = job_summary(engine, job_id)
        task = bar.add_task(f"job {job_id}", total=summary["images"]["total"])
        while True:
            summary = job_summary(engine, job_id)
            images = summary["images"]
            bar.update(task, completed=images["done"] + images["failed"])
            if summary["status"] == "finished":
                return
            time.sleep(poll)


@click.command()
@click.argument("job", type=int, required=False)
@click.option("--wait", is_flag=True, help="Follow the job until it finishes.")
@click.option("--db", "db_url", help=DB_HELP)
def status(job, wait, db_url) -> None:
    """Progress of JOB (default: the latest)."""
    from db.results import job_summary

    engine = _engine(db_url)
    job_id = _resolve_job(engine, job)
    summary = job_summary(engine, job_id)
    if summary is None:
        fail(f"no job {job_id}")
    if wait:
        _wait_for(engine, job_id)
        summary = job_summary(engine, job_id)
    images = summary["images"]
    console.print(
        f"job {job_id}: {summary['status']}; {images['done'] + images['failed']}/{images['total']} images "
        f"({images['done']} done, {images['failed']} failed, {images['pending']} pending), {summary['faces']} faces"
    )


@click.command()
@click.argument("job", type=int, required=False)
@click.option("--run", "run", type=int, help="The job (run) to report; same as JOB.")
@click.option("--since", type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"]),
              help="Everything the runs started since this date (local time) added: images, faces, emotions per model.")
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
def report(job, run, since, by, output_format, output, db_url) -> None:
    """Summary of JOB (default: the latest): images, faces, emotions, and for incremental runs what changed."""
    from db.results import breakdown, job_summary, since_summary

    if job is not None and run is not None and job != run:
        fail("give the job either as JOB or as --run, not both")
    if since is not None and (job is not None or run is not None):
        fail("--since reports every run since a date; leave out JOB and --run")
    if since is not None and output_format == "html":
        fail("--format html reports one job; leave out --since")
    engine = _engine(db_url)
    if since is not None:
        if by != "emotion":
            fail("--since reports emotions per model version; --by works on one job")
        _print_report(since_summary(engine, since.astimezone()), output_format, output)
        return
    job_id = _resolve_job(engine, job if job is not None else run)
    summary = job_summary(engine, job_id)
    if summary is None:
        fail(f"no job {job_id}")
    if output_format == "html":
        from cli.html_report import write_html_report

        write_html_report(engine, job_id, output)
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
        from reports.files import write_text_atomically

        try:
            write_text_atomically(output, text)
        except OSError as error:
            fail(f"cannot write {output}: {error.strerror or error}")
        console.print(f"Wrote {escape(str(output))}")


def _report_caption(summary: dict[str, Any]) -> str:
    images = summary["images"]
    lines = [f"{images['total']} images annotated: {images['done']} done, {images['failed']} failed, "
             f"{images['pending']} pending; {summary['faces']} faces"]
    if "since" in summary:
        lines[0] = f"Since {summary['since']} ({len(summary['jobs'])} runs): " + lines[0]
        lines += [f"model {m['name']} {m['version']}: {m['faces']} faces" for m in summary["models"]]
    else:
        model = summary["model"]
        lines[0] += f"; {summary['images_without_faces']} images without faces; model {model['name']} {model['version'] or ''}"
    changes = summary.get("changes")
    if changes and (summary.get("incremental", True) or changes["unchanged"] or changes["missing"]):
        lines.append(
            f"Changes: {changes['new']} new, {changes['changed']} changed, {changes['copied']} copies of files "
            f"annotated before (results reused), {changes['unchanged']} unchanged (skipped), "
            f"{changes['missing']} missing since the last run"
        )
    return "\n".join(line.rstrip() for line in lines)


def _report_table(summary: dict[str, Any]) -> Table:
    title = f"Since {summary['since']}" if "since" in summary else f"Job {summary['job']} ({summary['status']})"
    table = Table(title=title)
    if summary.get("rows") is not None:
        columns = [summary["by"], "images", "faces", *summary["emotions"]]
        for column in columns:
            table.add_column(column, justify="left" if column == summary["by"] else "right", overflow="fold")
        for row in summary["rows"]:
            table.add_row(*(Text(str(row[column])) for column in columns))  # folder names are user data
        return table
    table.add_column("emotion")
    table.add_column("faces", justify="right")
    table.add_column("share", justify="right")
    for name, count in summary["emotions"].items():
        table.add_row(name, str(count), f"{count / summary['faces']:.1%}" if summary["faces"] else "-")
    return table


@click.command()
@click.argument("job", type=int)
@click.option("--format", "output_format", type=click.Choice(["csv", "jsonl"]), default="csv", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--db", "db_url", help=DB_HELP)
def export(job, output_format, output, db_url) -> None:
    """Write one row per face of JOB (path, box, label, confidence, probabilities, model)."""
    from sqlalchemy import text

    from db.results import job_summary

    engine = _engine(db_url)
    if job_summary(engine, job) is None:
        fail(f"no job {job}")
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
    console.print(f"Wrote {rows} faces to {escape(str(output))}")
