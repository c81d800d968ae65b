"""`fer report --compare A B --format html`: one self-contained page comparing two models' labels."""

from __future__ import annotations

from typing import Any

from fer_model.classes import CLASSES
from reports.html import _environment
from reports.paths import display_path, file_uri
from reports.thumbnails import Box, face_thumbnail


def render_comparison_html(comparison: dict[str, Any]) -> str:
    matched = comparison["faces_matched"]
    largest = max((count for row in comparison["confusion"].values() for count in row.values()), default=0)
    changed = []
    for face in comparison["changed_most"]:
        box = Box(*face["box"])
        changed.append({
            **face,
            "name": display_path(face["path"], []),
            "href": file_uri(face["path"]),
            "thumbnail": face_thumbnail(face["path"], box),
        })
    context = {
        "c": comparison,
        "classes": CLASSES,
        "matched": matched,
        "largest": largest or 1,
        "changed": changed,
    }
    return _environment().get_template("compare.html.j2").render(context)
