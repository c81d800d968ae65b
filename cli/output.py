"""Console output shared by the commands: one rich console, errors, tables of rows."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, NoReturn

import click
from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderResult
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from fer_model.files import write_atomically

# Exit codes of every command (README, "Errors and exit codes").
EXIT_OK = 0
EXIT_ERROR = 1  # bad input or settings, an unreachable server, a run that failed: nothing or not all was done
EXIT_USAGE = 2  # click's code for a wrong command line
EXIT_PARTIAL = 23  # the run finished but some images failed (like rsync's partial transfer); the report lists them
EXIT_NOT_STARTED = 75  # not started: another run over the same folders is still going (EX_TEMPFAIL)
EXIT_INTERRUPTED = 130  # Ctrl-C or SIGTERM; `fer retry JOB` finishes the job

console = Console(highlight=False)
error_console = Console(stderr=True, highlight=False)


class CommandError(click.ClickException):
    """A command's one-line error: click prints it on stderr (no traceback) and exits with ``exit_code``."""

    def __init__(self, message: str, exit_code: int = EXIT_ERROR):
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file: Any = None) -> None:
        error_console.print(Text.assemble(("Error: ", "bold red"), self.format_message()), soft_wrap=True)


def fail(message: str, exit_code: int = EXIT_ERROR) -> NoReturn:
    """Stop the command with a clear one-line error and a non-zero exit code."""
    raise CommandError(message, exit_code)


def write_output(text: str, output: Path | None, detail: str = "") -> None:
    """Print ``text`` on stdout, or write it to ``output`` whole or not at all and say so (``detail`` follows the path)."""
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        write_atomically(output, text)
    except OSError as error:
        fail(f"cannot write {output}: {error.strerror or error}")
    console.print(f"Wrote {escape(str(output))}{detail}")


def html_destination(output: Path | None, redirect_hint: str) -> None:
    """Refuse, before anything is built, to write a page onto a terminal."""
    if output is None and click.get_text_stream("stdout").isatty():
        fail(f"--format html writes a file: give -o FILE (or redirect stdout{redirect_hint})")


def plural(count: int, word: str, plural_word: str | None = None) -> str:
    """``1 image``, ``2 images``."""
    return f"{count:,} {word if count == 1 else plural_word or word + 's'}"


def plain_value(value: Any) -> Any:
    """A database value as JSON has it: dates as ISO text, decimals as numbers, bytes as hex."""
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value.is_finite() and value.as_tuple().exponent >= 0 else float(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    return value


def cell_text(value: Any) -> str:
    """A database value as one table or CSV cell (NULL is empty; JSON values as JSON text)."""
    value = plain_value(value)
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


class PathText:
    """A path in a table cell: it wraps after a '/', never inside a name (unless one name is wider than the column)."""

    def __init__(self, path: str):
        self.path = path
        self.parts = re.findall(r"[^/]*/|[^/]+$", path) or [path]

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement(max(cell_len(part) for part in self.parts), cell_len(self.path))

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        lines, line = [], ""
        for part in self.parts:
            if line and cell_len(line + part) > options.max_width:
                lines.append(line)
                line = ""
            line += part
        lines.append(line)
        yield Text("\n".join(lines), overflow="fold")


def float_text(value: float) -> str:
    """A float as a table shows it: four decimals (CSV and JSON keep every digit)."""
    if value != 0 and abs(value) < 0.0001:
        return f"{value:.2e}"
    return f"{value:.4f}"


def _table_cell(value: Any) -> Text | PathText:
    if isinstance(value, float):
        return Text(float_text(value))
    text = cell_text(value)
    return PathText(text) if "/" in text else Text(text)  # values are user data, never markup


def print_rows(columns: Sequence[str], rows: Sequence[Sequence[Any]], output_format: str) -> None:
    """Print query rows as a rich table, CSV or a JSON array of objects."""
    if output_format == "json":
        records = [{column: plain_value(value) for column, value in zip(columns, row)} for row in rows]
        click.echo(json.dumps(records, indent=2, default=str))
    elif output_format == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(columns)
        writer.writerows([cell_text(value) for value in row] for row in rows)
        click.echo(buffer.getvalue(), nl=False)
    else:
        floats = any(isinstance(value, float) for row in rows for value in row)
        table = Table(caption=f"{len(rows):,} row{'' if len(rows) == 1 else 's'}"
                      + ("; decimals rounded to 4 places (--format csv or json gives every digit)" if floats else ""))
        for index, column in enumerate(columns):
            values = [row[index] for row in rows if row[index] is not None]
            numeric = bool(values) and all(isinstance(v, (int, float, Decimal)) and not isinstance(v, bool) for v in values)
            table.add_column(Text(column), overflow="fold", justify="right" if numeric else "left")
        for row in rows:
            table.add_row(*(_table_cell(value) for value in row))
        console.print(table)
