"""Access requests (consent grants): by id, the caller's outgoing and incoming lists, and the status rules
in SQL.

EXPIRED is never stored: a PENDING row whose `expires_at` has passed reads as EXPIRED. `status_is` and
`effective_status` are the one definition of that, in SQL and in Python, so lists filtered by status and
the status a row shows always agree, and no read has to write.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, and_, func, or_, select
from strawberry.dataloader import DataLoader

from app.store import keyset
from app.store.keyset import Key, Window
from app.store.models import AccessRequest, AccessRequestBlock
from dataloaders.store import Store

PENDING, GRANTED, DENIED, REVOKED, EXPIRED = "PENDING", "GRANTED", "DENIED", "REVOKED", "EXPIRED"


def effective_status(row: AccessRequest, now: datetime) -> str:
    if row.status == PENDING and row.expires_at <= now:
        return EXPIRED
    return row.status


def status_is(status: str, now: datetime) -> ColumnElement[bool]:
    """SQL condition: the row reads as `status` at `now` (the SQL twin of effective_status)."""
    if status == PENDING:
        return and_(AccessRequest.status == PENDING, AccessRequest.expires_at > now)
    if status == EXPIRED:
        return or_(
            AccessRequest.status == EXPIRED,
            and_(AccessRequest.status == PENDING, AccessRequest.expires_at <= now),
        )
    return AccessRequest.status == status


def open_to(requester_id: int, email_normalized: str, now: datetime) -> ColumnElement[bool]:
    """Requests that block a new one to the same email: unexpired PENDING, or GRANTED."""
    return and_(
        AccessRequest.requester_id == requester_id,
        AccessRequest.subject_email_normalized == email_normalized,
        or_(status_is(PENDING, now), AccessRequest.status == GRANTED),
    )


def addressed_to(user_id: int, email_normalized: str) -> ColumnElement[bool]:
    """Requests whose subject is this user: recorded as theirs, or not yet matched and sent to their email
    (so accounts created after the request see it too)."""
    return or_(
        AccessRequest.subject_user_id == user_id,
        and_(AccessRequest.subject_user_id.is_(None), AccessRequest.subject_email_normalized == email_normalized),
    )


NEWEST_FIRST = (AccessRequest.created_at.desc(), AccessRequest.id.desc())
NEWEST_FIRST_KEYS = (Key(AccessRequest.created_at, descending=True), Key(AccessRequest.id, descending=True))


class ConsentLoaders:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.by_id = DataLoader(load_fn=self._by_id)

    async def _by_id(self, ids: Sequence[int]) -> list[AccessRequest | None]:
        rows = await self.store.scalars(select(AccessRequest).where(AccessRequest.id.in_(list(set(ids)))))
        found = {r.id: r for r in rows}
        return [found.get(i) for i in ids]

    async def outgoing(self, requester_id: int, status: str | None, now: datetime) -> Sequence[AccessRequest]:
        query = select(AccessRequest).where(AccessRequest.requester_id == requester_id)
        if status is not None:
            query = query.where(status_is(status, now))
        return await self.store.scalars(query.order_by(*NEWEST_FIRST))

    async def incoming(
        self, user_id: int, email_normalized: str, status: str | None, now: datetime
    ) -> Sequence[AccessRequest]:
        blocked = select(AccessRequestBlock.id).where(
            AccessRequestBlock.blocker_id == user_id, AccessRequestBlock.requester_id == AccessRequest.requester_id
        )
        query = select(AccessRequest).where(addressed_to(user_id, email_normalized), ~blocked.exists())
        if status is not None:
            query = query.where(status_is(status, now))
        return await self.store.scalars(query.order_by(*NEWEST_FIRST))


async def blocked_requester_ids(store: Store, blocker_id: int) -> Sequence[int]:
    return await store.scalars(
        select(AccessRequestBlock.requester_id)
        .where(AccessRequestBlock.blocker_id == blocker_id)
        .order_by(AccessRequestBlock.id)
    )


def listed(
    direction: str, user_id: int, email_normalized: str, status: str | None, now: datetime
) -> list[ColumnElement[bool]]:
    """The caller's OUTGOING requests (they asked) or INCOMING ones (about them), with a status."""
    if direction == "OUTGOING":
        mine = [AccessRequest.requester_id == user_id]
    else:  # not those of requesters the caller blocked
        blocked = select(AccessRequestBlock.id).where(
            AccessRequestBlock.blocker_id == user_id, AccessRequestBlock.requester_id == AccessRequest.requester_id
        )
        mine = [addressed_to(user_id, email_normalized), ~blocked.exists()]
    return mine if status is None else [*mine, status_is(status, now)]


async def request_page(store: Store, conditions: list[ColumnElement[bool]], window: Window) -> Sequence[AccessRequest]:
    """One keyset window, newest first, in fetch order."""
    query = select(AccessRequest).where(*conditions, *keyset.conditions(NEWEST_FIRST_KEYS, window))
    return await store.scalars(query.order_by(*keyset.ordering(NEWEST_FIRST_KEYS, window)).limit(window.fetch))


async def request_count(store: Store, conditions: list[ColumnElement[bool]]) -> int:
    return int(await store.scalar(select(func.count()).select_from(AccessRequest).where(*conditions)))


async def pending_count(session, requester_id: int, now: datetime) -> int:  # type: ignore[no-untyped-def]
    """The requester's unexpired PENDING requests (the cap counts these)."""
    return int(
        await session.scalar(
            select(func.count())
            .select_from(AccessRequest)
            .where(AccessRequest.requester_id == requester_id, status_is(PENDING, now))
        )
    )
