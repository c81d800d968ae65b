"""Turning a list of files into a job: a full pass, or an incremental run that skips what is done.

Shared by `fer annotate`, `fer submit` and the scheduler, so all three skip, link and
mark missing files the same way.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from db.incremental import FileState, RunPlan, model_id_for, plan_run, running_job_over
from db.reads import image_ids
from db.writes import create_job, create_planned_job, finish_job_if_complete
from workers.classifier import model_identity
from workers.options import JobOptions


class NoImages(Exception):
    """Nothing to record: no image files, and (incremental) none known there that went missing."""


class RunStillGoing(Exception):
    """An earlier incremental run over the same roots has not finished."""

    def __init__(self, job_id: int):
        super().__init__(f"job {job_id} over the same folders is still running")
        self.job_id = job_id


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
    options: dict[str, Any],
    schedule_id: int | None = None,
) -> PreparedJob:
    """Record the job. With ``options['incremental']``, only new and changed files become work.

    Raises RunStillGoing when an incremental run over the same roots is still going, and
    NoImages when there is nothing to record (an emptied folder still records its missing files).
    """
    if not JobOptions.from_dict(options).incremental:
        if not files:
            raise NoImages
        job_id = create_job(engine, roots, options, files)
        return PreparedJob(job_id, image_ids(engine, job_id), None)
    running = running_job_over(engine, roots)
    if running is not None:
        raise RunStillGoing(running)
    identity = model_identity(JobOptions.from_dict(options).model)
    options = {**options, "model_name": identity.name, "model_version": identity.version}
    plan = plan_run(engine, roots, file_states(files), model_id_for(engine, identity.name, identity.version))
    if not files and not plan.missing_ids:
        raise NoImages
    job_id = create_planned_job(engine, roots, options, plan, schedule_id)
    ids = image_ids(engine, job_id)
    if not ids:
        finish_job_if_complete(engine, job_id)
    return PreparedJob(job_id, ids, plan)
