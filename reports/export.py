"""`fer export`: a job's faces, or its failed files, as CSV or JSON lines (or the whole archive's)."""

from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Engine

from db.reads import export_rows
from db.scopes import ModelChoice
from fer_model.files import atomic_open


def write_export(engine: Engine, job_id: int | None, output: Path, output_format: str, failed: bool,
                 archive: ModelChoice | None = None) -> int:
    """Write the rows to ``output`` whole or not at all (OSError leaves nothing behind); returns how many."""
    with atomic_open(output, "w", newline="") as handle:
        return write_rows(engine, job_id, handle, output_format, failed, archive)


def write_rows(engine: Engine, job_id: int | None, handle: IO[str], output_format: str, failed: bool,
               archive: ModelChoice | None = None) -> int:
    """Write the rows to an open text stream (a file, or stdout); returns how many."""
    rows = 0
    with export_rows(engine, job_id, failed, archive) as (columns, result):
        writer = csv.writer(handle) if output_format == "csv" else None
        if writer:
            writer.writerow(columns)
        for row in result:
            rows += 1
            if writer:
                writer.writerow(row)
            else:
                handle.write(json.dumps(dict(zip(columns, row)), default=_json_value) + "\n")
    return rows


def _json_value(value: Any) -> Any:
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
