"""`fer report --format html`: the self-contained HTML report, to a file or to a redirected stdout."""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape

from cli.output import console, error_console, fail


def write_html_report(engine, job_id: int, output: Path | None) -> None:
    """Build the report of ``job_id``; write it atomically to ``output``, or to stdout when that is not a terminal."""
    from fer_model.files import write_atomically
    from reports.html import build_html_report

    stdout = click.get_text_stream("stdout")
    if output is None and stdout.isatty():
        fail("--format html writes a file: give -o FILE (or redirect stdout: `fer report --format html > report.html`)")
    with error_console.status(f"Building the HTML report of job {job_id}"):
        html = build_html_report(engine, job_id)
    if html is None:
        fail(f"no job {job_id}")
    if output is None:
        click.echo(html, nl=False)
        return
    try:
        write_atomically(output, html)
    except OSError as error:
        fail(f"cannot write {output}: {error.strerror or error}")
    console.print(f"Wrote {escape(str(output))} ({len(html.encode()) / 1024:,.0f} KiB)")
