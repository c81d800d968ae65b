"""Which report a request means: a job's, the runs since a date, or the whole archive, and through which model
version; after a run that changed nothing (a quiet night) the latest job's report is the whole archive.

Each view is a summary (plain data, db.reads) and the scope its breakdowns and HTML page read (db.scopes).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Engine

from db.reads import archive_summary, job_summary, latest_job_id, since_summary
from db.scopes import ModelChoice, Scope, UnknownModel, archive_scope, choose_model, job_scope, runs_scope
from fer_model.registry import ModelNotFound
from workers.jobs.errors import NoSuchJob, PipelineError
from workers.serving.classifier import model_identity


def resolve_job(engine: Engine, job_id: int | None) -> int:
    """``job_id``, or the latest job when it is None."""
    resolved = job_id if job_id is not None else latest_job_id(engine)
    if resolved is None:
        raise NoSuchJob("no jobs yet: run `fer annotate PATH` or `fer submit PATH`")
    return resolved


def job_summary_of(engine: Engine, job_id: int) -> dict[str, Any]:
    summary = job_summary(engine, job_id)
    if summary is None:
        raise NoSuchJob(f"no job {job_id}")
    return summary


def default_identity() -> tuple[str, str] | None:
    """(name, version) the default model is recorded under, or None when it cannot be read."""
    try:
        identity = model_identity("default")
    except (ModelNotFound, OSError):
        return None
    return identity.name, identity.version


def model_choice(engine: Engine, wanted: str | None) -> ModelChoice:
    """The model version an --all or --since view shows: ``wanted``, else the default model (else the latest used)."""
    try:
        return choose_model(engine, wanted, default_identity())
    except UnknownModel as error:
        raise PipelineError(str(error)) from None


def job_model(engine: Engine, summary: dict[str, Any]) -> ModelChoice:
    """The model version a job ran with, as the whole-archive view after it shows."""
    model = summary.get("model") or {}
    identity = (model["name"], model["version"]) if model.get("name") and model.get("version") else None
    return choose_model(engine, None, identity or default_identity())


def quiet_night_view(engine: Engine, summary: dict[str, Any]) -> dict[str, Any]:
    """The whole archive as the job's model sees it, with what the job (which changed nothing) found."""
    archive = archive_summary(engine, job_model(engine, summary))
    archive["latest_run"] = {key: summary[key] for key in ("job", "status", "changes")}
    return archive


def quiet_run_view(engine: Engine, summary: dict[str, Any]) -> dict[str, Any]:
    """After a run that annotated nothing: the whole archive, as the latest job's report shows it, and what
    listing the run's folders met."""
    view = quiet_night_view(engine, summary)
    for key in ("unlisted_folders", "skipped_files", "files_skipped"):
        view[key] = summary.get(key)
    return view


def report_view(engine: Engine, job_id: int | None = None, since: dt.datetime | None = None,
                whole_archive: bool = False, model: str | None = None) -> tuple[dict[str, Any], Scope]:
    """The summary and scope of a report: of ``job_id``, of the runs started since ``since``, or of the whole
    archive (the last two as ``model`` sees them: NAME or NAME@VERSION, default the default model). With none
    of the three, the latest job's; when that run changed nothing, the whole archive as its model sees it."""
    if sum((job_id is not None, since is not None, whole_archive)) > 1:
        raise PipelineError("a report covers one job, the runs since a date, or the whole archive: give one of them")
    if model and since is None and not whole_archive:
        raise PipelineError("the model chooses the version a report of the runs since a date or of the whole "
                            "archive shows; a job's report shows the job's own model")
    if since is not None:
        choice = model_choice(engine, model)
        summary = since_summary(engine, since if since.tzinfo else since.astimezone(), choice)
        return summary, runs_scope(summary["jobs"], choice.id)
    if whole_archive:
        choice = model_choice(engine, model)
        return archive_summary(engine, choice), archive_scope(choice.id)
    resolved = resolve_job(engine, job_id)
    summary = job_summary_of(engine, resolved)
    if job_id is None and summary["images"]["total"] == 0:
        return quiet_night_view(engine, summary), archive_scope(job_model(engine, summary).id)
    return summary, job_scope(resolved)
