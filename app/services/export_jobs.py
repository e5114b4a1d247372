"""Export jobs: reports written in the background into the file store, and the schedules that start them.

A job is claimed in its own committed transaction (status RUNNING, attempts + 1, heartbeat now, the worker's
name); PostgreSQL's `FOR UPDATE SKIP LOCKED` lets any number of workers on any number of hosts claim side by
side without two taking one job, and SQLite's BEGIN IMMEDIATE serializes the claim. While it runs, the
worker writes a heartbeat (and the rows written so far) every `export_heartbeat_seconds`; a RUNNING job whose
heartbeat is older than `export_lease_seconds` belongs to a worker that died, and the next worker takes it
over from the start (up to `export_max_attempts`). Every write of a running job is conditional on its
attempt number, so a worker that lost its lease (it stalled, another took over) changes nothing and stops.

The owner's permission is checked when the job is started (the mutation), again when it runs, and the
reader's when the file is downloaded. A finished file is kept `export_retention_hours`, then deleted
(status EXPIRED). The owner (and a schedule's recipients who still may export the report) get an email
through the outbox with a signed link to the file, valid while the file is kept.
"""

from __future__ import annotations

import asyncio
import calendar
import json
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import anyio
from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.runtime.errors import AppError
from app.runtime.logs import log
from app.runtime.metrics import EXPORT_JOB_ROWS, EXPORT_JOB_SECONDS
from app.services.audit import audit
from app.services.links import link_key, sign
from app.services.mailer import queue_email
from app.services.reports import (
    COLUMNS,
    PROGRESS,
    SHEETS,
    TOO_MANY,
    ExportRequest,
    authorize,
    column_names,
    csv_ready,
    may_export,
    row_chunks,
    total_rows,
)
from app.services.sheets import MAX_SHEET_ROWS, CrlfLines, CsvBlocks, Sheet, TooManyRows, csv_header
from app.settings import Settings
from app.store.db import Database
from app.store.models import ExportJob, ExportSchedule, User, utcnow
from dataloaders.reach import load_reach_rows
from dataloaders.reports import copy_csv
from dataloaders.store import Store
from permissions.reach import Reach

QUEUED, RUNNING, DONE, FAILED, EXPIRED = "QUEUED", "RUNNING", "DONE", "FAILED", "EXPIRED"
STATUSES = (QUEUED, RUNNING, DONE, FAILED, EXPIRED)
WORKER_NAME = f"{socket.gethostname()}:{os.getpid()}"
Clock = Callable[[], datetime]

_wake = asyncio.Event()


def wake_worker() -> None:
    """A job was queued in this process: the worker looks now instead of after its poll interval."""
    _wake.set()


# --- the file store ---------------------------------------------------------------------------------------


class FileStore(Protocol):
    """Where finished files are kept. Files are written locally (XlsxWriter needs a path) under scratch(),
    then handed over with put(); an object store would upload there and stream back in chunks()."""

    def scratch(self) -> Path: ...

    async def put(self, key: str, source: Path) -> int: ...

    def chunks(self, key: str) -> AsyncIterator[bytes]: ...

    async def exists(self, key: str) -> bool: ...

    async def delete(self, key: str) -> None: ...


class DirectoryStore:
    """Files in a directory (GROUPGRAPH_EXPORT_DIR): one file per job; partial files under `.partial/`."""

    CHUNK = 256 * 1024

    def __init__(self, directory: str) -> None:
        self.root = Path(directory).resolve()

    def _path(self, key: str) -> Path:
        if "/" in key or key.startswith("."):
            raise ValueError(f"not a file key: {key!r}")
        return self.root / key

    def scratch(self) -> Path:
        path = self.root / ".partial"
        path.mkdir(parents=True, exist_ok=True)
        return path

    async def put(self, key: str, source: Path) -> int:
        target = self._path(key)
        os.replace(source, target)
        return target.stat().st_size

    async def chunks(self, key: str) -> AsyncIterator[bytes]:
        async with await anyio.open_file(self._path(key), "rb") as handle:
            while block := await handle.read(self.CHUNK):
                yield block

    async def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    async def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)


def file_store(settings: Settings) -> FileStore:
    return DirectoryStore(settings.export_dir)


# --- starting a job ------------------------------------------------------------------------------------------


def queue_job(session: AsyncSession, owner_id: int, request: ExportRequest, schedule_id: int | None = None) -> ExportJob:
    """Adds a QUEUED job inside the caller's transaction (the worker sees it once that commits)."""
    row = ExportJob(
        owner_id=owner_id, schedule_id=schedule_id, report=request.report, format=request.format,
        params=request.to_json(),
    )
    session.add(row)
    return row


async def reach_of(store: Store, user: User) -> Reach:
    """The user's Reach as of now (a job's owner, a schedule's recipient, a signed link's user)."""
    if user.status != "ACTIVE":
        return Reach.anonymous()
    return Reach.of_user(user, await load_reach_rows(store, user.id))  # type: ignore[arg-type]


# --- claiming ----------------------------------------------------------------------------------------------


@dataclass
class Claimed:
    id: int
    owner_id: int
    schedule_id: int | None
    params: str
    attempts: int
    created_at: datetime

    @property
    def request(self) -> ExportRequest:
        return ExportRequest.from_json(self.params)


def _claimable(settings: Settings, now: datetime) -> Any:
    stale = now - timedelta(seconds=settings.export_lease_seconds)
    return or_(ExportJob.status == QUEUED, and_(ExportJob.status == RUNNING, ExportJob.heartbeat_at < stale))


async def claim_job(database: Database, settings: Settings, now: datetime, worker: str = WORKER_NAME) -> Claimed | None:
    """Takes the oldest QUEUED job, or a RUNNING one whose worker died; None when there is none. A job that
    has used up its attempts is marked FAILED instead (and the next one looked at)."""
    while True:
        async with database.transaction() as session:
            due = select(ExportJob.id).where(_claimable(settings, now)).order_by(ExportJob.id).limit(1)
            if not database.is_sqlite:
                due = due.with_for_update(skip_locked=True)
            job_id = await session.scalar(due)
            if job_id is None:
                return None
            row = (
                await session.execute(
                    update(ExportJob)
                    .where(ExportJob.id == job_id, _claimable(settings, now))
                    .values(
                        status=RUNNING, attempts=ExportJob.attempts + 1, heartbeat_at=now, started_at=now,
                        worker=worker[:200], rows_written=0,
                    )
                    .returning(
                        ExportJob.id, ExportJob.owner_id, ExportJob.schedule_id, ExportJob.params, ExportJob.attempts,
                        ExportJob.created_at,
                    )
                    .execution_options(synchronize_session=False)
                )
            ).first()
            if row is None:
                continue
            claimed = Claimed(*row)
            if claimed.attempts <= settings.export_max_attempts:
                return claimed
            await session.execute(
                update(ExportJob).where(ExportJob.id == claimed.id).values(
                    status=FAILED, finished_at=now,
                    error=f"The export stopped {claimed.attempts - 1} times before it was done; giving up.",
                )
            )
        await _tell_owner_failed(database, settings, claimed.id)


# --- running -------------------------------------------------------------------------------------------------


class LostLease(Exception):
    """Another worker took the job over (this one stalled past the lease): stop, change nothing."""


class Progress:
    """Rows written so far, and a heartbeat task that records them (and the lease) while the job runs."""

    def __init__(
        self, database: Database, settings: Settings, job: Claimed, clock: Clock,
        on_chunk: Callable[[Progress], None] | None = None,
    ) -> None:
        self.database, self.settings, self.job, self.clock = database, settings, job, clock
        self.on_chunk = on_chunk
        self.rows = 0
        self.lost = False
        self.task: asyncio.Task[None] | None = None

    async def beat(self, **values: Any) -> None:
        async with self.database.transaction() as session:
            result = await session.execute(
                update(ExportJob)
                .where(ExportJob.id == self.job.id, ExportJob.attempts == self.job.attempts, ExportJob.status == RUNNING)
                .values(heartbeat_at=self.clock(), rows_written=self.rows, **values)
            )
        if result.rowcount == 0:  # type: ignore[attr-defined]
            self.lost = True

    async def _loop(self) -> None:
        while not self.lost:
            await asyncio.sleep(self.settings.export_heartbeat_seconds)
            try:
                await self.beat()
            except Exception:  # a missed beat is retried at the next one; the lease is long
                log.warning("export_heartbeat_failed", job_id=self.job.id)

    def start(self) -> None:
        self.task = asyncio.create_task(self._loop(), name=f"export-heartbeat-{self.job.id}")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.wait([self.task])

    def check(self) -> None:
        """After each chunk: stop when the lease is lost."""
        if self.lost:
            raise LostLease
        if self.on_chunk is not None:
            self.on_chunk(self)


async def _write_csv(store: Store, request: ExportRequest, path: Path, chunk_rows: int, progress: Progress, copy: bool) -> None:
    with path.open("wb") as handle:
        handle.write(csv_header(column_names(request.report)))
        if copy:  # PostgreSQL writes the progress CSV itself (the same bytes as the chunks below)
            lines = CrlfLines()

            async def write(block: bytes | bytearray) -> None:
                handle.write(lines(block))
                progress.rows = lines.rows
                progress.check()

            await copy_csv(store, request.scope, write, spreadsheet=request.date_format == "SPREADSHEET")
            return
        blocks = CsvBlocks(request.date_format, preformatted=csv_ready(request))
        async for rows in row_chunks(store, request, chunk_rows):
            handle.write(blocks(rows))
            progress.rows += len(rows)
            progress.check()


async def _write_xlsx(store: Store, request: ExportRequest, path: Path, chunk_rows: int, progress: Progress) -> None:
    sheet = Sheet(str(path), SHEETS[request.report], COLUMNS[request.report])
    try:
        async for rows in row_chunks(store, request, chunk_rows):
            await anyio.to_thread.run_sync(sheet.write, rows)
            progress.rows += len(rows)
            progress.check()
    finally:
        await anyio.to_thread.run_sync(sheet.close)


@dataclass
class Outcome:
    status: str
    error: str | None = None


async def run_job(
    database: Database, settings: Settings, files: FileStore, job: Claimed, clock: Clock = utcnow,
    on_chunk: Callable[[Progress], None] | None = None,
) -> Outcome:
    """Writes the job's file and records the outcome (DONE or FAILED). A worker that lost its lease stops
    without recording anything (the worker that took over does). `on_chunk` runs after every chunk written
    (tests stop a worker there)."""
    started = time.perf_counter()
    request = job.request
    store = Store(database)
    progress = Progress(database, settings, job, clock, on_chunk)
    partial = files.scratch() / f"job-{job.id}-{job.attempts}.{request.format.lower()}"
    for attempt in range(1, job.attempts):  # what a worker that died here left half-written
        (files.scratch() / f"job-{job.id}-{attempt}.{request.format.lower()}").unlink(missing_ok=True)
    try:
        owner = await store.scalar(select(User).where(User.id == job.owner_id))
        reach = await reach_of(store, owner) if owner is not None else Reach.anonymous()
        if not may_export(reach, request):
            raise _Refused("The owner may no longer export this report.")
        file_name = await authorize(store, reach, request)
        request = request.for_viewer(reach)  # the rows the owner may see, as of this run
        total = await total_rows(store, request)
        await progress.beat(rows_total=total)
        if progress.lost:
            raise LostLease
        if request.format == "XLSX" and total >= MAX_SHEET_ROWS:
            raise _Refused(f"More than {MAX_SHEET_ROWS - 1} rows: {TOO_MANY.get(request.report, 'narrow the export')}.")
        progress.start()
        if request.format == "XLSX":
            await _write_xlsx(store, request, partial, settings.export_chunk_rows, progress)
        else:
            copy = request.report == PROGRESS and settings.export_use_copy and store.dialect == "postgresql"
            await _write_csv(store, request, partial, settings.export_chunk_rows, progress, copy)
        await progress.stop()
        if progress.lost:
            raise LostLease
        await store.close()
        key = f"job-{job.id}-{job.attempts}.{request.format.lower()}"
        size = await files.put(key, partial)
        outcome = await _finish(database, settings, job, clock(), key=key, name=file_name, size=size, rows=progress.rows)
    except LostLease:
        log.warning("export_lease_lost", job_id=job.id, attempt=job.attempts)
        outcome = Outcome(RUNNING)
    except (AppError, _Refused, TooManyRows) as exc:
        message = str(exc) if not isinstance(exc, TooManyRows) else (
            f"More than {MAX_SHEET_ROWS - 1} rows: {TOO_MANY.get(request.report, 'narrow the export')}."
        )
        outcome = await _finish(database, settings, job, clock(), error=message, rows=progress.rows)
    except asyncio.CancelledError:
        raise  # the process is stopping: the job stays RUNNING and is taken over after the lease
    except Exception as exc:
        log.exception("export_job_failed", job_id=job.id)
        outcome = await _finish(database, settings, job, clock(), error=f"Internal error ({type(exc).__name__}).", rows=progress.rows)
    finally:
        await progress.stop()
        await store.close()
        partial.unlink(missing_ok=True)
    if outcome.status in (DONE, FAILED):
        EXPORT_JOB_SECONDS.labels(report=request.report, format=request.format, status=outcome.status).observe(
            time.perf_counter() - started
        )
        EXPORT_JOB_ROWS.labels(report=request.report, format=request.format).inc(progress.rows)
    return outcome


class _Refused(Exception):
    pass


async def _finish(
    database: Database, settings: Settings, job: Claimed, now: datetime, *, key: str | None = None,
    name: str | None = None, size: int | None = None, rows: int = 0, error: str | None = None,
) -> Outcome:
    status = DONE if error is None else FAILED
    key_for_links = await link_key(database, settings)  # before the transaction: making it is a write too
    values: dict[str, Any] = {"status": status, "finished_at": now, "rows_written": rows, "error": error}
    if status == DONE:
        values.update(file_key=key, file_name=name, file_bytes=size, expires_at=now + retention(settings))
    async with database.transaction() as session:
        result = await session.execute(
            update(ExportJob)
            .where(ExportJob.id == job.id, ExportJob.attempts == job.attempts, ExportJob.status == RUNNING)
            .values(**values)
        )
        if result.rowcount == 0:  # type: ignore[attr-defined]
            if key is not None:  # another worker took the job over meanwhile: its file counts
                await file_store(settings).delete(key)
            return Outcome(RUNNING)
        row = await session.get(ExportJob, job.id)
        assert row is not None
        await _queue_emails(session, database, settings, row, key_for_links)
    return Outcome(status, error)


def retention(settings: Settings) -> timedelta:
    return timedelta(hours=settings.export_retention_hours)


# --- emails --------------------------------------------------------------------------------------------------


def file_link(key: bytes, job: ExportJob, user_id: int, expires_at: datetime) -> str:
    return sign(key, f"/exports/jobs/{job.id}/file", {}, user_id, int(expires_at.timestamp()))


async def _queue_emails(
    session: AsyncSession, database: Database, settings: Settings, job: ExportJob, key: bytes
) -> None:
    """In the transaction that records the outcome: the owner's email, and (a schedule's run, DONE) one per
    recipient who may still export the report; the owner is told who was skipped."""
    request = ExportRequest.from_json(job.params)
    owner = await session.get(User, job.owner_id)
    if owner is None:
        return
    base = settings.public_url.rstrip("/")
    if job.status == FAILED:
        queue_email(
            session, "export_failed", owner.email, f"Your export failed: {request.describe()}",
            f"Hello {owner.first_name},\n\nThe export of the {request.describe()} you started at "
            f"{job.created_at:%Y-%m-%d %H:%M} UTC failed: {job.error}\n",
        )
        return
    assert job.expires_at is not None
    recipients: list[User] = []
    skipped: list[User] = []
    if job.schedule_id is not None:
        schedule = await session.get(ExportSchedule, job.schedule_id)
        ids = [i for i in json.loads(schedule.recipient_ids) if i != owner.id] if schedule else []
        if ids:
            users = list(await session.scalars(select(User).where(User.id.in_(ids)).order_by(User.id)))
            store = Store(database)
            try:
                for user in users:
                    allowed = may_export(await reach_of(store, user), request)
                    (recipients if allowed else skipped).append(user)
            finally:
                await store.close()
    expiry = f"{job.expires_at:%Y-%m-%d %H:%M} UTC"
    for user in [owner, *recipients]:
        link = base + file_link(key, job, user.id, job.expires_at)  # type: ignore[arg-type]
        body = (
            f"Hello {user.first_name},\n\nThe {request.describe()} is ready ({job.rows_written} rows):\n\n{link}\n\n"
            f"The link is yours alone and works until {expiry}, while you may still export this report.\n"
        )
        if user is owner and skipped:
            names = ", ".join(f"{u.first_name} {u.last_name} <{u.email}>" for u in skipped)
            body += f"\nNot sent to {names}: they may no longer export this report.\n"
        queue_email(session, "export_ready", user.email, f"Your export is ready: {request.describe()}", body)


async def _tell_owner_failed(database: Database, settings: Settings, job_id: int) -> None:
    key = await link_key(database, settings)
    async with database.transaction() as session:
        row = await session.get(ExportJob, job_id)
        if row is not None:
            await _queue_emails(session, database, settings, row, key)


# --- expiry ----------------------------------------------------------------------------------------------------


async def expire_files(database: Database, settings: Settings, files: FileStore, now: datetime) -> int:
    """Deletes the files kept past their retention and marks their jobs EXPIRED."""
    async with database.session() as session:
        due = list(
            (await session.execute(
                select(ExportJob.id, ExportJob.file_key)
                .where(ExportJob.status == DONE, ExportJob.expires_at <= now)
                .order_by(ExportJob.expires_at)
                .limit(100)
            )).all()
        )
    for job_id, key in due:
        if key:
            await files.delete(key)
        async with database.transaction() as session:
            await session.execute(
                update(ExportJob).where(ExportJob.id == job_id, ExportJob.status == DONE).values(status=EXPIRED, file_key=None)
            )
    return len(due)


# --- schedules -----------------------------------------------------------------------------------------------

FREQUENCIES = ("DAILY", "WEEKLY", "MONTHLY")


def next_run(
    frequency: str, time_of_day: str, time_zone: str, after: datetime, weekday: int | None = None,
    day_of_month: int | None = None,
) -> datetime:
    """The first run strictly after `after` (UTC): the local time `time_of_day` in `time_zone` on every day,
    on `weekday` (0 = Monday), or on `day_of_month` (the month's last day when it has fewer days). A local
    time that does not exist that day (the clocks go forward) runs at the same offset as before the change."""
    zone = ZoneInfo(time_zone)
    hour, minute = (int(p) for p in time_of_day.split(":"))
    day = after.astimezone(zone).date()
    for _ in range(400):
        if _matches(frequency, day, weekday, day_of_month):
            local = datetime.combine(day, clock_time(hour, minute), tzinfo=zone)
            at = local.astimezone(UTC)
            if at > after:
                return at
        day += timedelta(days=1)
    raise ValueError("no run within a year")  # cannot happen for valid schedules


def _matches(frequency: str, day: date, weekday: int | None, day_of_month: int | None) -> bool:
    if frequency == "DAILY":
        return True
    if frequency == "WEEKLY":
        return day.weekday() == weekday
    last = calendar.monthrange(day.year, day.month)[1]
    return day.day == min(day_of_month or 1, last)


async def fire_due_schedules(database: Database, now: datetime) -> list[int]:
    """Starts one export job for every schedule whose time has come (a schedule that missed several runs,
    the server being down, runs once), and moves it to its next run. Returns the new jobs' ids."""
    started: list[int] = []
    async with database.transaction() as session:
        due = (
            select(ExportSchedule)
            .where(ExportSchedule.paused.is_(False), ExportSchedule.next_run_at <= now)
            .order_by(ExportSchedule.next_run_at)
            .limit(100)
        )
        if not database.is_sqlite:
            due = due.with_for_update(skip_locked=True)
        for schedule in list(await session.scalars(due)):
            job = queue_job(session, schedule.owner_id, ExportRequest.from_json(schedule.params), schedule.id)
            await session.flush()
            schedule.last_run_at = now
            schedule.next_run_at = next_run(
                schedule.frequency, schedule.time_of_day, schedule.time_zone, now, schedule.weekday,
                schedule.day_of_month,
            )
            audit(session, None, "export_schedule.run", "export_schedule", schedule.id, job_id=job.id,
                  owner_id=schedule.owner_id, next_run_at=schedule.next_run_at)
            started.append(job.id)  # type: ignore[arg-type]
    return started


# --- the worker -----------------------------------------------------------------------------------------------


async def work_once(database: Database, settings: Settings, files: FileStore, clock: Clock = utcnow) -> bool:
    """One round: due schedules start their jobs, expired files go, and one job runs. True when a job ran."""
    await fire_due_schedules(database, clock())
    await expire_files(database, settings, files, clock())
    job = await claim_job(database, settings, clock())
    if job is None:
        return False
    log.info("export_job_started", job_id=job.id, attempt=job.attempts)
    outcome = await run_job(database, settings, files, job, clock)
    log.info("export_job_finished", job_id=job.id, status=outcome.status)
    return True


async def run_worker(database: Database, settings: Settings) -> None:
    """Runs jobs forever: after a job at once, else after the poll interval (or when woken)."""
    files = file_store(settings)
    while True:
        try:
            ran = await work_once(database, settings, files)
        except asyncio.CancelledError:
            raise
        except Exception:  # the worker must outlive any one bad round (database restart, bug)
            log.exception("export_worker_round_failed")
            ran = False
        if not ran:
            _wake.clear()
            try:
                await asyncio.wait_for(_wake.wait(), settings.export_poll_seconds)
            except TimeoutError:
                pass


def background_worker(database: Database, settings: Settings) -> Callable[[], asyncio.Task[None]]:
    """A starter for app.state.background (the server's lifespan starts it and cancels it at shutdown)."""
    return lambda: asyncio.create_task(run_worker(database, settings), name="export-jobs")


async def count_by_status(database: Database) -> dict[str, int]:
    async with database.session() as session:
        rows = (await session.execute(select(ExportJob.status, func.count()).group_by(ExportJob.status))).all()
    counts = dict.fromkeys(STATUSES, 0)
    counts.update({status: int(n) for status, n in rows})
    return counts


def job_gauges(database: Database) -> Callable[[], Awaitable[list[Metric]]]:
    """A /metrics scrape hook: the jobs by status, every worker's (one query per scrape)."""

    async def families() -> list[Metric]:
        family = GaugeMetricFamily("groupgraph_export_jobs", "Export jobs by status", labels=["status"])
        for status, n in (await count_by_status(database)).items():
            family.add_metric([status], n)
        return [family]

    return families
