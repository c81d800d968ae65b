"""`fer query`: one read-only SQL statement against the results database."""

from __future__ import annotations

import click

from cli.library import DB_HELP, archive_of
from cli.output import print_rows


@click.command()
@click.argument("sql")
@click.option("--format", "output_format", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@click.option("--db", "db_url", help=DB_HELP)
def query(sql: str, output_format: str, db_url: str | None) -> None:
    """Run one read-only SQL statement (SELECT, WITH, EXPLAIN, ...) and print its rows.

    The database enforces read-only (SQLite opened read-only, PostgreSQL in a READ ONLY
    transaction): a statement that would write is refused and changes nothing. The schema
    and example queries are in docs/sql.md. The view latest_annotations holds each file's latest
    annotation per model version, so files annotated again (re-runs, retries) count once.

    \b
        fer query "SELECT model, model_version, label, COUNT(*) AS faces FROM latest_annotations
                   GROUP BY model, model_version, label"
        fer query "SELECT path, error FROM images WHERE status = 'failed'" --format csv
    """
    with archive_of(db_url) as archive:
        result = archive.query(sql)
    print_rows(result.columns, result.rows, output_format)
