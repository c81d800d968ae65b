"""Rendering job reports and status lines: tables, captions, JSON and CSV."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import click
from rich import box
from rich.table import Table
from rich.text import Text

from cli.output import EXIT_PARTIAL, PathText, console, plural, write_output

# Failed files listed under the report table; JSON and `fer export --failed` have them all.
FAILED_SHOWN = 10


def exit_for(summary: dict[str, Any]) -> None:
    """Exit 23 when some images of the run failed or some folders could not be listed (the report above lists
    them); return when every image was annotated. The whole-archive view shown after a run that annotated
    nothing lists earlier runs' failures (unchanged since), which do not count."""
    failed = 0 if summary.get("archive") else summary["images"]["failed"]
    if failed or summary.get("unlisted_folders"):
        raise click.exceptions.Exit(EXIT_PARTIAL)


def status_line(summary: dict[str, Any]) -> Text:
    images = summary["images"]
    line = (f"job {summary['job']}: {summary['status']}; {images['done'] + images['failed']:,}/"
            f"{plural(images['total'], 'image')} ({images['done']:,} done, {images['failed']:,} failed, "
            f"{images['pending']:,} pending), {plural(summary['faces'], 'face')}")
    if summary.get("error"):
        line += f"; {summary['error']}"
    changes = summary.get("changes") or {}
    if images["total"] == 0 and (changes.get("unchanged") or changes.get("missing")):
        line += f" ({changes.get('unchanged', 0):,} unchanged, {changes.get('missing', 0):,} missing)"
    if summary.get("unlisted_folders"):
        line += f"; {plural(len(summary['unlisted_folders']), 'folder')} could not be listed"
    return Text(line)


def archive_line(archive: dict[str, Any]) -> Text:
    images = archive["images"]["done"]
    failed = archive["images"]["failed"]
    return Text(f"Whole archive ({_model_name(archive)}): {plural(images, 'image')} annotated, "
                f"{plural(archive['faces'], 'face')}" + (f", {failed:,} failed" if failed else "")
                + (f"; last run: job {archive['latest_job']} on {archive['last_run'][:16].replace('T', ' ')} UTC"
                   if archive.get("last_run") else "")
                + " (`fer report --all`)")


def _model_name(summary: dict[str, Any]) -> str:
    model = summary.get("model") or {}
    return " ".join(str(part) for part in (model.get("name"), model.get("version")) if part) or "no model yet"


def print_report(summary: dict[str, Any], output_format: str, output: Path | None = None) -> None:
    rows = summary.get("rows")
    if output_format == "json":
        text = json.dumps(summary, indent=2) + "\n"
    elif output_format == "csv" and rows is not None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else [summary["by"], "images", "faces"])
        writer.writeheader()
        writer.writerows(rows)
        text = buffer.getvalue()
    elif output_format == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        model = summary.get("model") or {}
        writer.writerow(["model", "model_version", "emotion", "faces", "share"])
        for name, count in summary["emotions"].items():
            writer.writerow([model.get("name") or "", model.get("version") or "", name, count,
                             f"{count / summary['faces']:.4f}" if summary["faces"] else "0"])
        text = buffer.getvalue()
    else:
        if output is None:
            console.print(_report_table(summary))
            _print_caption(_report_caption(summary))
            return
        with console.capture() as captured:
            console.print(_report_table(summary))
            _print_caption(_report_caption(summary))
        text = captured.get()
    write_output(text, output)


def _print_caption(caption: str) -> None:
    """Sentences wrap at spaces; the indented lines that name a file or folder are never broken (a path is
    copied whole from the terminal)."""
    for line in caption.splitlines():
        console.print(Text(line), soft_wrap=line.startswith("  "))


def _report_caption(summary: dict[str, Any]) -> str:
    if summary.get("archive"):
        return _archive_caption(summary)
    images = summary["images"]
    lines = [f"{plural(images['total'], 'image')} annotated: {images['done']:,} done, {images['failed']:,} failed, "
             f"{images['pending']:,} pending; {plural(summary['faces'], 'face')}"]
    if "since" in summary:
        lines[0] = (f"Since {summary['since']} ({plural(len(summary['jobs']), 'run')}): " + lines[0]
                    + f" by model {_model_name(summary)}")
        lines += _models_lines(summary)
    else:
        model = summary["model"]
        lines[0] += (f"; {plural(summary['images_without_faces'], 'image')} without faces; "
                     f"model {model['name']} {model['version'] or ''}")
    if summary.get("error"):
        lines.append(f"Job {summary['status']}: {summary['error']}")
    changes = summary.get("changes")
    # A first run (everything new) has nothing to compare with.
    if changes and any(changes.get(key) for key in ("changed", "retried", "copied", "unchanged", "missing")):
        lines.append(changes_line(changes))
    lines += _failed_lines(summary)
    lines += _unlisted_lines(summary)
    lines += _skipped_lines(summary)
    return "\n".join(line.rstrip() for line in lines)


def changes_line(changes: dict[str, int]) -> str:
    retried = f"{changes['retried']:,} failed before and retried, " if changes.get("retried") else ""
    failed_before = changes.get("unchanged_failed", 0)
    unchanged = (f"{changes['unchanged']:,} unchanged (skipped"
                 + (f"; {failed_before:,} of them failed before: `fer report --all` lists them, --retry-failed "
                    "tries them again" if failed_before else "") + ")")
    copies = "copy of a file" if changes["copied"] == 1 else "copies of files"
    return (f"Changes: {changes['new']:,} new, {changes['changed']:,} changed, {retried}{changes['copied']:,} {copies} "
            f"annotated before (results reused), {unchanged}, {changes['missing']:,} missing since the last run")


def _unlisted_lines(summary: dict[str, Any]) -> list[str]:
    unlisted = summary.get("unlisted_folders") or []
    if not unlisted:
        return []
    lines = [f"Not annotated: {plural(len(unlisted), 'folder')} could not be listed:"]
    lines += [f"  {item['path']}: {item['error']}" for item in unlisted[:FAILED_SHOWN]]
    if len(unlisted) > FAILED_SHOWN:
        lines.append(f"  ... and {len(unlisted) - FAILED_SHOWN:,} more (--format json lists them all)")
    return lines


def _failed_lines(summary: dict[str, Any]) -> list[str]:
    failed = summary.get("failed_files") or []
    if not failed:
        return []
    lines = [f"Failed ({len(failed):,}):" if not summary.get("archive") else
             f"Failed, and not changed since ({len(failed):,}; `fer annotate PATH --retry-failed` tries them again):"]
    lines += [f"  {item['path']}: {item['error']}" for item in failed[:FAILED_SHOWN]]
    if len(failed) > FAILED_SHOWN:
        export = "fer export --all --failed -o failed.csv" if summary.get("archive") else \
            f"fer export {summary['job']} --failed -o failed.csv" if "job" in summary else None
        lines.append(f"  ... and {len(failed) - FAILED_SHOWN:,} more: " + (f"`{export}` or " if export else "")
                     + "--format json lists them all")
    return lines


def _models_lines(summary: dict[str, Any]) -> list[str]:
    """Totals per model version, when several annotated the report's images (their labels are never added up)."""
    models = summary.get("models") or []
    lines = [f"Note: {summary['model_note']}"] if summary.get("model_note") else []
    shown = summary.get("model") or {}
    if len(models) > 1 or (models and (models[0]["name"], models[0]["version"]) != (shown.get("name"),
                                                                                    shown.get("version"))):
        lines.append("Per model version (--model NAME shows another):")
        for m in models:
            mark = "*" if (m["name"], m["version"]) == (shown.get("name"), shown.get("version")) else " "
            lines.append(f"  {mark} {m['name']} {m['version']}: {plural(m.get('images', 0), 'image')}, "
                         f"{plural(m['faces'], 'face')}")
    return lines


def _skipped_lines(summary: dict[str, Any]) -> list[str]:
    listed = summary.get("skipped_files") or []
    count = max(summary.get("files_skipped") or 0, len(listed))
    if not count:
        return []
    lines = [f"Skipped {plural(count, 'entry', 'entries')} that "
             + ("is not an image file:" if count == 1 else "are not image files:")]
    lines += [f"  {item['path']}: {item['reason']}" for item in listed[:FAILED_SHOWN]]
    if len(listed) > FAILED_SHOWN:
        lines.append(f"  ... and {len(listed) - FAILED_SHOWN} more (--format json lists them all)")
    return lines


def _archive_caption(archive: dict[str, Any]) -> str:
    lines = []
    latest = archive.get("latest_run")
    if latest:
        changes = latest["changes"]
        lines.append(f"The latest run (job {latest['job']}, {latest['status']}) changed nothing: "
                     f"{changes['unchanged']:,} unchanged, {changes['missing']:,} missing. The whole archive:")
    when = f"; last run: job {archive['latest_job']} on {archive['last_run'][:16].replace('T', ' ')} UTC" \
        if archive.get("last_run") else ""
    lines.append(f"{plural(archive['images']['done'], 'image')} (each file's latest annotation by "
                 f"{_model_name(archive)}), {plural(archive['faces'], 'face')}{when}")
    lines += _models_lines(archive)
    lines += _failed_lines(archive)
    lines += _unlisted_lines(archive)  # after a quiet run: what listing its folders met
    lines += _skipped_lines(archive)
    return "\n".join(line.rstrip() for line in lines)


# Emotion columns of --by tables, short enough for 80 columns; the legend is under the table.
SHORT_EMOTIONS = {"angry": "ang", "disgust": "dis", "fear": "fea", "happy": "hap", "neutral": "neu", "sad": "sad",
                  "surprise": "sur"}


def _report_table(summary: dict[str, Any]) -> Table:
    if summary.get("archive"):
        title = f"Whole archive, {_model_name(summary)}"
    elif "since" in summary:
        title = f"Since {summary['since']}, {_model_name(summary)}"
    else:
        title = f"Job {summary['job']} ({summary['status']})"
    table = Table(title=title, min_width=len(title) + 4)  # the title on one line
    if summary.get("rows") is not None:
        by = summary["by"]
        # A light frame, one space between columns: the folder column keeps about 35 of 80 columns.
        table = Table(title=title, box=box.SIMPLE_HEAD, padding=0, pad_edge=False,
                      caption=" ".join(f"{s}={n}" for n, s in SHORT_EMOTIONS.items()))
        table.add_column(by, ratio=1)
        for column in ("images", "faces", *summary["emotions"]):
            table.add_column(SHORT_EMOTIONS.get(column, column), justify="right", no_wrap=True)
        for row in summary["rows"]:
            first = PathText(row[by]) if by == "folder" else Text(str(row[by]))
            table.add_row(first, *(Text(f"{row[column]:,}") for column in ("images", "faces", *summary["emotions"])))
        return table
    table.add_column("emotion")
    table.add_column("faces", justify="right")
    table.add_column("share", justify="right")
    for name, count in summary["emotions"].items():
        table.add_row(name, f"{count:,}", f"{count / summary['faces']:.1%}" if summary["faces"] else "-")
    return table
