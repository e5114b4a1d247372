"""The email outbox for site admins: queued, sent and failed emails with their attempts and last error."""

from __future__ import annotations

from datetime import datetime
from enum import Enum

import strawberry
from strawberry.types import Info

from app.store.models import OutboxEmail as OutboxEmailRow
from dataloaders.outbox import FAILED, SENT, outbox_count, outbox_page
from permissions.classes import requires
from permissions.reach import Permission
from resolvers.common import PageInfo, decode_cursor, encode_cursor, page_info, page_size


@strawberry.enum(description="Where an email of the outbox stands.")
class EmailStatus(Enum):
    QUEUED = strawberry.enum_value("QUEUED", description="Waiting for its first or next attempt.")
    SENT = strawberry.enum_value("SENT", description="Handed to the mail server.")
    FAILED = strawberry.enum_value(
        "FAILED", description="Given up: every attempt failed (GROUPGRAPH_EMAIL_MAX_ATTEMPTS) or the server refused it."
    )


@strawberry.type(description="One email of the outbox (site admins): whether it went out, and why not.")
class OutboxEmail:
    row: strawberry.Private[OutboxEmailRow]
    max_attempts: strawberry.Private[int]

    @strawberry.field
    def database_id(self) -> int:
        return self.row.id  # type: ignore[return-value]

    @strawberry.field(description="What queued it: access_request (an invitation or \"contact\" email), email_users, ...")
    def kind(self) -> str:
        return self.row.kind

    @strawberry.field
    def to(self) -> str:
        return self.row.to_address

    @strawberry.field
    def subject(self) -> str:
        return self.row.subject

    @strawberry.field
    def status(self) -> EmailStatus:
        if self.row.sent_at is not None:
            return EmailStatus(SENT)
        return EmailStatus(FAILED) if self.row.attempts >= self.max_attempts else EmailStatus.QUEUED

    @strawberry.field(description="Delivery attempts so far.")
    def attempts(self) -> int:
        return self.row.attempts

    @strawberry.field(description="Why the last attempt failed; null once sent or before any failure.")
    def last_error(self) -> str | None:
        return self.row.last_error

    @strawberry.field
    def created_at(self) -> datetime:
        return self.row.created_at

    @strawberry.field
    def sent_at(self) -> datetime | None:
        return self.row.sent_at

    @strawberry.field(description="When a QUEUED email is tried next.")
    def next_attempt_at(self) -> datetime | None:
        return self.row.next_attempt_at if self.row.sent_at is None and self.row.attempts < self.max_attempts else None


@strawberry.type
class OutboxEmailEdge:
    cursor: str
    node: OutboxEmail


@strawberry.type
class OutboxEmailConnection:
    edges: list[OutboxEmailEdge]
    page_info: PageInfo
    total_count: int


@strawberry.type
class OutboxQueries:
    @strawberry.field(
        extensions=[requires(Permission.SITE_ADMIN)],
        description="The email outbox, newest first (site admins): queued, sent and failed emails with their attempts "
        "and last error, so an admin can tell whether an email went out. status filters it.",
    )
    async def outbox_emails(
        self, info: Info, status: EmailStatus | None = None, first: int | None = 50, after: str | None = None
    ) -> OutboxEmailConnection:
        limit = page_size(info, first)
        cursor = decode_cursor(after, [int])
        max_attempts = info.context.settings.email_max_attempts
        wanted = status.value if status else None
        rows = list(await outbox_page(info.context.store, wanted, max_attempts, cursor[0] if cursor else None, limit + 1))
        edges = [
            OutboxEmailEdge(cursor=encode_cursor(r.id), node=OutboxEmail(row=r, max_attempts=max_attempts))
            for r in rows[:limit]
        ]
        total = await outbox_count(info.context.store, wanted, max_attempts)
        return OutboxEmailConnection(
            edges=edges, page_info=page_info(len(rows) > limit, [e.cursor for e in edges]), total_count=total
        )
