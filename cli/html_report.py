"""`fer report --format html`: the self-contained HTML report, to a file or to a redirected stdout."""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape

from cli.output import console, fail
from fer_model.files import write_atomically


def html_destination(output: Path | None) -> None:
    """Refuse, before anything is built, to write a page onto a terminal."""
    if output is None and click.get_text_stream("stdout").isatty():
        fail("--format html writes a file: give -o FILE (or redirect stdout: `fer report --format html > report.html`)")


def write_html_report(html: str, output: Path | None) -> None:
    """Write the page atomically to ``output``, or to stdout when that is None."""
    if output is None:
        click.echo(html, nl=False)
        return
    try:
        write_atomically(output, html)
    except OSError as error:
        fail(f"cannot write {output}: {error.strerror or error}")
    console.print(f"Wrote {escape(str(output))} ({len(html.encode()) / 1024:,.0f} KiB)")
