"""Starting a job, the same way for `fer annotate`, `fer submit` and the scheduler: find the files, check the
options, record the job (refused while an unfinished run covers the same files).

Errors are `PipelineError`s whose messages are written for people.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from sqlalchemy import Engine

from db.incremental import STALE_RUN_HOURS
from db.overlap import RunStillGoing
from db.writes import Listing
from fer_model.registry import ModelNotFound, resolve_model
from fer_model.served_graph import INT8
from workers.jobs.discovery import DiscoveryError, find_images
from workers.jobs.errors import NotStarted, PipelineError
from workers.jobs.options import JobOptions
from workers.jobs.submission import NoImages, PreparedJob, prepare_job
from workers.vision.detector_names import detector_problem


@dataclass
class Found:
    """The image files under the folders given, the entries skipped as not image files (path, reason), and the
    folders that could not be listed (path, reason)."""

    paths: tuple[str, ...]
    files: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    ext: str = ",".join(JobOptions.extensions)
    unlisted: list[tuple[str, str]] = field(default_factory=list)


def find_files(paths: Sequence[str], options: JobOptions) -> Found:
    """The image files under ``paths`` (``options``: recursive, extensions, follow_symlinks); may be empty (an
    incremental run over an emptied folder records what went missing)."""
    skipped: list[tuple[str, str]] = []
    unlisted: list[tuple[str, str]] = []
    try:
        files = list(find_images(paths, recursive=options.recursive, extensions=options.extensions,
                                 follow_symlinks=options.follow_symlinks, skipped=skipped, unlisted=unlisted))
    except DiscoveryError as error:
        raise PipelineError(str(error)) from error
    return Found(tuple(paths), files, skipped, ",".join(options.extensions), unlisted)


def check_model(model: str) -> None:
    try:
        ref = resolve_model(model)
    except ModelNotFound as error:
        raise PipelineError(str(error)) from error
    if ref.precision == INT8:
        from workers.serving.classifier import requested_backend  # the classifier module loads only here

        try:
            forced_keras = requested_backend() == "keras"
        except ValueError as error:
            raise PipelineError(str(error)) from None
        if forced_keras:
            raise PipelineError(f"model {ref.name} is served by ONNX Runtime only, and FER_CLASSIFIER_BACKEND=keras "
                                "asks for Keras")
        from fer_model.quantization import int8_session  # ONNX Runtime loads only for an int8 model

        try:
            int8_session(ref.path)  # a stale or damaged graph is refused before a job is recorded
        except ModelNotFound as error:
            raise PipelineError(str(error)) from error


def check_detector(detector: str) -> None:
    problem = detector_problem(detector)
    if problem is not None:
        raise PipelineError(problem)


def check_options(options: JobOptions) -> None:
    """Refuse, before any job is recorded, an unknown or uninstalled model or detector."""
    check_model(options.model)
    check_detector(options.detector)


def allowed_roots(paths: Sequence[str]) -> list[str]:
    """The folders a job may read: each folder given, and the folder of each file given."""
    roots = []
    for path in paths:
        absolute = os.path.abspath(path)
        roots.append(absolute if os.path.isdir(absolute) else os.path.dirname(absolute))
    return roots


def files_and_options(paths: Sequence[str], options: JobOptions) -> tuple[Found, JobOptions]:
    """The files to annotate under ``paths`` and the job's options (the folders given as its allowed roots),
    checked: errors stop here, before any job is recorded."""
    if options.retry_failed and not options.incremental:
        raise PipelineError("--retry-failed is for incremental runs; --reannotate already does everything again")
    found = find_files(paths, options)
    options = replace(options, allowed_roots=tuple(allowed_roots(paths)))
    check_options(options)
    return found, options


def start_job(engine: Engine, found: Found, options: JobOptions, schedule_id: int | None = None) -> PreparedJob:
    """Record the job (a full pass, or an incremental run of what changed), by a schedule when ``schedule_id``
    is given."""
    listing = Listing(len(found.skipped), found.unlisted)
    try:
        job = prepare_job(engine, [os.path.abspath(p) for p in found.paths], found.files, options,
                          schedule_id=schedule_id, listing=listing)
    except NoImages:
        unlisted = "".join(f"; {path}: {reason}" for path, reason in found.unlisted)
        raise PipelineError(f"no images found in {', '.join(found.paths)} (extensions: {found.ext}){unlisted}") from None
    except RunStillGoing as error:
        raise NotStarted(
            f"not started: job {error.job_id} over {', '.join(error.roots)} is still running, and this run's folders "
            f"overlap it (a job counts as running until {STALE_RUN_HOURS:g} h without progress). If its process died, "
            f"end it with `fer cancel {error.job_id}` or finish it with `fer retry {error.job_id} --local`.",
            error.job_id, error.roots,
        ) from None
    return job
