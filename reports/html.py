"""Render a report (a job's, the runs since a date, the whole archive) as one self-contained HTML file: charts
and thumbnails embedded, no server."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from sqlalchemy import Engine

from fer_model.classes import CLASSES
from reports import charts
from db.scopes import Scope
from reports.data import EmotionStrip, FaceRef, ReportData, collect_report, collect_scope_report
from reports.paths import display_path, file_uri
from reports.thumbnails import face_thumbnail

TEMPLATES = Path(__file__).parent / "templates"
MAX_FOLDERS_CHARTED = 20


@dataclass(frozen=True)
class ThumbnailView:
    data_uri: str | None
    problem: str | None
    href: str | None
    path: str
    name: str
    file_name: str
    label: str
    confidence: float


def _environment() -> Environment:
    # autoescape on for every template: paths, folder names and error messages are user data.
    environment = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True, undefined=StrictUndefined,
                              trim_blocks=True, lstrip_blocks=True)
    environment.filters["when"] = _when
    return environment


def _when(iso_timestamp: str | None) -> str | None:
    """'2026-11-24 16:27:28 UTC' from the summary's ISO timestamps (stored in UTC; SQLite drops the zone)."""
    if not iso_timestamp:
        return None
    moment = dt.datetime.fromisoformat(iso_timestamp)
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def build_html_report(engine: Engine, job_id: int) -> str | None:
    """The HTML report of ``job_id``, or None when there is no such job."""
    data = collect_report(engine, job_id)
    return None if data is None else render_html_report(data)


def build_scope_html_report(engine: Engine, summary: dict[str, Any], scope: Scope) -> str:
    """The HTML report of the images of ``scope`` under ``summary`` (db.reads: since_summary, archive_summary)."""
    return render_html_report(collect_scope_report(engine, summary, scope))


def heading(summary: dict[str, Any]) -> str:
    """What the report is about, for its title: 'job 3', 'runs since ...', 'the whole archive'."""
    model = summary.get("model") or {}
    seen_by = f" (model {' '.join(str(part) for part in (model.get('name'), model.get('version')) if part)})" \
        if model.get("name") else ""
    if summary.get("archive"):
        return f"the whole archive{seen_by}"
    if "since" in summary:
        return f"runs since {_when(summary['since'])}{seen_by}"
    return f"job {summary['job']}"


def render_html_report(data: ReportData) -> str:
    roots = list(data.summary["roots"] or [])
    folders = sorted(data.folders, key=lambda row: (-row["faces"], row["folder"]))
    charted = [row for row in folders if row["faces"]][:MAX_FOLDERS_CHARTED]
    context: dict[str, Any] = {
        "data": data,
        "heading": heading(data.summary),
        "summary": data.summary,
        "classes": CLASSES,
        "colors": charts.EMOTION_COLORS,
        "roots": roots,
        "folders": [{**row, "name": display_path(row["folder"], roots)} for row in folders],
        "folders_charted": len(charted),
        "charts": {
            "emotions": charts.emotion_distribution(data.summary["emotions"]),
            "folders": charts.emotions_by_folder([display_path(row["folder"], roots) for row in charted], charted),
            "time": charts.emotions_over_time([row["period"] for row in data.dates.rows], data.dates.rows, data.dates.unit),
            "confidence": charts.confidence_histogram(data.confidences),
        },
        "strips": [_strip_view(strip, roots) for strip in data.strips],
        "failures": [{"path": display_path(f.path, roots), "href": file_uri(f.path), "full_path": f.path, "error": f.error}
                     for f in data.failures],
    }
    return _environment().get_template("report.html.j2").render(context)


def _strip_view(strip: EmotionStrip, roots: list[str]) -> dict[str, Any]:
    return {
        "label": strip.label,
        "faces": strip.faces,
        "most": [_thumbnail_view(face, roots) for face in strip.most_confident],
        "least": [_thumbnail_view(face, roots) for face in strip.least_confident],
    }


def _thumbnail_view(face: FaceRef, roots: list[str]) -> ThumbnailView:
    thumbnail = face_thumbnail(face.path, face.box)
    return ThumbnailView(
        data_uri=thumbnail.data_uri,
        problem=thumbnail.problem,
        href=file_uri(face.path),
        path=face.path,
        name=display_path(face.path, roots),
        file_name=face.path.rsplit("/", 1)[-1],
        label=face.label,
        confidence=face.confidence,
    )
