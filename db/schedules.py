"""Daily schedules: which folders to annotate incrementally, at what local time."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Engine, delete, or_, select, update

from db.models import Schedule, as_utc, utcnow


class ScheduleError(Exception):
    """A schedule that cannot be stored: bad time or time zone."""


@dataclass(frozen=True)
class ScheduleRow:
    id: int
    root: str
    at: str
    timezone: str
    options: dict[str, Any]
    created_at: dt.datetime
    last_run_on: str | None
    last_job_id: int | None


def parse_time_of_day(text: str) -> str:
    try:
        return dt.datetime.strptime(text.strip(), "%H:%M").strftime("%H:%M")
    except ValueError:
        raise ScheduleError(f"--at must be a time of day as HH:MM (24-hour), not {text!r}") from None


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(f"unknown time zone {name!r} (use an IANA name such as Europe/Paris or UTC)") from None


def add_schedule(engine: Engine, root: str, at: str, timezone: str, options: dict[str, Any],
                 created_at: dt.datetime | None = None) -> int:
    at = parse_time_of_day(at)
    zone(timezone)
    with engine.begin() as connection:
        result = connection.execute(
            Schedule.__table__.insert().values(
                root=root, at=at, timezone=timezone, options=options, created_at=created_at or utcnow()
            )
        )
        return int(result.inserted_primary_key[0])


def list_schedules(engine: Engine) -> list[ScheduleRow]:
    with engine.connect() as connection:
        rows = connection.execute(select(Schedule.__table__).order_by(Schedule.id)).mappings().all()
    return [ScheduleRow(**row) for row in rows]


def remove_schedule(engine: Engine, schedule_id: int) -> bool:
    with engine.begin() as connection:
        return connection.execute(delete(Schedule).where(Schedule.id == schedule_id)).rowcount > 0


def due_today(schedule: ScheduleRow, now: dt.datetime) -> str | None:
    """The local date whose run is due now (and has not started), or None.

    A run is due from its time of day until midnight, so one missed while nothing was
    running still happens that day; a schedule added after today's time first runs tomorrow.
    """
    tz = zone(schedule.timezone)
    local_now = now.astimezone(tz)
    hour, minute = map(int, schedule.at.split(":"))
    slot = local_now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    today = local_now.date().isoformat()
    if local_now < slot or slot < as_utc(schedule.created_at).astimezone(tz).replace(second=0, microsecond=0):
        return None
    if schedule.last_run_on is not None and schedule.last_run_on >= today:
        return None
    return today


def next_run(schedule: ScheduleRow, now: dt.datetime) -> dt.datetime:
    """When the schedule's next run starts, in its time zone: today's time when that run is due (missed, or
    beat's next check starts it), else the next time of day that has not run yet and comes after its creation."""
    tz = zone(schedule.timezone)
    local_now = now.astimezone(tz)
    hour, minute = map(int, schedule.at.split(":"))
    today = local_now.date()
    slot = dt.datetime.combine(today, dt.time(hour, minute), tzinfo=tz)
    if due_today(schedule, now) is not None:
        return slot
    created = as_utc(schedule.created_at).astimezone(tz).replace(second=0, microsecond=0)
    started_today = schedule.last_run_on is not None and schedule.last_run_on >= today.isoformat()
    if local_now < slot and slot >= created and not started_today:
        return slot
    return dt.datetime.combine(today + dt.timedelta(days=1), dt.time(hour, minute), tzinfo=tz)


def claim_run(engine: Engine, schedule_id: int, local_date: str) -> bool:
    """Mark today's run as started; False when another beat or worker claimed it first."""
    with engine.begin() as connection:
        result = connection.execute(
            update(Schedule)
            .where(Schedule.id == schedule_id, or_(Schedule.last_run_on.is_(None), Schedule.last_run_on < local_date))
            .values(last_run_on=local_date)
        )
        return result.rowcount == 1


def record_run(engine: Engine, schedule_id: int, job_id: int) -> None:
    with engine.begin() as connection:
        connection.execute(update(Schedule).where(Schedule.id == schedule_id).values(last_job_id=job_id))


def release_claim(engine: Engine, schedule_id: int, local_date: str, previous: str | None) -> None:
    """Undo ``claim_run`` after a failed start, so the next check tries again."""
    with engine.begin() as connection:
        connection.execute(
            update(Schedule).where(Schedule.id == schedule_id, Schedule.last_run_on == local_date).values(last_run_on=previous)
        )


def local_zone_name() -> str:
    """This machine's IANA time zone: $TZ when it names one, else /etc/timezone, else /etc/localtime's target, else UTC."""
    candidates = [os.environ.get("TZ", "")]
    timezone_file = Path("/etc/timezone")
    if timezone_file.is_file():
        candidates.append(timezone_file.read_text().strip())
    localtime = Path("/etc/localtime")
    if localtime.is_symlink() and "zoneinfo/" in str(localtime.resolve()):
        candidates.append(str(localtime.resolve()).split("zoneinfo/", 1)[1])
    for name in candidates:
        if not name or name.startswith((":", "/")):
            continue  # TZ=:/etc/localtime and POSIX rules are not names
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            continue
        return name
    return "UTC"
