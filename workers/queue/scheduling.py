"""Starting the scheduled incremental runs that are due: called by Celery beat every minute or so."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import replace
from typing import Any

from sqlalchemy import Engine

from db.models import utcnow
from db.schedules import claim_run, due_today, list_schedules, record_run, release_claim
from workers.jobs.errors import NotStarted, PipelineError
from workers.jobs.options import JobOptions
from workers.jobs.starting import find_files, start_job

log = logging.getLogger(__name__)


def start_due_runs(engine: Engine, enqueue, now: dt.datetime | None = None) -> list[dict[str, Any]]:
    """Start every schedule whose time has come today; ``enqueue(job_id, image_ids, options)`` queues the work
    (``options`` a JobOptions).

    Returns what happened to each due schedule (started, skipped and why).
    """
    now = now or utcnow()
    outcomes = []
    for schedule in list_schedules(engine):
        local_date = due_today(schedule, now)
        if local_date is None or not claim_run(engine, schedule.id, local_date):
            continue
        outcome: dict[str, Any] = {"schedule": schedule.id, "root": schedule.root, "date": local_date}
        try:
            options = replace(JobOptions.from_dict(schedule.options), incremental=True, allowed_roots=(schedule.root,))
            found = find_files([schedule.root], options)
            job = start_job(engine, found, options, schedule_id=schedule.id)
        except NotStarted as error:
            outcome.update(skipped=f"job {error.job_id} over {', '.join(error.roots)} is still running")
        except PipelineError as error:
            outcome.update(skipped=str(error))
        except Exception as error:  # noqa: BLE001 - one broken schedule must not stop the others
            release_claim(engine, schedule.id, local_date, schedule.last_run_on)
            log.exception("schedule %s could not start; the next check tries again", schedule.id)
            outcome.update(error=f"{type(error).__name__}: {error}")
        else:
            record_run(engine, schedule.id, job.job_id)
            if job.image_ids:
                enqueue(job.job_id, job.image_ids, options)
            outcome.update(job=job.job_id, images=len(job.image_ids))
        log.info("schedule %s: %s", schedule.id, outcome)
        outcomes.append(outcome)
    return outcomes
