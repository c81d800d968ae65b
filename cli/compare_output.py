"""Rendering `fer report --compare A B`: a summary, the confusion between the models' labels, the faces that changed most."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text

from cli.output import console, html_destination, plural, write_output
from fer_model.classes import CLASSES

# Emotion column headings short enough for 80 columns.
SHORT = {"angry": "ang", "disgust": "dis", "fear": "fea", "happy": "hap", "neutral": "neu", "sad": "sad", "surprise": "sur"}


def comparison_caption(c: dict[str, Any]) -> str:
    a, b = c["model_a"], c["model_b"]
    lines = [f"{a['name']} {a['version']} vs {b['name']} {b['version']}: {plural(c['images'], 'image')} annotated by "
             f"both, {plural(c['faces_matched'], 'face')} found by both"]
    if c["faces_matched"]:
        lines.append(f"Same label: {c['faces_agree']:,} of {c['faces_matched']:,} faces ({c['agreement']:.1%})")
    unmatched_a, unmatched_b = c["faces_a"] - c["faces_matched"], c["faces_b"] - c["faces_matched"]
    if unmatched_a or unmatched_b:
        lines.append(f"Not compared (no face with the same box in the other): {unmatched_a:,} of {a['name']}'s, "
                     f"{unmatched_b:,} of {b['name']}'s")
    return "\n".join(lines)


def _tables(c: dict[str, Any]) -> list[Table]:
    a, b = c["model_a"]["name"], c["model_b"]["name"]
    confusion = Table(title=f"{a} (rows) vs {b} (columns)", padding=(0, 1),
                      caption=" ".join(f"{s}={n}" for n, s in SHORT.items()))
    confusion.add_column(f"{a}", no_wrap=True)
    for name in CLASSES:
        confusion.add_column(SHORT[name], justify="right", no_wrap=True)
    for row in CLASSES:
        confusion.add_row(row, *(Text(str(c["confusion"][row][name]), style="bold" if row == name else "")
                                 for name in CLASSES))
    tables = [confusion]
    if c["changed_most"]:
        changed = Table(title="Faces whose label changed most", padding=(0, 1))
        changed.add_column("photo", overflow="fold", ratio=1)
        changed.add_column(a, no_wrap=True)
        changed.add_column(b, no_wrap=True)
        changed.add_column("moved", justify="right", no_wrap=True)
        for face in c["changed_most"]:
            changed.add_row(f"{face['path']} #{face['face_index']}", f"{face['label_a']} {face['confidence_a']:.2f}",
                            f"{face['label_b']} {face['confidence_b']:.2f}", f"{face['moved']:.2f}")
        tables.append(changed)
    return tables


def _csv(c: dict[str, Any]) -> str:
    """The confusion matrix: one row per label of model A, one column per label of model B."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([f"{c['model_a']['name']} \\ {c['model_b']['name']}", *CLASSES])
    for row in CLASSES:
        writer.writerow([row, *(c["confusion"][row][name] for name in CLASSES)])
    return buffer.getvalue()


def comparison_destination(output: Path | None) -> None:
    """Refuse, before anything is built, to write the comparison page onto a terminal."""
    html_destination(output, " to a file")


def print_comparison(c: dict[str, Any] | str, output_format: str, output: Path | None) -> None:
    """Print or write the comparison ``c``; for --format html, ``c`` is the page."""
    if output_format == "html":
        text = c
    elif output_format == "json":
        text = json.dumps(c, indent=2) + "\n"
    elif output_format == "csv":
        text = _csv(c)
    else:
        with console.capture() as captured:
            for table in _tables(c):
                console.print(table)
            console.print(Text(comparison_caption(c)))
        text = captured.get()
    write_output(text, output)
