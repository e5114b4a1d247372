"""The external gateway: guardian links, account access, deletion, emailing users, login statistics."""

from __future__ import annotations

import calendar
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated

import strawberry
from sqlalchemy import delete, select, update
from strawberry.types import Info

from app.runtime.errors import BadInput, Conflict, Forbidden, NotFound
from app.runtime.ids import require_id, to_global_id
from app.services.audit import audit
from app.services.auth import verify_password
from app.services.events import reach_changed
from app.services.mailer import queue_email
from app.services.throttle import check_login_allowed
from app.store.models import ApiToken, LoginEvent, Session, utcnow
from app.store.models import GuardianLink as GuardianLinkRow
from app.store.models import User as UserRow
from dataloaders.guardians import login_buckets
from permissions.classes import authenticated, requires
from permissions.reach import Permission, Reach
from resolvers.common import Node, clean_text
from resolvers.enums import AccountStatus, LicenceType
from resolvers.views import UserType, UserView, prepare_users

CHUNK = 5_000


@strawberry.type(description="An external user (parent, guardian, the pupil's own gateway account) linked to a pupil.")
class GuardianLink(Node):
    row: strawberry.Private[GuardianLinkRow]
    external: strawberry.Private[UserView]
    linked_pupil: strawberry.Private[UserView]

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(to_global_id("GuardianLink", self.row.id))  # type: ignore[arg-type]

    @strawberry.field
    def external_user(self) -> UserType:
        return self.external

    @strawberry.field
    def pupil(self) -> UserType:
        return self.linked_pupil

    @strawberry.field
    def licence_type(self) -> LicenceType:
        return LicenceType(self.row.licence_type)

    @strawberry.field
    def created_at(self) -> datetime:
        return self.row.created_at


@strawberry.enum
class StatisticsInterval(StrEnum):
    DAY = "DAY"
    WEEK = "WEEK"
    MONTH = "MONTH"


@strawberry.type
class LoginBucket:
    start: datetime
    logins: int
    failed_logins: int
    unique_users: int


@strawberry.type
class LoginStatistics:
    total_logins: int
    buckets: list[LoginBucket]


async def links_with_visible_ends(info: Info, rows: Sequence[GuardianLinkRow], known: Sequence[UserView] = ()) -> list[GuardianLink]:
    """Links whose two users the viewer may both see (VIEW_PROFILE); the others are left out, as absent."""
    reach: Reach = await info.context.load_reach()
    users = {u.row.id: u for u in known}
    wanted = {i for r in rows for i in (r.external_user_id, r.pupil_id)} - users.keys()
    found = [u for u in await info.context.loaders.users.many(sorted(wanted)) if u is not None]
    for user in await prepare_users(info, found):
        users[user.row.id] = user
    visible = {i: u for i, u in users.items() if reach.may(Permission.VIEW_PROFILE, u.user_subject)}
    return [
        GuardianLink(row=r, external=visible[r.external_user_id], linked_pupil=visible[r.pupil_id])
        for r in rows
        if r.external_user_id in visible and r.pupil_id in visible
    ]


async def guardian_links_of(info: Info, user: UserView) -> list[GuardianLink]:
    """User.guardianLinks: the pupils of an external user, or the external users of a learner."""
    rows = await info.context.loaders.guardians.of_user.load(user.row.id)
    return await links_with_visible_ends(info, rows, [user])


async def visible_guardian_link(info: Info, link_id: int) -> GuardianLink | None:
    row = await info.context.loaders.guardians.by_id.load(link_id)
    if row is None:
        return None
    links = await links_with_visible_ends(info, [row])
    return links[0] if links else None


def decode_user_ids(ids: Sequence[strawberry.ID], field: str = "userIds") -> list[int]:
    """Database ids in the given order, without repeats."""
    return list(dict.fromkeys(require_id(i, "User", field) for i in ids))


async def user_rows(session, ids: Sequence[int]) -> list[UserRow]:  # type: ignore[no-untyped-def]
    rows: list[UserRow] = []
    for start in range(0, len(ids), CHUNK):
        rows.extend(await session.scalars(select(UserRow).where(UserRow.id.in_(ids[start : start + CHUNK]))))
    return rows


def check_may_act_on(reach: Reach, viewer_id: int, rows: Sequence[UserRow], verb: str) -> None:
    if any(r.id == viewer_id for r in rows):
        raise BadInput(f"You may not {verb} your own account here.", field="userIds")
    if any(not reach.may_administer_site_roles(r.site_roles.split(",")) for r in rows):
        raise Forbidden(f"Only an owner may {verb} an owner.")


def bucket_starts(start: datetime, end: datetime, interval: StatisticsInterval, limit: int) -> list[datetime]:
    """UTC bucket starts (midnight, Monday midnight, first of the month) covering [start, end)."""
    day = datetime(start.year, start.month, start.day, tzinfo=UTC)
    if interval is StatisticsInterval.WEEK:
        day -= timedelta(days=day.weekday())
    elif interval is StatisticsInterval.MONTH:
        day = day.replace(day=1)
    starts: list[datetime] = []
    while day < end:
        if len(starts) >= limit:
            raise BadInput(f"That range holds more than {limit} buckets; choose a longer interval.", field="interval")
        starts.append(day)
        if interval is StatisticsInterval.DAY:
            day += timedelta(days=1)
        elif interval is StatisticsInterval.WEEK:
            day += timedelta(days=7)
        else:
            day += timedelta(days=calendar.monthrange(day.year, day.month)[1])
    return starts


def as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.utcoffset() is None else value.astimezone(UTC)


@strawberry.type
class GuardianQueries:
    @strawberry.field(
        extensions=[requires(Permission.SITE_ADMIN)],
        description="Successful and failed sign-ins and unique users per UTC day, ISO week (from Monday) or "
        "month, counting sign-ins in [from, to); every bucket is listed, empty ones too. licenceType: only "
        "external users holding a link of that licence type.",
    )
    async def login_statistics(
        self,
        info: Info,
        from_: Annotated[datetime, strawberry.argument(name="from")],
        to: datetime,
        interval: StatisticsInterval | None = StatisticsInterval.DAY,
        licence_type: LicenceType | None = None,
    ) -> LoginStatistics:
        start, end = as_utc(from_), as_utc(to)
        if end <= start:
            raise BadInput("to must be after from", field="to")
        starts = bucket_starts(
            start, end, interval or StatisticsInterval.DAY, info.context.settings.max_statistics_buckets
        )
        rows = await login_buckets(info.context.store, starts, start, end, licence_type.value if licence_type else None)
        buckets = [LoginBucket(start=s, logins=ok, failed_logins=failed, unique_users=users) for s, ok, failed, users in rows]
        return LoginStatistics(total_logins=sum(b.logins for b in buckets), buckets=buckets)


@strawberry.type
class GuardianMutations:
    @strawberry.mutation(
        extensions=[requires(Permission.SITE_ADMIN)],
        description="The external user (kind EXTERNAL) then sees the pupil's (a LEARNER's) profile and progress. "
        "One link per pair: linking again is CONFLICT.",
    )
    async def link_guardian(
        self, info: Info, external_user_id: strawberry.ID, pupil_id: strawberry.ID, licence_type: LicenceType
    ) -> GuardianLink:
        ctx = info.context
        external_id = require_id(external_user_id, "User", "externalUserId")
        learner_id = require_id(pupil_id, "User", "pupilId")
        async with ctx.store.transaction() as session:
            rows = {r.id: r for r in await user_rows(session, [external_id, learner_id])}
            external, pupil = rows.get(external_id), rows.get(learner_id)
            if external is None:
                raise NotFound("No such user.", field="externalUserId")
            if pupil is None:
                raise NotFound("No such user.", field="pupilId")
            if external.kind != "EXTERNAL":
                raise BadInput("Only external users hold licences.", field="externalUserId")
            if pupil.kind != "LEARNER":
                raise BadInput("Only learners can be linked as pupils.", field="pupilId")
            taken = await session.scalar(
                select(GuardianLinkRow.id).where(
                    GuardianLinkRow.external_user_id == external_id, GuardianLinkRow.pupil_id == learner_id
                )
            )
            if taken is not None:
                raise Conflict("This external user is already linked to this pupil.", field="pupilId")
            row = GuardianLinkRow(external_user_id=external_id, pupil_id=learner_id, licence_type=licence_type.value)
            session.add(row)
            await session.flush()
            audit(
                session, ctx.viewer_id, "guardian.link", "guardian_link", row.id,
                external_user_id=external_id, pupil_id=learner_id, licence_type=licence_type.value,
            )
        return (await links_with_visible_ends(info, [row]))[0]

    @strawberry.mutation(
        extensions=[requires(Permission.SITE_ADMIN)],
        description="Removes the pupil from the external user's account.",
    )
    async def unlink_guardian(self, info: Info, id: strawberry.ID) -> bool:
        ctx = info.context
        link_id = require_id(id, "GuardianLink")
        async with ctx.store.transaction() as session:
            row = await session.get(GuardianLinkRow, link_id)
            if row is None:
                raise NotFound("No such guardian link.", field="id")
            await session.execute(delete(GuardianLinkRow).where(GuardianLinkRow.id == link_id))
            audit(
                session, ctx.viewer_id, "guardian.unlink", "guardian_link", link_id,
                external_user_id=row.external_user_id, pupil_id=row.pupil_id, licence_type=row.licence_type,
            )
        return True

    @strawberry.mutation(
        extensions=[requires(Permission.SITE_ADMIN)],
        description="Deny or allow access for several users at once. DENIED: every session and API token of "
        "the account is revoked at once, and signing in behaves exactly as for an unknown email. ACTIVE: "
        "signing in works again (with new sessions). Unknown ids: NOT_FOUND, nothing changed.",
    )
    async def set_account_status(
        self, info: Info, user_ids: list[strawberry.ID], status: AccountStatus
    ) -> list[UserType]:
        ctx = info.context
        ids = decode_user_ids(user_ids)
        reach: Reach = await ctx.load_reach()
        now = utcnow()
        async with ctx.store.transaction() as session:
            rows = await user_rows(session, ids)
            if len(rows) != len(ids):
                raise NotFound("No such user.", field="userIds")
            if status is AccountStatus.DENIED:
                check_may_act_on(reach, ctx.viewer_id, rows, "deny")
            changed = [r for r in rows if r.status != status.value]
            action = "user.deny" if status is AccountStatus.DENIED else "user.allow"
            for row in changed:
                audit(session, ctx.viewer_id, action, "user", row.id, email=row.email, before=row.status)
            changed_ids = [r.id for r in changed]
            for start in range(0, len(changed_ids), CHUNK):
                chunk = changed_ids[start : start + CHUNK]
                # the loaded rows are updated in the session too (synchronize_session="auto")
                await session.execute(update(UserRow).where(UserRow.id.in_(chunk)).values(status=status.value))
                if status is AccountStatus.DENIED:
                    for model in (Session, ApiToken):
                        await session.execute(
                            update(model)
                            .where(model.user_id.in_(chunk), model.revoked_at.is_(None))
                            .values(revoked_at=now)
                        )
            ctx.store.publish(reach_changed(changed_ids))  # a DENIED account's subscriptions end now
        by_id = {r.id: r for r in rows}
        return await prepare_users(info, [by_id[i] for i in ids])

    @strawberry.mutation(
        extensions=[requires(Permission.SITE_ADMIN)],
        description="Returns how many were deleted. Their memberships and links go with them; the audit log keeps "
        "the record. Ids of users that no longer exist are skipped.",
    )
    async def delete_users(self, info: Info, user_ids: list[strawberry.ID]) -> int:
        ctx = info.context
        ids = decode_user_ids(user_ids)
        reach: Reach = await ctx.load_reach()
        async with ctx.store.transaction() as session:
            rows = await user_rows(session, ids)
            check_may_act_on(reach, ctx.viewer_id, rows, "delete")
            for row in rows:
                audit(
                    session, ctx.viewer_id, "user.delete", "user", row.id, email=row.email, kind=row.kind,
                    first_name=row.first_name, last_name=row.last_name, external_id=row.external_id,
                )
            found = [r.id for r in rows]
            for start in range(0, len(found), CHUNK):
                await session.execute(
                    delete(UserRow).where(UserRow.id.in_(found[start : start + CHUNK])),
                    execution_options={"synchronize_session": False},
                )
            ctx.store.publish(reach_changed(found))
        return len(rows)

    @strawberry.mutation(
        extensions=[authenticated()],
        description="External users may delete their own account, confirming with their password. Their pupil "
        "links go with it; the audit log keeps the record.",
    )
    async def delete_my_account(self, info: Info, password: str) -> bool:
        ctx = info.context
        viewer: UserRow = ctx.viewer
        if viewer.kind != "EXTERNAL":
            raise Forbidden("Only external accounts can be deleted by their owner; ask a site admin.")
        async with ctx.store.transaction() as session:
            await check_login_allowed(session, ctx.settings, viewer.email_normalized, ctx.client_address)
            row = await session.get(UserRow, viewer.id)
            ok = row is not None and verify_password(row.password_hash, password)
        if not ok:
            async with ctx.store.transaction() as session:
                session.add(
                    LoginEvent(
                        user_id=viewer.id, email_normalized=viewer.email_normalized,
                        client_address=ctx.client_address, success=False,
                    )
                )
            raise BadInput("The password is not right.", field="password")
        async with ctx.store.transaction() as session:
            audit(session, viewer.id, "user.delete_self", "user", viewer.id, email=viewer.email, kind=viewer.kind)
            ctx.store.publish(reach_changed([viewer.id]))
            await session.execute(
                delete(UserRow).where(UserRow.id == viewer.id), execution_options={"synchronize_session": False}
            )
        return True

    @strawberry.mutation(
        extensions=[requires(Permission.SITE_ADMIN)],
        description="Queues one email per user in the outbox; delivered over SMTP when configured. Returns how "
        "many were queued. Unknown ids: NOT_FOUND, nothing queued.",
    )
    async def email_users(self, info: Info, user_ids: list[strawberry.ID], subject: str, body: str) -> int:
        ctx = info.context
        ids = decode_user_ids(user_ids)
        subject = clean_text(subject, "subject", max_length=300)  # type: ignore[assignment]
        if "\r" in subject or "\n" in subject:
            raise BadInput("subject must be one line", field="subject")
        body = clean_text(body, "body", max_length=100_000)  # type: ignore[assignment]
        async with ctx.store.transaction() as session:
            rows = await user_rows(session, ids)
            if len(rows) != len(ids):
                raise NotFound("No such user.", field="userIds")
            for row in rows:
                queue_email(session, "admin_message", row.email, subject, body)
            audit(session, ctx.viewer_id, "user.email", "user", None, subject=subject, user_ids=ids)
        return len(rows)
