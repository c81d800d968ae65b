"""`fer report --format html`: the self-contained HTML report, to a file or to a redirected stdout."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.markup import escape

from cli.output import console, error_console, fail


def write_html_report(engine, summary: dict[str, Any], scope, output: Path | None) -> None:
    """Build the report of ``scope`` (a job, the runs since a date, the whole archive) under its ``summary``; write
    it atomically to ``output``, or to stdout when that is not a terminal."""
    from fer_model.files import write_atomically
    from reports.html import build_scope_html_report, heading

    stdout = click.get_text_stream("stdout")
    if output is None and stdout.isatty():
        fail("--format html writes a file: give -o FILE (or redirect stdout: `fer report --format html > report.html`)")
    with error_console.status(f"Building the HTML report of {heading(summary)}"):
        html = build_scope_html_report(engine, summary, scope)
    if output is None:
        click.echo(html, nl=False)
        return
    try:
        write_atomically(output, html)
    except OSError as error:
        fail(f"cannot write {output}: {error.strerror or error}")
    console.print(f"Wrote {escape(str(output))} ({len(html.encode()) / 1024:,.0f} KiB)")
