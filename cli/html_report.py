"""`fer report --format html`: the self-contained HTML report, to a file or to a redirected stdout."""

from __future__ import annotations

from pathlib import Path

from cli.output import html_destination, write_output


def report_destination(output: Path | None) -> None:
    """Refuse, before anything is built, to write the report onto a terminal."""
    html_destination(output, ": `fer report --format html > report.html`")


def write_html_report(html: str, output: Path | None) -> None:
    """Write the page atomically to ``output``, or to stdout when that is None."""
    write_output(html, output, f" ({len(html.encode()) / 1024:,.0f} KiB)")
