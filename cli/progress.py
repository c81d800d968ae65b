"""Progress bars: a local run's, and following a queued job until it ends."""

from __future__ import annotations

import os
import time

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from cli.output import console


def progress_bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
        console=console, transient=True,
    )


class BarProgress:
    """A library run's progress on a rich progress bar."""

    def __init__(self, bar: Progress):
        self.bar = bar
        self.task = None

    def start(self, total: int, description: str) -> None:
        self.task = self.bar.add_task(description, total=total)

    def advance(self, images: int, description: str) -> None:
        self.bar.update(self.task, advance=images, description=description)


def _no_worker_seconds() -> float:
    return float(os.environ.get("FER_NO_WORKER_SECONDS", "30"))


def _workers_answering() -> bool | None:
    """Whether any Celery worker answers a ping on the broker (None: the broker cannot be reached)."""
    from workers.celery_app import app, broker_url

    app.conf.broker_url = broker_url()
    try:
        return bool(app.control.inspect(timeout=1.0).ping())
    except Exception:  # noqa: BLE001 - kombu raises several kinds for an unreachable broker
        return None


def wait_for(engine, job_id: int, poll: float = 1.0, timeout: float | None = None) -> bool:
    """Follow the job with a progress bar until it ends; True when it ended, False at ``timeout`` seconds.

    When nothing has moved for FER_NO_WORKER_SECONDS (30) and no worker answers a ping, say so once.
    """
    from db.reads import job_summary
    from kombu.utils.url import maybe_sanitize_url

    from workers.celery_app import broker_url

    started = last_change = time.monotonic()
    warned = False
    with progress_bar() as bar:
        summary = job_summary(engine, job_id)
        task = bar.add_task(f"job {job_id}", total=summary["images"]["total"])
        completed = -1
        while True:
            summary = job_summary(engine, job_id)
            images = summary["images"]
            if images["done"] + images["failed"] != completed:
                completed, last_change = images["done"] + images["failed"], time.monotonic()
            bar.update(task, completed=completed)
            if summary["status"] in ("finished", "failed", "cancelled"):
                return True
            now = time.monotonic()
            if not warned and now - last_change >= _no_worker_seconds():
                answering = _workers_answering()
                if not answering:
                    warned = True
                    where = maybe_sanitize_url(broker_url())
                    bar.console.print(
                        f"No worker seems to be consuming the queue at {where}: no progress for "
                        f"{now - last_change:.0f} s and no worker answered a ping"
                        + (" (the broker cannot be reached)" if answering is None else "")
                        + ". Start one with `fer worker`, or finish the job here with "
                        f"`fer retry {job_id} --local`.",
                        markup=False,
                    )
            if timeout is not None and now - started >= timeout:
                return False
            time.sleep(poll)
