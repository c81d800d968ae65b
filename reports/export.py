"""`fer export`: a job's faces, or its failed files, as CSV or JSON lines."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from sqlalchemy import Engine

from db.reads import export_rows


def write_export(engine: Engine, job_id: int, output: Path, output_format: str, failed: bool) -> int:
    """Write the rows to ``output`` whole or not at all (OSError leaves nothing behind); returns how many."""
    partial = output.with_name(f".{output.name}.partial")
    rows = 0
    try:
        with export_rows(engine, job_id, failed) as (columns, result), partial.open("w", newline="") as handle:
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
    except OSError:
        partial.unlink(missing_ok=True)
        raise
    return rows
