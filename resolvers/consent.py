"""Consent grants: asking another person for access to their learning data, and their answer.

Who sees a request: its requester, its subject and site admins (`node`, `Membership.accessRequest`);
nobody else, and for them it reads exactly as a missing id. The subject of a request is the account
recorded on it (`subject_user_id`, set when the request is made to an existing account's email, or when
it is answered), otherwise whichever account has the email now, so accounts created after the request
see it too.

EXPIRED is computed, never stored (see dataloaders.consent): a PENDING request past `expiresAt` reads
as EXPIRED everywhere, cannot be answered or cancelled, and no longer blocks a new request.

No account enumeration: `requestAccess` runs the same statements whether or not an account has the
email (the lookup, one request row, one outbox email, one audit row), and the requester's view of a
request hides the subject until it is GRANTED.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from enum import Enum
from typing import Annotated, Any

import strawberry
from sqlalchemy import delete, func, select, update
from strawberry.types import Info

from app.runtime import cursors
from app.runtime.errors import BadInput, Conflict, Forbidden, NotFound, RateLimited
from app.runtime.ids import require_id, to_global_id
from app.services.audit import audit
from app.services.events import access_request_changed, reach_changed
from app.settings import Settings
from app.store.models import AccessRequest as AccessRequestRow
from app.store.models import AccessRequestBlock, AccessRequestEmail, OutboxEmail, utcnow
from app.store.models import Membership as MembershipRow
from app.store.models import User as UserRow
from dataloaders.consent import (
    DENIED,
    GRANTED,
    PENDING,
    REVOKED,
    blocked_requester_ids,
    effective_status,
    listed,
    open_to,
    pending_count,
    request_count,
    request_page,
)
from permissions.classes import authenticated
from permissions.reach import Reach
from resolvers.common import After, Before, First, Last, Node, PageInfo, clean_text, paging
from resolvers.views import UserType, UserView, check_email, normalize_email, prepare_users

DAY = timedelta(days=1)
ADVISORY_LOCK_NAMESPACE = 4  # pg_advisory_xact_lock(namespace, requester id): one requestAccess at a time per requester


@strawberry.enum
class AccessRequestStatus(Enum):
    PENDING = "PENDING"
    GRANTED = "GRANTED"
    DENIED = "DENIED"
    REVOKED = "REVOKED"
    EXPIRED = strawberry.enum_value("EXPIRED", description="A PENDING request not answered before expiresAt.")


@strawberry.enum
class AccessDecision(Enum):
    GRANT = "GRANT"
    DENY = "DENY"


@strawberry.type(description="A request to see another user's data, and its answer (the consent grant).")
class AccessRequest(Node):
    row: strawberry.Private[AccessRequestRow]
    current_status: strawberry.Private[str]
    requester_user: strawberry.Private[UserView]
    subject_user: strawberry.Private[UserView | None]

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(to_global_id("AccessRequest", self.row.id))  # type: ignore[arg-type]

    @strawberry.field(
        description="The subject of the request sees the requester's name and email (VIEW_CONTACT) while the request "
        "is PENDING or GRANTED, to know who is asking."
    )
    def requester(self) -> UserType:
        return self.requester_user

    @strawberry.field(
        description="The email the requester typed. Whether an account has it is never revealed to the requester."
    )
    def subject_email(self) -> str:
        return self.row.subject_email

    @strawberry.field(
        description="Visible to the requester only once GRANTED (null otherwise, without an error, whether or "
        "not an account has the email); always to the subject themself and to site admins."
    )
    def subject(self) -> UserType | None:
        return self.subject_user

    @strawberry.field
    def message(self) -> str | None:
        return self.row.message

    @strawberry.field
    def status(self) -> AccessRequestStatus:
        return AccessRequestStatus(self.current_status)

    @strawberry.field
    def created_at(self) -> datetime:
        return self.row.created_at

    @strawberry.field(description="A PENDING request expires unanswered at this time (setting; default 30 days).")
    def expires_at(self) -> datetime:
        return self.row.expires_at

    @strawberry.field(description="When the subject last answered: granted, denied or revoked.")
    def decided_at(self) -> datetime | None:
        return self.row.decided_at


# --- who is who on a request ---------------------------------------------------------------------------


def is_subject(viewer: UserRow | None, row: AccessRequestRow) -> bool:
    if viewer is None:
        return False
    if row.subject_user_id is not None:
        return row.subject_user_id == viewer.id
    return row.subject_email_normalized == viewer.email_normalized


def is_requester(viewer: UserRow | None, row: AccessRequestRow) -> bool:
    return viewer is not None and row.requester_id == viewer.id


def may_see(reach: Reach, viewer: UserRow | None, row: AccessRequestRow) -> bool:
    return reach.is_admin or is_requester(viewer, row) or is_subject(viewer, row)


def shown_subject_id(reach: Reach, viewer: UserRow | None, row: AccessRequestRow, status: str) -> int | None:
    """The subject's user id where the viewer may see who the subject is, else None."""
    if is_subject(viewer, row):
        return viewer.id  # type: ignore[union-attr]
    if reach.is_admin or (is_requester(viewer, row) and status == GRANTED):
        return row.subject_user_id
    return None


async def build_requests(info: Info, rows: list[AccessRequestRow]) -> list[AccessRequest]:
    """AccessRequest objects with requester and subject prepared in one batch (no SQL per row)."""
    ctx = info.context
    reach = await ctx.load_reach()
    now = utcnow()
    viewer = ctx.viewer
    plan = []
    wanted: set[int] = set()
    for row in rows:
        status = effective_status(row, now)
        subject_id = shown_subject_id(reach, viewer, row, status)
        plan.append((row, status, subject_id))
        wanted.add(row.requester_id)
        if subject_id is not None:
            wanted.add(subject_id)
    ids = sorted(wanted)
    found = [r for r in await ctx.loaders.users.many(ids) if r is not None]
    users = {u.row.id: u for u in await prepare_users(info, found)}
    return [
        AccessRequest(
            row=row,
            current_status=status,
            requester_user=users[row.requester_id],
            subject_user=users.get(subject_id) if subject_id is not None else None,
        )
        for row, status, subject_id in plan
    ]


async def visible_access_request(info: Info, database_id: int) -> AccessRequest | None:
    """For `node(id:)`: the requester, the subject and site admins see a request; others get null."""
    reach = await info.context.load_reach()
    row = await info.context.loaders.consent.by_id.load(database_id)
    if row is None or not may_see(reach, info.context.viewer, row):
        return None
    return (await build_requests(info, [row]))[0]


async def access_request_for_membership(info: Info, access_request_id: int) -> AccessRequest | None:
    """`Membership.accessRequest`: the same rule as `node` (requester, subject, site admins). A co-leader
    who sees the membership sees null: the consent and its message are between the two people."""
    return await visible_access_request(info, access_request_id)


# --- queries -------------------------------------------------------------------------------------------


@strawberry.enum(description="Which of the caller's access requests to list.")
class AccessRequestDirection(Enum):
    OUTGOING = strawberry.enum_value("OUTGOING", description="Requests the caller made.")
    INCOMING = strawberry.enum_value("INCOMING", description="Requests for the caller's data.")


@strawberry.type(description="One access request in a page, with its cursor.")
class AccessRequestEdge:
    cursor: str = strawberry.field(description="Opaque cursor of this edge, for `after` or `before` of the same list.")
    node: AccessRequest = strawberry.field(description="The access request.")


@strawberry.type(description="A page of access requests, newest first (keyset pages both ways).")
class AccessRequestConnection:
    edges: list[AccessRequestEdge] = strawberry.field(description="The page's edges, newest first.")
    page_info: PageInfo = strawberry.field(description="Cursors of the page's ends and whether more lie either side.")
    conditions: strawberry.Private[list[Any]]

    @strawberry.field(description="How many the whole list holds (every page), with the same status.")
    async def total_count(self, info: Info) -> int:
        return await request_count(info.context.store, self.conditions)


@strawberry.type
class ConsentQueries:
    @strawberry.field(
        extensions=[authenticated()],
        description="The caller's access requests, newest first, a page at a time: those they made (OUTGOING) or "
        "those for their data (INCOMING). The same requests as outgoingAccessRequests / incomingAccessRequests, "
        "which return the whole list at once.",
    )
    async def access_requests(
        self, info: Info,
        direction: Annotated[AccessRequestDirection, strawberry.argument(description="OUTGOING or INCOMING.")],
        status: Annotated[
            AccessRequestStatus | None, strawberry.argument(description="Only requests with this status.")
        ] = None,
        first: First = 50, after: After = None, last: Last = None, before: Before = None,
    ) -> AccessRequestConnection:
        ctx = info.context
        pages = paging(info, f"accessRequests:{direction.value}", (cursors.INSTANT, cursors.ID), first, after, last, before)
        viewer = ctx.viewer
        conditions = listed(direction.value, viewer.id, viewer.email_normalized, status.value if status else None, utcnow())
        fetched = list(await request_page(ctx.store, conditions, pages.window))
        rows, made, page_info_ = pages.page(fetched, lambda r: (r.created_at, r.id))
        built = await build_requests(info, rows)  # one per row, in order
        edges = [AccessRequestEdge(cursor=c, node=r) for c, r in zip(made, built, strict=True)]
        return AccessRequestConnection(edges=edges, page_info=page_info_, conditions=conditions)

    @strawberry.field(extensions=[authenticated()], description="Requests the caller made.")
    async def outgoing_access_requests(
        self, info: Info, status: AccessRequestStatus | None = None
    ) -> list[AccessRequest]:
        ctx = info.context
        rows = await ctx.loaders.consent.outgoing(ctx.viewer_id, status.value if status else None, utcnow())
        return await build_requests(info, list(rows))

    @strawberry.field(
        extensions=[authenticated()],
        description="Requesters the caller blocked (blockAccessRequester), in the order blocked.",
    )
    async def blocked_access_requesters(self, info: Info) -> list[UserType]:
        ctx = info.context
        ids = list(await blocked_requester_ids(ctx.store, ctx.viewer_id))
        found = [r for r in await ctx.loaders.users.many(ids) if r is not None]
        return await prepare_users(info, found)

    @strawberry.field(
        extensions=[authenticated()],
        description="Requests for the caller's data (not those of requesters the caller blocked).",
    )
    async def incoming_access_requests(
        self, info: Info, status: AccessRequestStatus | None = None
    ) -> list[AccessRequest]:
        ctx = info.context
        viewer = ctx.viewer
        rows = await ctx.loaders.consent.incoming(
            viewer.id, viewer.email_normalized, status.value if status else None, utcnow()
        )
        return await build_requests(info, list(rows))


# --- mutations -----------------------------------------------------------------------------------------


def invitation(requester: UserRow, message: str | None) -> tuple[str, str]:
    name = " ".join(f"{requester.first_name} {requester.last_name}".split())  # no line breaks in a header
    subject = f"{name} asks to see your learning progress"[:300]
    lines = [
        f"{name} ({requester.email}) asks for access to your profile, contact details and course progress.",
        "",
    ]
    if message:
        lines += ["Their message:", message, ""]
    lines += [
        "Sign in to accept or decline (incoming access requests). You can revoke access at any time.",
        "If you do nothing, the request expires.",
    ]
    return subject, "\n".join(lines)


async def check_invitation_limits(session, settings: Settings, requester_id: int, address: str, now: datetime) -> bool:  # type: ignore[no-untyped-def]
    """RATE_LIMITED when the requester sent their invitations for the day, or asks this address again within
    the repeat wait after cancelling a request to it or being DENIED by it. Otherwise whether the email
    goes out: not when the address had its invitations for the day or its account blocked the requester.
    The same statements run whether or not an account has the address."""
    window = now - DAY
    sent = list(
        await session.scalars(
            select(AccessRequestEmail.sent_at)
            .where(AccessRequestEmail.requester_id == requester_id, AccessRequestEmail.sent_at > window)
            .order_by(AccessRequestEmail.sent_at)
        )
    )
    last_cancelled = await session.scalar(
        select(func.max(AccessRequestEmail.cancelled_at)).where(
            AccessRequestEmail.requester_id == requester_id, AccessRequestEmail.address_normalized == address
        )
    )
    last_denied = await session.scalar(
        select(func.max(AccessRequestRow.decided_at)).where(
            AccessRequestRow.requester_id == requester_id,
            AccessRequestRow.subject_email_normalized == address,
            AccessRequestRow.status == DENIED,
        )
    )
    repeat = timedelta(seconds=settings.access_request_repeat_seconds)
    latest = max((t for t in (last_cancelled, last_denied) if t is not None), default=None)
    if latest is not None and latest + repeat > now:
        raise RateLimited(
            "You asked this address recently; wait before asking again.",
            retryAfterSeconds=math.ceil((latest + repeat - now).total_seconds()),
        )
    limit = settings.access_request_emails_per_requester_per_day
    if len(sent) >= limit:
        raise RateLimited(
            f"You sent {limit} access requests in the last day; wait before sending more.",
            retryAfterSeconds=math.ceil((sent[-limit] + DAY - now).total_seconds()),
        )
    to_address = await session.scalar(
        select(func.count()).select_from(AccessRequestEmail).where(
            AccessRequestEmail.address_normalized == address, AccessRequestEmail.sent_at > window
        )
    )
    blocked = await session.scalar(
        select(func.count())
        .select_from(AccessRequestBlock)
        .join(UserRow, UserRow.id == AccessRequestBlock.blocker_id)
        .where(UserRow.email_normalized == address, AccessRequestBlock.requester_id == requester_id)
    )
    return not blocked and to_address < settings.access_request_emails_per_address_per_day


async def locked_request(session, database_id: int, reach: Reach, viewer: UserRow, field: str = "id") -> AccessRequestRow:  # type: ignore[no-untyped-def]
    """The request, locked for this transaction; NOT_FOUND where the caller may not see it."""
    row = await session.scalar(
        select(AccessRequestRow)
        .where(AccessRequestRow.id == database_id)
        .with_for_update()
        .execution_options(populate_existing=True)  # the row as committed now, not as loaded earlier
    )
    if row is None or not may_see(reach, viewer, row):
        raise NotFound("No such access request.", field=field)
    return row


@strawberry.type
class ConsentMutations:
    @strawberry.mutation(
        extensions=[authenticated()],
        description="Never reveals whether an account has this email: the answer and the work are the same "
        "either way. Asking again for an open request returns it. Limits (settings): invitations per requester "
        "per day and a wait before asking an address again after a cancel or a DENY (RATE_LIMITED with "
        "extensions.retryAfterSeconds); invitations per address per day and requesters the recipient blocked "
        "(the request is recorded, but no email goes out); the message's length (BAD_USER_INPUT).",
    )
    async def request_access(self, info: Info, email: str, message: str | None = None) -> AccessRequest:
        ctx = info.context
        settings = ctx.settings
        viewer: UserRow = ctx.viewer
        email = check_email(email)
        normalized = normalize_email(email)
        message = clean_text(
            message, "message", max_length=settings.access_request_message_max_length, required=False
        ) or None
        if normalized == viewer.email_normalized:
            raise BadInput("You cannot ask for access to your own data.", field="email")
        now = utcnow()
        async with ctx.store.transaction() as session:
            if ctx.store.dialect == "postgresql":
                await session.execute(select(func.pg_advisory_xact_lock(ADVISORY_LOCK_NAMESPACE, viewer.id)))
            existing = await session.scalar(
                select(AccessRequestRow).where(open_to(viewer.id, normalized, now)).order_by(AccessRequestRow.id).limit(1)
            )
            if existing is None:
                if await pending_count(session, viewer.id, now) >= settings.max_pending_access_requests:
                    raise RateLimited(
                        f"You have {settings.max_pending_access_requests} unanswered access requests; wait for "
                        "answers or cancel some first."
                    )
                deliver = await check_invitation_limits(session, settings, viewer.id, normalized, now)
                subject_id = await session.scalar(select(UserRow.id).where(UserRow.email_normalized == normalized))
                row = AccessRequestRow(
                    requester_id=viewer.id,
                    subject_email=email,
                    subject_email_normalized=normalized,
                    subject_user_id=subject_id,
                    message=message,
                    status=PENDING,
                    created_at=now,
                    expires_at=now + timedelta(days=settings.access_request_days),
                )
                session.add(row)
                session.add(
                    AccessRequestEmail(requester_id=viewer.id, address_normalized=normalized, sent_at=now, delivered=deliver)
                )
                await session.flush()
                if deliver:
                    title, body = invitation(viewer, message)
                    session.add(OutboxEmail(kind="access_request", to_address=email, subject=title, body=body))
                audit(session, viewer.id, "access_request.create", "access_request", row.id, subject_email=email)
                ctx.store.publish(access_request_changed(row.id, [viewer.id, subject_id]))
        return (await build_requests(info, [existing or row]))[0]

    @strawberry.mutation(
        extensions=[authenticated()],
        description="By the subject of a request (any status): no more requests from its requester reach the "
        "caller (they are neither emailed nor listed, and the requester cannot tell); a PENDING one is DENIED.",
    )
    async def block_access_requester(self, info: Info, access_request_id: strawberry.ID) -> AccessRequest:
        ctx = info.context
        database_id = require_id(access_request_id, "AccessRequest", "accessRequestId")
        reach = await ctx.load_reach()
        now = utcnow()
        async with ctx.store.transaction() as session:
            row = await locked_request(session, database_id, reach, ctx.viewer, "accessRequestId")
            if not is_subject(ctx.viewer, row):
                raise Forbidden("Only the person asked may block the requester.")
            if effective_status(row, now) == PENDING:
                row.status, row.decided_at, row.subject_user_id = DENIED, now, ctx.viewer_id
                session.add(row)
                audit(session, ctx.viewer_id, "access_request.deny", "access_request", row.id, requester_id=row.requester_id)
                ctx.store.publish(access_request_changed(row.id, [row.requester_id, row.subject_user_id]))
            taken = await session.scalar(
                select(AccessRequestBlock.id).where(
                    AccessRequestBlock.blocker_id == ctx.viewer_id, AccessRequestBlock.requester_id == row.requester_id
                )
            )
            if taken is None:
                session.add(AccessRequestBlock(blocker_id=ctx.viewer_id, requester_id=row.requester_id, created_at=now))
                audit(session, ctx.viewer_id, "access_request.block", "user", row.requester_id, access_request_id=row.id)
        return (await build_requests(info, [row]))[0]

    @strawberry.mutation(
        extensions=[authenticated()],
        description="Lets a blocked requester's requests reach the caller again. False when they were not blocked.",
    )
    async def unblock_access_requester(self, info: Info, user_id: strawberry.ID) -> bool:
        ctx = info.context
        requester_id = require_id(user_id, "User", "userId")
        async with ctx.store.transaction() as session:
            result = await session.execute(
                delete(AccessRequestBlock).where(
                    AccessRequestBlock.blocker_id == ctx.viewer_id, AccessRequestBlock.requester_id == requester_id
                )
            )
            if result.rowcount:
                audit(session, ctx.viewer_id, "access_request.unblock", "user", requester_id)
        return bool(result.rowcount)

    @strawberry.mutation(extensions=[authenticated()], description="By the subject of a PENDING request.")
    async def respond_to_access_request(
        self, info: Info, id: strawberry.ID, decision: AccessDecision
    ) -> AccessRequest:
        ctx = info.context
        database_id = require_id(id, "AccessRequest")
        reach = await ctx.load_reach()  # before the transaction: both use the request's one session
        now = utcnow()
        async with ctx.store.transaction() as session:
            row = await locked_request(session, database_id, reach, ctx.viewer)
            if not is_subject(ctx.viewer, row):
                raise Forbidden("Only the person asked may answer this request.")
            if effective_status(row, now) != PENDING:
                raise Conflict("This request is no longer pending.", field="id")
            row.status = GRANTED if decision is AccessDecision.GRANT else DENIED
            row.decided_at = now
            row.subject_user_id = ctx.viewer_id
            session.add(row)
            audit(
                session, ctx.viewer_id, f"access_request.{'grant' if row.status == GRANTED else 'deny'}",
                "access_request", row.id, requester_id=row.requester_id,
            )
            ctx.store.publish(access_request_changed(row.id, [row.requester_id, row.subject_user_id]))
        return (await build_requests(info, [row]))[0]

    @strawberry.mutation(
        extensions=[authenticated()],
        description="By the subject of a GRANTED request: access ends at once and memberships added on its "
        "strength are removed.",
    )
    async def revoke_access(self, info: Info, id: strawberry.ID) -> AccessRequest:
        ctx = info.context
        database_id = require_id(id, "AccessRequest")
        reach = await ctx.load_reach()  # before the transaction: both use the request's one session
        now = utcnow()
        async with ctx.store.transaction() as session:
            row = await locked_request(session, database_id, reach, ctx.viewer)
            if not is_subject(ctx.viewer, row):
                raise Forbidden("Only the person who granted access may revoke it.")
            if row.status != GRANTED:
                raise Conflict("Only a granted request can be revoked.", field="id")
            removed = (
                await session.execute(
                    select(MembershipRow.id, MembershipRow.user_id, MembershipRow.group_id, MembershipRow.role)
                    .where(MembershipRow.access_request_id == row.id)
                    .order_by(MembershipRow.id)
                )
            ).all()
            await session.execute(delete(MembershipRow).where(MembershipRow.access_request_id == row.id))
            row.status = REVOKED
            row.decided_at = now
            session.add(row)
            audit(
                session, ctx.viewer_id, "access_request.revoke", "access_request", row.id,
                requester_id=row.requester_id,
                removed_memberships=[
                    {"id": m.id, "user_id": m.user_id, "group_id": m.group_id, "role": m.role} for m in removed
                ],
            )
            ctx.store.publish(access_request_changed(row.id, [row.requester_id, row.subject_user_id]))
            ctx.store.publish(reach_changed([row.requester_id]))  # their subscriptions re-check at once
        ctx.forget_reach()
        return (await build_requests(info, [row]))[0]

    @strawberry.mutation(extensions=[authenticated()], description="By the requester of a PENDING request.")
    async def cancel_access_request(self, info: Info, id: strawberry.ID) -> bool:
        ctx = info.context
        database_id = require_id(id, "AccessRequest")
        reach = await ctx.load_reach()  # before the transaction: both use the request's one session
        now = utcnow()
        async with ctx.store.transaction() as session:
            row = await locked_request(session, database_id, reach, ctx.viewer)
            if not is_requester(ctx.viewer, row):
                raise Forbidden("Only the requester may cancel this request.")
            if effective_status(row, now) != PENDING:
                raise Conflict("Only a pending request can be cancelled.", field="id")
            await session.execute(delete(AccessRequestRow).where(AccessRequestRow.id == row.id))
            await session.execute(
                update(AccessRequestEmail)
                .where(
                    AccessRequestEmail.requester_id == row.requester_id,
                    AccessRequestEmail.address_normalized == row.subject_email_normalized,
                    AccessRequestEmail.cancelled_at.is_(None),
                )
                .values(cancelled_at=now)
            )
            audit(
                session, ctx.viewer_id, "access_request.cancel", "access_request", row.id,
                subject_email=row.subject_email,
            )
        ctx.loaders.consent.by_id.prime(row.id, None, force=True)  # gone for the rest of this request too
        return True
