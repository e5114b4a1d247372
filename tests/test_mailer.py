"""Outbox delivery over SMTP against a real aiosmtpd server on loopback: sent once, retried with back-off."""

from __future__ import annotations

import asyncio
import email
import socket
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select
from typer.testing import CliRunner

from app.runtime import metrics
from app.services.mailer import deliver_due, queue_email
from app.store.models import OutboxEmail, utcnow
from tests.site import Site, gid


class Inbox:
    """An aiosmtpd handler that keeps what it accepts and answers with queued failures first."""

    def __init__(self) -> None:
        self.messages: list[email.message.Message] = []
        self.failures: list[str] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.failures:
            return self.failures.pop(0)
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, int]]:
    handler = Inbox()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


@pytest.fixture
def settings_overrides(inbox: tuple[Inbox, int]) -> dict[str, Any]:
    return {
        "smtp_host": "127.0.0.1", "smtp_port": inbox[1], "smtp_sender": "school@example.org",
        "smtp_timeout_seconds": 5, "email_retry_base_seconds": 60, "email_max_attempts": 3,
    }


async def queue(site: Site, *addresses: str) -> list[int]:
    async with site.database.transaction() as session:
        rows = [queue_email(session, "test", a, f"Hello {a}", "Your reports are ready.") for a in addresses]
        await session.flush()
        return [r.id for r in rows]  # type: ignore[misc]


async def outbox(site: Site) -> dict[int, OutboxEmail]:
    async with site.database.session() as session:
        return {r.id: r for r in await session.scalars(select(OutboxEmail))}  # type: ignore[misc]


async def test_queued_email_is_delivered_once(site: Site, inbox: tuple[Inbox, int]) -> None:
    server, _ = inbox
    admin = await site.user("Ann", kind="STAFF", roles="ADMIN")
    parent = await site.user("Dee", kind="EXTERNAL", email="dee@example.com")
    body = await site.gql(
        'mutation($ids: [ID!]!) { emailUsers(userIds: $ids, subject: "Reports", body: "Ready to download.") }',
        {"ids": [gid("User", parent)]}, as_user=admin,
    )
    assert body == {"data": {"emailUsers": 1}}
    await queue(site, "a@example.com", "b@example.com")

    report = await deliver_due(site.database, site.settings)
    assert (report.claimed, report.sent, report.failed) == (3, 3, 0)
    assert sorted(m["To"] for m in server.messages) == ["a@example.com", "b@example.com", "dee@example.com"]
    dee = next(m for m in server.messages if m["To"] == "dee@example.com")
    assert dee["Subject"] == "Reports" and dee["From"] == "school@example.org"
    assert dee.get_payload().strip() == "Ready to download." and dee["Message-ID"].startswith("<outbox-")
    assert all(r.sent_at is not None and r.attempts == 1 for r in (await outbox(site)).values())

    again = await deliver_due(site.database, site.settings, now=utcnow() + timedelta(days=30))
    assert again.claimed == 0 and len(server.messages) == 3


async def test_two_workers_at_once_never_send_one_twice(site: Site, inbox: tuple[Inbox, int]) -> None:
    server, _ = inbox
    await queue(site, *(f"p{n}@example.com" for n in range(12)))
    settings = site.settings.model_copy(update={"email_batch_size": 5})
    reports = await asyncio.gather(*(deliver_due(site.database, settings) for _ in range(4)))
    assert sum(r.sent for r in reports) == 12
    received = [m["To"] for m in server.messages]
    assert len(received) == 12 and len(set(received)) == 12


async def test_temporary_failure_is_retried_with_back_off(site: Site, inbox: tuple[Inbox, int]) -> None:
    server, _ = inbox
    server.failures = ["451 4.3.0 Try again later", "451 4.3.0 Still busy"]
    (message_id,) = await queue(site, "dee@example.com")

    first = await deliver_due(site.database, site.settings)
    assert (first.sent, first.failed, first.gave_up) == (0, 1, 0)
    row = (await outbox(site))[message_id]
    assert row.sent_at is None and row.attempts == 1 and "451" in row.last_error
    assert timedelta(seconds=55) < row.next_attempt_at - utcnow() <= timedelta(seconds=60)
    assert (await deliver_due(site.database, site.settings)).claimed == 0  # not due yet

    second = await deliver_due(site.database, site.settings, now=utcnow() + timedelta(seconds=61))
    assert second.failed == 1
    row = (await outbox(site))[message_id]
    assert row.attempts == 2 and timedelta(seconds=115) < row.next_attempt_at - utcnow() <= timedelta(seconds=120)

    third = await deliver_due(site.database, site.settings, now=utcnow() + timedelta(seconds=121))
    assert third.sent == 1 and [m["To"] for m in server.messages] == ["dee@example.com"]
    row = (await outbox(site))[message_id]
    assert row.sent_at is not None and row.attempts == 3 and row.last_error is None


async def test_permanent_failure_and_unreachable_server_give_up(site: Site, inbox: tuple[Inbox, int]) -> None:
    server, _ = inbox
    server.failures = ["550 5.1.1 No such mailbox"]
    given_up = metrics.registry.get_sample_value("groupgraph_emails_total", {"outcome": "gave_up"}) or 0
    (refused,) = await queue(site, "gone@example.com")
    report = await deliver_due(site.database, site.settings)
    assert (report.failed, report.gave_up) == (1, 1)
    later = await deliver_due(site.database, site.settings, now=utcnow() + timedelta(days=1))
    assert later.claimed == 0 and server.messages == []
    assert (await outbox(site))[refused].attempts == site.settings.email_max_attempts

    (stuck,) = await queue(site, "dee@example.com")
    down = site.settings.model_copy(update={"smtp_port": free_port()})
    when = utcnow()
    for attempt in range(1, 4):
        report = await deliver_due(site.database, down, now=when)
        assert report.failed == 1 and report.gave_up == (attempt == 3)
        when += timedelta(hours=2)
    row = (await outbox(site))[stuck]
    assert row.sent_at is None and row.attempts == 3 and row.last_error
    assert (await deliver_due(site.database, site.settings, now=when)).claimed == 0
    assert metrics.registry.get_sample_value("groupgraph_emails_total", {"outcome": "gave_up"}) == given_up + 2
    scrape = (await site.client.get("/metrics")).text  # the outbox as the scrape measures it
    assert "groupgraph_email_outbox_given_up 2.0" in scrape and "groupgraph_email_outbox_waiting 0.0" in scrape


def test_cli_and_server_start_delivery_only_with_smtp_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from app.cli import cli
    from app.server import create_app
    from app.settings import Settings, get_settings
    from app.store.db import Database

    monkeypatch.delenv("GROUPGRAPH_SMTP_HOST", raising=False)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli, ["deliver-email"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1 and "SMTP is not configured" in result.output
    plain = Settings(database_url="sqlite+aiosqlite:///:memory:", export_worker=False)
    with_smtp = plain.model_copy(update={"smtp_host": "127.0.0.1"})
    assert create_app(plain, Database(plain)).state.background == []
    assert len(create_app(with_smtp, Database(with_smtp)).state.background) == 1
    jobs = plain.model_copy(update={"export_worker": True})  # the export worker: on by default
    assert len(create_app(jobs, Database(jobs)).state.background) == 1
