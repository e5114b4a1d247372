"""Email delivery from the outbox: a worker that sends due messages over SMTP (aiosmtplib).

Every message is first claimed in its own committed transaction (attempts + 1, next_attempt_at pushed past
a lease), then sent, then marked sent at once. Two workers never claim the same row (PostgreSQL: FOR UPDATE
SKIP LOCKED; SQLite: BEGIN IMMEDIATE serializes the claim), and a sent row is never selected again. The one
window left is a crash after the SMTP server accepted a message and before `sent_at` is written: the
message is retried after the lease; its Message-ID stays the same, so receivers can drop the copy.
Temporary failures (4xx, connection trouble) are retried with exponential back-off up to
`email_max_attempts`; permanent ones (5xx) are given up at once. `last_error` keeps the reason.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime

import aiosmtplib
from sqlalchemy import select, update

from app.runtime.logs import log
from app.runtime.metrics import EMAILS
from app.settings import Settings
from app.store.db import Database
from app.store.models import OutboxEmail, utcnow


def queue_email(session, kind: str, to_address: str, subject: str, body: str) -> OutboxEmail:  # type: ignore[no-untyped-def]
    """Add one message to the outbox inside the caller's transaction (sent only if that commits)."""
    row = OutboxEmail(kind=kind, to_address=to_address, subject=subject, body=body)
    session.add(row)
    return row


@dataclass
class DeliveryReport:
    claimed: int = 0
    sent: int = 0
    failed: int = 0
    gave_up: int = 0


@dataclass
class Claimed:
    id: int
    to_address: str
    subject: str
    body: str
    attempts: int
    created_at: datetime


def retry_delay(settings: Settings, attempts: int) -> timedelta:
    """base, 2*base, 4*base, ... capped."""
    seconds = settings.email_retry_base_seconds * 2 ** max(attempts - 1, 0)
    return timedelta(seconds=min(seconds, settings.email_retry_max_seconds))


def lease(settings: Settings) -> timedelta:
    """How long a claimed message is left alone: longer than any one send may take."""
    return timedelta(seconds=settings.smtp_timeout_seconds * 4 + 60)


def build_message(settings: Settings, item: Claimed) -> EmailMessage:
    message = EmailMessage()
    domain = settings.smtp_sender.rpartition("@")[2] or "localhost"
    message["From"] = settings.smtp_sender
    message["To"] = item.to_address
    message["Subject"] = item.subject
    message["Date"] = format_datetime(item.created_at)
    message["Message-ID"] = f"<outbox-{item.id}-{int(item.created_at.timestamp())}@{domain}>"
    message.set_content(item.body)
    return message


async def claim_due(database: Database, settings: Settings, now: datetime, limit: int) -> list[Claimed]:
    async with database.transaction() as session:
        due = (
            select(OutboxEmail.id)
            .where(
                OutboxEmail.sent_at.is_(None),
                OutboxEmail.attempts < settings.email_max_attempts,
                OutboxEmail.next_attempt_at <= now,
            )
            .order_by(OutboxEmail.next_attempt_at, OutboxEmail.id)
            .limit(limit)
        )
        if not database.is_sqlite:
            due = due.with_for_update(skip_locked=True)
        ids = list(await session.scalars(due))
        if not ids:
            return []
        rows = await session.execute(
            update(OutboxEmail)
            .where(OutboxEmail.id.in_(ids), OutboxEmail.sent_at.is_(None))
            .values(attempts=OutboxEmail.attempts + 1, next_attempt_at=now + lease(settings))
            .returning(
                OutboxEmail.id, OutboxEmail.to_address, OutboxEmail.subject, OutboxEmail.body,
                OutboxEmail.attempts, OutboxEmail.created_at,
            )
            .execution_options(synchronize_session=False)
        )
        claimed = [Claimed(*row) for row in rows.all()]
    return sorted(claimed, key=lambda c: c.id)


async def _mark_sent(database: Database, item: Claimed) -> None:
    async with database.transaction() as session:
        await session.execute(
            update(OutboxEmail).where(OutboxEmail.id == item.id).values(sent_at=utcnow(), last_error=None)
        )


async def _mark_failed(database: Database, settings: Settings, item: Claimed, error: str, permanent: bool) -> bool:
    """Record the failure; True when the message will not be tried again."""
    gave_up = permanent or item.attempts >= settings.email_max_attempts
    values: dict[str, object] = {"last_error": error[:2000]}
    if permanent:
        values["attempts"] = settings.email_max_attempts
    if not gave_up:
        values["next_attempt_at"] = utcnow() + retry_delay(settings, item.attempts)
    async with database.transaction() as session:
        await session.execute(update(OutboxEmail).where(OutboxEmail.id == item.id).values(**values))
    return gave_up


def _describe(exc: BaseException) -> tuple[str, bool]:
    """The error text, and whether it is permanent (an SMTP 5xx answer)."""
    codes: list[int] = []
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [r.code for r in exc.recipients]
    elif isinstance(exc, aiosmtplib.SMTPResponseException):
        codes = [exc.code]
    permanent = bool(codes) and all(500 <= c < 600 for c in codes)
    return f"{type(exc).__name__}: {exc}", permanent


def smtp_client(settings: Settings) -> aiosmtplib.SMTP:
    return aiosmtplib.SMTP(
        hostname=settings.smtp_host,
        port=settings.smtp_port,
        username=settings.smtp_username,
        password=settings.smtp_password,
        use_tls=settings.smtp_use_tls,
        timeout=settings.smtp_timeout_seconds,
    )


async def deliver_due(database: Database, settings: Settings, now: datetime | None = None) -> DeliveryReport:
    """Claim one batch of due messages and send them over one SMTP connection."""
    report = DeliveryReport()
    claimed = await claim_due(database, settings, now or utcnow(), settings.email_batch_size)
    report.claimed = len(claimed)
    if not claimed:
        return report
    smtp = smtp_client(settings)
    unreachable: BaseException | None = None  # once connecting fails, the rest of the batch waits too
    try:
        for item in claimed:
            try:
                if unreachable is not None:
                    raise unreachable
                if not smtp.is_connected:
                    try:
                        await smtp.connect()
                    except (aiosmtplib.SMTPException, OSError) as exc:
                        unreachable = exc
                        raise
                await smtp.send_message(build_message(settings, item))
            except (aiosmtplib.SMTPException, OSError) as exc:
                text, permanent = _describe(exc)
                log.warning("email_failed", outbox_id=item.id, attempts=item.attempts, error=text)
                gave_up = await _mark_failed(database, settings, item, text, permanent)
                report.gave_up += gave_up
                report.failed += 1
                EMAILS.labels("gave_up" if gave_up else "failed").inc()
                continue
            await _mark_sent(database, item)
            report.sent += 1
            EMAILS.labels("sent").inc()
    finally:
        if smtp.is_connected:
            try:
                await smtp.quit()
            except (aiosmtplib.SMTPException, OSError):
                smtp.close()
    return report


async def deliver_all_due(database: Database, settings: Settings) -> DeliveryReport:
    """Batches until nothing is due (the CLI's one-shot run)."""
    total = DeliveryReport()
    while True:
        report = await deliver_due(database, settings)
        for name in ("claimed", "sent", "failed", "gave_up"):
            setattr(total, name, getattr(total, name) + getattr(report, name))
        if report.claimed < settings.email_batch_size:
            return total


async def run_worker(database: Database, settings: Settings) -> None:
    """Deliver forever: a full batch is followed at once by the next, otherwise wait a poll interval."""
    while True:
        try:
            report = await deliver_due(database, settings)
        except asyncio.CancelledError:
            raise
        except Exception:  # the worker must outlive any one bad round (database restart, bug)
            log.exception("email_worker_round_failed")
            report = DeliveryReport()
        if report.sent or report.failed:
            log.info("email_delivery", sent=report.sent, failed=report.failed, gave_up=report.gave_up)
        if report.claimed < settings.email_batch_size:
            await asyncio.sleep(settings.email_poll_seconds)


def background_worker(database: Database, settings: Settings) -> Callable[[], asyncio.Task[None]]:
    """A starter for app.state.background (the server's lifespan starts it and cancels it at shutdown)."""
    return lambda: asyncio.create_task(run_worker(database, settings), name="email-delivery")
