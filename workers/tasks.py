"""The one unit of work, shared by Celery workers and `fer annotate`'s local processes."""

from __future__ import annotations

import os
from functools import cache
from typing import Any

from sqlalchemy import Engine

from db.results import ensure_model, mark_running, pending_paths, record_chunk
from db.session import make_engine
from workers.annotate import MIN_FACE_SIZE, StageSeconds, annotate_images
from workers.classifier import get_classifier
from workers.detection import DEFAULT_DETECTOR, get_detector


def allowed_roots(options: dict[str, Any]) -> list[list[str]]:
    """Root lists a path must satisfy: the job's own roots, and the worker's FER_ALLOWED_ROOTS when set."""
    rules = [list(options.get("allowed_roots", []))]
    configured = [root for root in os.environ.get("FER_ALLOWED_ROOTS", "").split(os.pathsep) if root]
    if configured:
        rules.append(configured)
    return rules


@cache
def _engine(database_url: str) -> Engine:
    return make_engine(database_url)


def process_chunk(database_url: str, job_id: int, image_ids: list[int], options: dict[str, Any]) -> dict[str, Any]:
    """Annotate the still-pending images of a chunk and write them in one transaction.

    Idempotent: images already done are skipped, and rewriting a chunk replaces its faces.
    Returns counts and the seconds spent in each stage (JSON-ready).
    """
    engine = _engine(database_url)
    items = pending_paths(engine, job_id, image_ids)
    if not items:
        return {"job": job_id, "images": 0, "faces": 0, "seconds": StageSeconds().as_dict()}
    classifier = get_classifier(options.get("model", "default"))
    detector = get_detector(options.get("detector", DEFAULT_DETECTOR))
    model_id = ensure_model(engine, classifier.identity)
    mark_running(engine, job_id)
    seconds = StageSeconds()
    results = annotate_images(
        items, detector, classifier, allowed_roots(options), seconds, int(options.get("min_face", MIN_FACE_SIZE))
    )
    with seconds.timing("write"):
        record_chunk(engine, job_id, model_id, results)
    return {
        "job": job_id,
        "images": len(results),
        "faces": sum(len(r.faces) for r in results),
        "seconds": seconds.as_dict(),
    }
