"""Turning a list of files into a job: a full pass, or an incremental run that skips what is done.

Shared by `fer annotate`, `fer submit` and the scheduler, so all three skip, link and
mark missing files the same way.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace

from sqlalchemy import Engine

from db.incremental import FileState, RunPlan, model_id_for, plan_run
from db.overlap import RunStillGoing, overlapping_run
from db.reads import image_ids
from db.writes import Listing, create_planned_job, finish_job_if_complete
from workers.jobs.options import JobOptions
from workers.serving.classifier import model_identity


class NoImages(Exception):
    """Nothing to record: no image files, and (incremental) none known there that went missing."""


@dataclass
class PreparedJob:
    job_id: int
    image_ids: list[int]  # the images to process, pending
    plan: RunPlan | None  # None for a full pass


def file_states(paths: Sequence[str]) -> list[FileState]:
    states = []
    for path in paths:
        try:
            stat = os.stat(path)
        except OSError:
            states.append(FileState(path, -1, -1.0))  # gone since it was listed: annotating it records why
            continue
        states.append(FileState(path, stat.st_size, stat.st_mtime))
    return states


def prepare_job(
    engine: Engine,
    roots: Sequence[str],
    files: Sequence[str],
    options: JobOptions,
    schedule_id: int | None = None,
    listing: Listing | None = None,
) -> PreparedJob:
    """Record the job. With ``options.incremental``, only new and changed files become work.

    Raises RunStillGoing when an unfinished run over overlapping roots is still going (checked before
    planning, and again as the job is recorded), and NoImages when there is nothing to record (an
    emptied folder still records its missing files).
    """
    with engine.connect() as connection:
        running = overlapping_run(connection, roots)
    if running is not None:
        raise RunStillGoing(*running)
    if not options.incremental:
        if not files:
            raise NoImages
        plan = RunPlan(to_annotate=[(path, None) for path in files])
    else:
        identity = model_identity(options.model)
        options = replace(options, extra={**options.extra, "model_name": identity.name,
                                          "model_version": identity.version})
        plan = plan_run(engine, roots, file_states(files), model_id_for(engine, identity.name, identity.version),
                        retry_failed=options.retry_failed)
        if not files and not plan.missing_ids:
            raise NoImages
    job_id = create_planned_job(engine, roots, options.to_dict(), plan, schedule_id, listing)
    ids = image_ids(engine, job_id)
    if not ids:
        finish_job_if_complete(engine, job_id)
    return PreparedJob(job_id, ids, plan if options.incremental else None)
