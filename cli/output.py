"""Console output shared by the commands: one rich console, errors, tables."""

from __future__ import annotations

from typing import NoReturn

import click
from rich.console import Console
from rich.text import Text

console = Console(highlight=False)
error_console = Console(stderr=True, highlight=False)


def fail(message: str, exit_code: int = 1) -> NoReturn:
    """Print a clear error (no traceback) and exit non-zero."""
    error_console.print(Text.assemble(("Error: ", "bold red"), message), soft_wrap=True)
    raise SystemExit(exit_code)


def echo_path(label: str, path: object) -> None:
    click.echo(f"{label}: {path}")
