"""The chunk work shared by Celery workers and `fer annotate`'s local processes: detect, classify, write."""

from __future__ import annotations

import os
import time
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

import cv2
from sqlalchemy import Connection, Engine

from db.incremental import model_id_for
from db.reads import annotated_content, database_identity, pending_paths
from db.records import FaceResult, ImageResult
from db.session import engine_for
from db.writes import ensure_model, mark_job, mark_running, record_chunk
from fer_model.classes import CLASSES
from fer_model.files import file_sha256
from fer_model.registry import ModelNotFound
from workers.chunks.annotate import DetectedImages, PathPolicy, classify_detected, detect_images
from workers.chunks.stages import StageSeconds
from workers.jobs.options import JobOptions
from workers.serving.classifier import get_classifier, model_identity
from workers.vision.detection import UnknownDetector, get_detector


class WrongDatabase(Exception):
    """The task was queued for another database than the one this worker writes to."""


def path_policy(options: JobOptions) -> PathPolicy:
    """The job's roots and link option, and the worker's FER_ALLOWED_ROOTS when set."""
    configured = [root for root in os.environ.get("FER_ALLOWED_ROOTS", "").split(os.pathsep) if root]
    return PathPolicy(options.allowed_roots, tuple(configured), options.follow_symlinks)


def failure_reason(error: BaseException) -> str:
    """Why a run stopped, in one line: the message of errors written for people, else the error's type and message."""
    if isinstance(error, BrokenProcessPool):
        return "a worker process died (killed, or out of memory)"
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    if isinstance(error, (UnknownDetector, ModelNotFound)) and text:
        return text
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def check_database(engine: Engine, expected: str | None) -> None:
    """Refuse a task queued for another database (a crossed deployment); tasks without an identity pass."""
    if expected is None:
        return
    actual = database_identity(engine)
    if actual != expected:
        raise WrongDatabase(
            f"task for database {expected} refused: this worker writes to {engine.url.render_as_string(hide_password=True)} "
            f"(identity {actual}); point the worker's FER_DATABASE_URL (or --db) at the submitter's database"
        )


def fail_job(database_url: str, job_id: int, error: Exception) -> None:
    """A chunk that cannot run (a detector missing on this worker, a damaged model) ends its job as failed, with why."""
    mark_job(engine_for(database_url), job_id, "failed", failure_reason(error))


def init_process() -> None:
    """Set up a worker process: fresh connection pools (a forked process must not use its parent's), one OpenCV thread."""
    engine_for.cache_clear()
    one_opencv_thread()


def one_opencv_thread() -> None:
    """Workers scale by processes (one per core); OpenCV's own threads would make them fight over cores."""
    cv2.setNumThreads(int(os.environ.get("FER_OPENCV_THREADS", "1")))


def process_chunk(database_url: str, job_id: int, image_ids: list[int], options: JobOptions) -> dict[str, Any]:
    """Annotate the still-pending images of a chunk and write them in one transaction.

    Idempotent: images already done are skipped, and rewriting a chunk replaces its faces.
    In incremental jobs, files whose content this model has annotated before (moved,
    renamed, duplicated) get copies of those results instead of being computed again.
    Returns counts and the seconds spent in each stage (JSON-ready).
    """
    chunk = detect_chunk(database_url, job_id, image_ids, options)
    if chunk is None:
        return {"job": job_id, "images": 0, "faces": 0, "linked": 0, "seconds": StageSeconds().as_dict()}
    mark_running(engine_for(database_url), job_id)
    if len(chunk.detected.faces):  # a chunk of copies or of photos without faces needs no model
        classify_detected([chunk.detected], get_classifier(options.model), chunk.seconds)
    return write_chunk(database_url, job_id, chunk)


@dataclass
class DetectedChunk:
    """A chunk read and detected, waiting for classification and writing (picklable, no TensorFlow)."""

    model_id: int
    detected: DetectedImages
    seconds: StageSeconds


def detect_chunk(database_url: str, job_id: int, image_ids: list[int], job: JobOptions) -> DetectedChunk | None:
    """Everything of `process_chunk` before classification; None when none of the images is pending.

    It reads the database but writes nothing, imports no TensorFlow, and runs in detection
    processes that feed one classifier.
    """
    engine = engine_for(database_url)
    identity = model_identity(job.model)
    seconds = StageSeconds()
    rules = path_policy(job)
    copies: list[ImageResult] = []
    digests: dict[int, str] = {}
    with engine.connect() as connection:  # one connection for the chunk's lookups, released before detection
        items = pending_paths(connection, job_id, image_ids)
        if not items:
            return None
        model_id = model_id_for(connection, identity.name, identity.version)
        if model_id is None:
            model_id = ensure_model(engine, identity)
        if job.incremental:
            copies, items, digests = _link_known_content(connection, model_id, items, rules, seconds)
    detected = detect_images(items, get_detector(job.detector), rules, seconds, job.min_face, digests)
    # Copies come first; the owners of the detected faces shift by as many places.
    detected = DetectedImages(copies + detected.results, detected.faces,
                              [(len(copies) + result, face) for result, face in detected.owners])
    return DetectedChunk(model_id, detected, seconds)


def write_chunk(database_url: str, job_id: int, chunk: DetectedChunk) -> dict[str, Any]:
    """Write a classified chunk in one transaction; returns its counts and stage seconds."""
    results = chunk.detected.results
    with chunk.seconds.timing("write"):
        record_chunk(engine_for(database_url), job_id, chunk.model_id, results)
    return {
        "job": job_id,
        "images": len(results),
        "faces": sum(len(r.faces) for r in results),
        "linked": sum(r.linked_from is not None for r in results),
        "seconds": chunk.seconds.as_dict(),
    }


def _link_known_content(
    connection: Connection, model_id: int, items: list[tuple[int, str]], rules: PathPolicy, seconds: StageSeconds
) -> tuple[list[ImageResult], list[tuple[int, str]], dict[int, str]]:
    """Hash the chunk's files; copy the results of content annotated before. Returns (copies, the rest, hashes)."""
    digests: dict[int, str] = {}
    with seconds.timing("hash"):
        for image_id, path in items:
            if rules.refusal(path) is None:
                try:
                    digests[image_id] = file_sha256(path)
                except OSError:
                    pass  # detect_images reports it
    known = annotated_content(connection, model_id, list(digests.values()), [image_id for image_id, _ in items])
    copies: list[ImageResult] = []
    rest: list[tuple[int, str]] = []
    for image_id, path in items:
        source = known.get(digests.get(image_id, ""))
        if source is None:
            rest.append((image_id, path))
            continue
        started = time.perf_counter()
        try:
            stat = os.stat(path)
        except OSError:
            rest.append((image_id, path))
            continue
        copies.append(ImageResult(
            image_id, "done", width=source["width"], height=source["height"], size=stat.st_size, mtime=stat.st_mtime,
            sha256=digests[image_id], taken_at=source["taken_at"], linked_from=source["image_id"],
            faces=[
                FaceResult(index=face["face_index"], x=face["x"], y=face["y"], w=face["w"], h=face["h"],
                           score=face["detector_score"], probabilities=[face[f"p_{name}"] for name in CLASSES],
                           label=face["label"], confidence=face["confidence"])
                for face in source["faces"]
            ],
            duration_ms=(time.perf_counter() - started) * 1000,
        ))
    return copies, rest, digests
