"""Two models over the same archive: how often their labels agree, and where they differ most.

Images count when both models annotated the same path (each model's latest done annotation of a
file still present). Faces are matched by their box: the detector does not depend on the model,
so a face found in both annotations has the same box in both. Faces of one model with no box in
the other (a different detector or minimum size) are counted as unmatched, not compared.
"""

from __future__ import annotations

import heapq
from typing import Any

from sqlalchemy import Engine, and_, func, select
from sqlalchemy.orm import aliased

from db.models import PROBABILITY_COLUMNS, Face, Image, Model
from fer_model.classes import CLASSES


class CompareError(Exception):
    """A model that has no results in this database; the message names the ones that do."""


def _model_row(connection, name: str):
    """The model version called ``name`` (``name@version`` for an older one): the latest by default."""
    base, _, version = name.partition("@")
    query = select(Model.id, Model.name, Model.version).where(Model.name == base)
    if version:
        query = query.where(Model.version.startswith(version))
    row = connection.execute(query.order_by(Model.id.desc()).limit(1)).first()
    if row is None:
        known = sorted({f"{r.name}" for r in connection.execute(select(Model.name))})
        raise CompareError(f"no results of model {name!r} in this database (it has: {', '.join(known) or 'none'})")
    return row


def _latest_images(model_id: int):
    """Each present file's latest done annotation by the model."""
    return (
        select(func.max(Image.id).label("id"), Image.path.label("path"))
        .where(Image.model_id == model_id, Image.status == "done", Image.missing_at.is_(None))
        .group_by(Image.path)
        .subquery()
    )


def compare_models(engine: Engine, model_a: str, model_b: str, top: int = 10) -> dict[str, Any]:
    """Agreement, the confusion between the two models' labels, and the ``top`` faces whose probabilities moved most."""
    with engine.connect() as connection:
        a, b = _model_row(connection, model_a), _model_row(connection, model_b)
        if a.id == b.id:
            raise CompareError(f"{model_a} and {model_b} are the same model version: compare two different ones")
        images_a, images_b = _latest_images(a.id), _latest_images(b.id)
        common = select(images_a.c.id.label("a_id"), images_b.c.id.label("b_id"), images_a.c.path) \
            .join(images_b, images_b.c.path == images_a.c.path).subquery()
        images = connection.execute(select(func.count()).select_from(common)).scalar_one()
        faces_a = connection.execute(select(func.count()).select_from(common).join(
            Face, and_(Face.image_id == common.c.a_id, Face.model_id == a.id))).scalar_one()
        faces_b = connection.execute(select(func.count()).select_from(common).join(
            Face, and_(Face.image_id == common.c.b_id, Face.model_id == b.id))).scalar_one()
        face_a, face_b = aliased(Face), aliased(Face)
        pairs = (
            select(common.c.path, face_a.face_index, face_a.x, face_a.y, face_a.w, face_a.h,
                   face_a.label, face_b.label,
                   *[getattr(face_a, column) for column in PROBABILITY_COLUMNS],
                   *[getattr(face_b, column) for column in PROBABILITY_COLUMNS])
            .join(face_a, and_(face_a.image_id == common.c.a_id, face_a.model_id == a.id))
            .join(face_b, and_(face_b.image_id == common.c.b_id, face_b.model_id == b.id, face_b.x == face_a.x,
                               face_b.y == face_a.y, face_b.w == face_a.w, face_b.h == face_a.h))
        )
        confusion = {label: {other: 0 for other in CLASSES} for label in CLASSES}
        changed: list[tuple[float, int, dict[str, Any]]] = []
        matched = agree = 0
        classes = len(CLASSES)
        for number, row in enumerate(connection.execution_options(stream_results=True, yield_per=2000).execute(pairs)):
            path, index, x, y, w, h, label_a, label_b = row[:8]
            p_a, p_b = row[8 : 8 + classes], row[8 + classes :]
            matched += 1
            confusion[label_a][label_b] += 1
            if label_a == label_b:
                agree += 1
                continue
            # Total variation distance: how much probability moved between the two models' answers.
            moved = 0.5 * sum(abs(pa - pb) for pa, pb in zip(p_a, p_b))
            face = {"path": path, "face_index": index, "box": [x, y, w, h], "label_a": label_a, "label_b": label_b,
                    "confidence_a": max(p_a), "confidence_b": max(p_b), "moved": round(moved, 4)}
            entry = (moved, -number, face)
            if len(changed) < top:
                heapq.heappush(changed, entry)
            elif top:
                heapq.heappushpop(changed, entry)
    return {
        "compare": True,
        "model_a": {"name": a.name, "version": a.version},
        "model_b": {"name": b.name, "version": b.version},
        "images": int(images),
        "faces_a": int(faces_a),
        "faces_b": int(faces_b),
        "faces_matched": matched,
        "faces_agree": agree,
        "agreement": round(agree / matched, 4) if matched else None,
        "confusion": confusion,
        "changed_most": [face for _, _, face in sorted(changed, reverse=True)],
    }
